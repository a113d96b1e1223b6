"""One masked pooling module for every head: token states `[B, T, H]` → one vector per text `[B, H]`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.config import Pooling
from rnnlab.heads.base import last_states, valid_lengths, zero_padding


class Pool(nn.Module):
    """Masked pooling `[B, T, H] -> [B, H]`: padded positions never contribute, whatever they hold.

    `last`: the final state of each direction (see `last_states`); for non-recurrent inputs, the last real
    token. `mean`/`max`: over real tokens only. `attention`: a learned query (Linear(H, 1, bias=False) scores) and a
    softmax over real tokens, then the weighted sum. `concat`: last, max and mean side by side (ULMFiT's concat pooling),
    so `out_dim` is three times `dim`.

    `norm`: batch-normalise the pooled vector (ULMFiT's classifier head). Concat pooling sets side by side features
    of very different spreads (a frozen language model's mean-pooled states vary by 0.05 around 0.26, its max-pooled
    ones by 0.002 around 0.97), which one learning rate cannot serve; normalising gives every feature unit spread.
    """

    def __init__(self, mode: Pooling, dim: int, directions: int = 1, *, norm: bool = False) -> None:
        super().__init__()
        assert mode in ("last", "mean", "max", "attention", "concat"), mode
        self.mode = mode
        self.directions = directions
        self.out_dim = 3 * dim if mode == "concat" else dim
        # No bias: softmax ignores a shift shared by all tokens, so a bias would never get a gradient.
        self.score = nn.Linear(dim, 1, bias=False) if mode == "attention" else None
        self.norm = nn.BatchNorm1d(self.out_dim) if norm else None

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        lengths = valid_lengths(mask)
        if self.mode == "concat":
            pooled = torch.cat([self._pool(x, mask, lengths, mode) for mode in ("last", "max", "mean")], dim=1)  # [B, 3H]
        else:
            pooled = self._pool(x, mask, lengths, self.mode)
        return pooled if self.norm is None else self._normalise(pooled)

    def _normalise(self, pooled: Tensor) -> Tensor:
        """Batch statistics in training, running ones in eval. A training batch of one text has no spread to divide
        by (BatchNorm1d raises), so it is normalised by the running statistics and leaves them as they are."""
        norm = self.norm
        if self.training and pooled.size(0) == 1:
            return F.batch_norm(pooled, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)
        return norm(pooled)  # [B, out_dim]

    def _pool(self, x: Tensor, mask: Tensor, lengths: Tensor, mode: str) -> Tensor:
        if mode == "last":
            return last_states(x, lengths, self.directions)
        if mode == "max":
            return x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)  # [B, H]
        x = zero_padding(x, mask)  # masked_fill, not x * mask: 0 * inf would be NaN
        if mode == "mean":
            return x.sum(dim=1) / lengths.unsqueeze(1).to(x.dtype)  # [B, H]
        scores = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf"))  # [B, T]
        weights = torch.softmax(scores, dim=1)  # [B, T]; exactly 0 on padding
        return (weights.unsqueeze(-1) * x).sum(dim=1)  # [B, H]

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, directions={self.directions}, norm={self.norm is not None}"
