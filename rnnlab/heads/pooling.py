"""One masked pooling module for every head: token states `[B, T, H]` → one vector per text `[B, H]`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab.config import Pooling
from rnnlab.heads.base import last_states, valid_lengths, zero_padding


class Pool(nn.Module):
    """Masked pooling `[B, T, H] -> [B, H]`: padded positions never contribute, whatever they hold.

    `last`: the final state of each direction (see `last_states`); for non-recurrent inputs, the last real
    token. `mean`/`max`: over real tokens only. `attention`: a learned query (Linear(H, 1, bias=False) scores) and a
    softmax over real tokens, then the weighted sum. `concat`: last, max and mean side by side (ULMFiT's concat pooling),
    so `out_dim` is three times `dim`.
    """

    def __init__(self, mode: Pooling, dim: int, directions: int = 1) -> None:
        super().__init__()
        assert mode in ("last", "mean", "max", "attention", "concat"), mode
        self.mode = mode
        self.directions = directions
        self.out_dim = 3 * dim if mode == "concat" else dim
        # No bias: softmax ignores a shift shared by all tokens, so a bias would never get a gradient.
        self.score = nn.Linear(dim, 1, bias=False) if mode == "attention" else None

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        lengths = valid_lengths(mask)
        if self.mode == "concat":
            return torch.cat([self._pool(x, mask, lengths, mode) for mode in ("last", "max", "mean")], dim=1)  # [B, 3H]
        return self._pool(x, mask, lengths, self.mode)

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
        return f"mode={self.mode!r}, directions={self.directions}"
