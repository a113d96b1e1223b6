"""The `fnn` head: pool the token vectors, then an MLP."""

from __future__ import annotations

from torch import Tensor, nn

from rnnlab.config import Pooling
from rnnlab.heads.base import Head
from rnnlab.heads.pooling import Pool


class FNNHead(Head):
    """`fnn`: pool the token vectors, then Linear(D, hidden) + GELU + Dropout."""

    def __init__(self, input_dim: int, hidden_size: int, dropout: float, pooling: Pooling, *, norm: bool = False) -> None:
        super().__init__()
        self.out_dim = hidden_size
        self.pool = Pool(pooling, input_dim, norm=norm)
        self.mlp = nn.Sequential(nn.Linear(self.pool.out_dim, hidden_size), nn.GELU(), nn.Dropout(dropout))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.mlp(self.pool(x, mask))  # [B, D (3D with concat)] -> [B, hidden]
