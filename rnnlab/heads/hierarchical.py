"""The head over windows of a long text (RoBERT, Pappagari et al. 2019): pool each window, then a head over the windows.

Built from the existing pieces: `Pool` turns each window's token vectors into one vector, and any head (a recurrent
one in RoBERT's shape) reads the sequence of window vectors as if they were tokens. Windows are right-padded within
a text (real windows first) and tokens within a window, so padding is masked out at both levels.
"""

from __future__ import annotations

from torch import Tensor

from rnnlab.heads.base import Head
from rnnlab.heads.pooling import Pool


class HierarchicalHead(Head):
    """`x [B, N, T, D]` (N windows of T tokens), `mask [B, N, T]` → `[B, out_dim]` of the head over windows."""

    def __init__(self, pool: Pool, over: Head) -> None:
        super().__init__()
        self.pool, self.over = pool, over
        self.out_dim = over.out_dim

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        batch, chunks, tokens, dim = x.shape
        present = mask.any(-1)  # [B, N]: the window holds a real token
        # A missing window pools a single zero position instead of nothing (which would be 0/0 or -inf); the head
        # over windows then masks it out.
        flat_mask = mask.reshape(-1, tokens).clone()  # [B*N, T]
        flat_mask[:, 0] |= ~present.reshape(-1)
        flat = x.reshape(-1, tokens, dim).masked_fill(~flat_mask.unsqueeze(-1), 0.0)  # [B*N, T, D]
        vectors = self.pool(flat, flat_mask).view(batch, chunks, -1)  # [B, N, D]
        return self.over(vectors, present)  # [B, out_dim]
