"""What running a model needs, in training and serving alike: math settings, device, precision, inputs, probabilities."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rnnlab.data.batching import collate, length_mask, widen
from rnnlab.padding import by_length


def configure_math() -> None:
    """Flush denormal floats to zero. Recurrent states and gradients drift into the denormal range, where x86
    arithmetic is ~100× slower: an fp32 LSTM forward + backward (B=16, T=256) took 7.7 s with denormals, 0.11 s
    without. Values that small carry no signal for a classifier."""
    torch.set_flush_denormal(True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 where the hardware runs it natively, fp16 on older GPUs, else full precision."""
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


@dataclass
class Precision:
    device: torch.device
    dtype: torch.dtype | None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


class Inputs:
    """Texts as the model consumes them: token ids (lists, or the memory-mapped rows of the token-id cache, which
    pad a batch in one gather), or the cached rows of the encoder's frozen trunk. `round_to`: batch widths are
    rounded up to a multiple of it (see `data.batching.widen`)."""

    round_to: int = 1

    def __init__(self, token_ids: Sequence[Sequence[int]], pad_id: int, store=None) -> None:
        self.token_ids, self.pad_id, self.store = token_ids, pad_id, store
        lengths = getattr(token_ids, "lengths", None)
        if lengths is None:
            lengths = np.fromiter((len(t) for t in token_ids), dtype=np.int64, count=len(token_ids))
        self.lengths = lengths

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.store is not None:
            return self.store.get(list(indices))  # [B, T, D] float, [B, T]
        if hasattr(self.token_ids, "padded"):
            ids, lengths = self.token_ids.padded(indices, self.pad_id)
            return widen(torch.from_numpy(ids), length_mask(lengths, ids.shape[1]), self.pad_id, self.round_to)
        return collate([self.token_ids[i] for i in indices], self.pad_id, self.round_to)  # [B, T] ids, [B, T]

    def logits(self, model: nn.Module, indices: Sequence[int], device: torch.device) -> torch.Tensor:
        """The model's logits [B, C] for one batch; the caller sets grad mode and autocast."""
        x, mask = self.batch(indices)
        return model(x.to(device), mask.to(device), cached=self.store is not None)


class WindowInputs(Inputs):
    """Texts read in windows (--chunks): each text is a list of windows of token ids; a batch is [B, N, T] ids (or
    [B, N, T, D] cached rows) and a mask [B, N, T], windows right-padded with empty ones."""

    def __init__(self, windows: Sequence[Sequence[Sequence[int]]], pad_id: int, store=None) -> None:
        self.windows, self.pad_id, self.store = windows, pad_id, store
        counts = np.fromiter((len(w) for w in windows), dtype=np.int64, count=len(windows))
        self.first = np.concatenate([[0], np.cumsum(counts)])  # text i owns windows first[i]:first[i+1]
        self.lengths = np.fromiter((sum(len(ids) for ids in w) for w in windows), dtype=np.int64, count=len(windows))

    def flat(self) -> list[Sequence[int]]:
        """Every window of every text, in order: what the feature cache stores, one row each."""
        return [ids for text in self.windows for ids in text]

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        counts = [int(self.first[i + 1] - self.first[i]) for i in indices]
        rows = [int(self.first[i]) + j for i, n in zip(indices, counts) for j in range(n)]
        if self.store is not None:
            x, mask = self.store.get(rows)  # [W, T, D], [W, T]
        else:
            x, mask = collate([self.windows[i][j] for i, n in zip(indices, counts) for j in range(n)], self.pad_id)
        width = max(counts)
        slots = torch.tensor([b * width + j for b, n in enumerate(counts) for j in range(n)])
        out = x.new_full((len(indices) * width, *x.shape[1:]), 0 if self.store is not None else self.pad_id)
        out_mask = mask.new_zeros((len(indices) * width, mask.shape[1]))
        out[slots], out_mask[slots] = x, mask
        return out.view(len(indices), width, *x.shape[1:]), out_mask.view(len(indices), width, -1)


def inputs_for(encoder, token_ids: Sequence, store=None) -> Inputs:
    """The Inputs that fit the encoder's tokenization (windows with --chunks)."""
    return WindowInputs(token_ids, encoder.pad_id, store) if encoder.chunks > 1 else Inputs(token_ids, encoder.pad_id, store)


def inference_batch_size(device: torch.device) -> int:
    """Texts per length-sorted inference batch (evaluation, teacher labelling). A GPU is busy only with large
    batches (MiniLM + BiLSTM labelling on an H200: 444 reviews/s at 32, 7,300 at 1,024); on a CPU, larger
    batches than 64 gain nothing and hold more memory."""
    return 512 if device.type == "cuda" else 64


@torch.inference_mode()
def predict_logits(model: nn.Module, inputs: Inputs, indices: Sequence[int], prec: Precision, batch_size: int) -> np.ndarray:
    """Logits [N, C] (float32) in the order of `indices`, batched by length for speed."""
    model.eval()
    indices = list(indices)

    def logits_of(chunk: np.ndarray) -> np.ndarray:
        with prec.autocast():
            logits = inputs.logits(model, [indices[i] for i in chunk], prec.device)
        return logits.float().cpu().numpy()

    return by_length(inputs.lengths[indices], batch_size, logits_of)


def predict_probs(model: nn.Module, inputs: Inputs, indices: Sequence[int], prec: Precision, batch_size: int) -> np.ndarray:
    """Class probabilities [N, C] in the order of `indices`."""
    logits = predict_logits(model, inputs, indices, prec, batch_size)
    return torch.from_numpy(logits).softmax(-1).numpy() if len(logits) else logits
