"""ELMo's scalar mix (Peters et al. 2018): a learned, softmax-weighted sum of a frozen encoder's hidden layers."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ScalarMix(nn.Module):
    """`[B, T, N*D]` (N layers side by side, as the feature cache stores them) → `gamma * Σ_j softmax(s)_j h_j`.

    Starts as the plain average of the layers (s = 0, gamma = 1). Lower layers of a frozen encoder carry syntax and
    the upper ones task-agnostic semantics (Tenney et al. 2019); the mix lets the task pick.
    """

    def __init__(self, layers: int, dim: int) -> None:
        super().__init__()
        self.layers, self.dim = layers, dim
        self.scores = nn.Parameter(torch.zeros(layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, h: Tensor) -> Tensor:
        stacked = h.unflatten(-1, (self.layers, self.dim))  # [B, T, N, D]
        weights = torch.softmax(self.scores, dim=0).to(stacked.dtype)  # [N]
        return self.gamma.to(stacked.dtype) * torch.einsum("btnd,n->btd", stacked, weights)  # [B, T, D]

    def extra_repr(self) -> str:
        return f"layers={self.layers}, dim={self.dim}"
