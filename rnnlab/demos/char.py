"""Experiment 1 of the tutorial: map the characters of `source` to those of `target` ("happy" -> "phayp").

Each step's input is a one-hot vector over the characters of both strings; the RNN's state at step t is turned
into logits over the same characters and trained with cross-entropy on the whole string at once.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnlab import cells
from rnnlab.demos.config import CharConfig


class CharModel(nn.Module):
    """Recurrent cell + linear output layer; with `faithful` the cell's outputs are the logits, as in the tutorial."""

    def __init__(self, cfg: CharConfig, vocab_size: int) -> None:
        super().__init__()
        hidden = vocab_size if cfg.faithful else cfg.hidden_size
        library = cells if cfg.impl == "scratch" else nn
        self.rnn = getattr(library, cfg.cell.upper())(vocab_size, hidden, batch_first=True)
        self.out = nn.Identity() if cfg.faithful else nn.Linear(hidden, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.rnn(x)  # [1, T, H]
        return self.out(states)  # [1, T, V]


def run(cfg: CharConfig) -> dict:
    """Train for `cfg.epochs` steps, printing the loss and the predicted string of every step."""
    vocab = sorted(set(cfg.source) | set(cfg.target))
    index = {ch: i for i, ch in enumerate(vocab)}
    x = torch.eye(len(vocab))[[index[ch] for ch in cfg.source]].unsqueeze(0)  # [1, T, V] one-hot
    y = torch.tensor([index[ch] for ch in cfg.target])  # [T]

    torch.manual_seed(cfg.seed)
    model = CharModel(cfg, len(vocab))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = nn.CrossEntropyLoss()
    model_note = "no output layer (faithful)" if cfg.faithful else f"hidden {cfg.hidden_size} + linear output layer"
    print(f"vocabulary {''.join(vocab)}  cell {cfg.cell} ({cfg.impl}), {model_note}")

    predictions, losses, first_correct = [], [], None
    for epoch in range(1, cfg.epochs + 1):
        logits = model(x)[0]  # [T, V]
        loss = loss_fn(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        # Like the tutorial, report the prediction of the forward pass this step trained on.
        predicted = "".join(vocab[i] for i in logits.argmax(dim=-1).tolist())
        predictions.append(predicted)
        losses.append(loss.item())
        if first_correct is None and predicted == cfg.target:
            first_correct = epoch
        print(f"epoch {epoch:2d}  loss {loss.item():.4f}  predicted {predicted}")
    if first_correct is None:
        print(f"never predicted {cfg.target} in {cfg.epochs} epochs")
    else:
        print(f"first correct at epoch {first_correct}")
    return {"predictions": predictions, "losses": losses, "first_correct_epoch": first_correct}
