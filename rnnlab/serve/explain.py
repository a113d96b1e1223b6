"""Which tokens pushed a prediction: gradient × input on the token vectors the head reads.

Shared by the server's token highlights and the analysis report. The vectors are the encoder's output (for a
frozen encoder, exactly what the feature cache holds), so the attribution explains the head and classifier that
were trained, whatever the encoder. Each token's score is the dot product of its vector with the gradient of the
predicted class's logit: positive pushed towards the predicted class, negative away from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rnnlab.data.batching import collate
from rnnlab.errors import UserError
from rnnlab.model import TextClassifier


@dataclass
class Attribution:
    tokens: list[str]
    scores: list[float]
    """One per token, in the predicted class's favour (> 0) or against it (< 0)."""
    predicted: int


def gradient_x_input(model: TextClassifier, token_ids: list[list[int]], *, batch_size: int = 16) -> list[Attribution]:
    """Attributions for each tokenized text, in full precision (bf16 gradients are too coarse to rank tokens)."""
    if model.encoder.chunks > 1:
        raise UserError("token attributions read one window per text; this run reads texts in windows (--chunks)")
    model.eval()
    out: list[Attribution] = []
    device = next(model.parameters()).device
    for start in range(0, len(token_ids), batch_size):
        chunk = token_ids[start : start + batch_size]
        ids, mask = collate(chunk, model.encoder.pad_id)
        ids, mask = ids.to(device), mask.to(device)
        with torch.inference_mode():
            vectors = model.encoder(ids, mask).float()  # [B, T, D]
        vectors = vectors.clone().requires_grad_(True)  # out of inference mode, into the graph
        with torch.enable_grad():
            logits = model(vectors, mask, vectors=True)  # [B, C]
            predicted = logits.argmax(-1)
            # Rows are independent, so one backward of the sum gives each row its own gradient.
            logits.gather(1, predicted[:, None]).sum().backward()
        scores = (vectors.grad * vectors).sum(-1).masked_fill(~mask, 0.0).detach().cpu().numpy()  # [B, T]
        for row, ids_row in enumerate(chunk):
            tokens = model.encoder.token_strings(list(ids_row))
            out.append(Attribution(tokens, [round(float(v), 6) for v in scores[row, : len(ids_row)]], int(predicted[row])))
    return out
