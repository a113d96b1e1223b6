"""`transformer`: a small pre-norm transformer encoder over the token vectors, then pooling."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnnlab.config import Pooling
from rnnlab.heads.base import Head, zero_padding
from rnnlab.heads.pooling import Pool


def num_heads(hidden_size: int) -> int:
    """The most attention heads (at most 4) that divide hidden_size."""
    return next(n for n in (4, 3, 2, 1) if hidden_size % n == 0)


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> Tensor:
    """Fixed sin/cos position signal `[T, dim]`: no maximum length, and word vectors carry no order themselves."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)  # [T, 1]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = position * freq  # [T, ceil(dim/2)]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)[:, :dim]  # [T, dim]


class TransformerHead(Head):
    """Linear projection D → hidden (when they differ), sinusoidal positions, `layers` pre-norm
    nn.TransformerEncoderLayer (batch_first, GELU, 4*hidden feed-forward) with a key padding mask, a final
    LayerNorm (pre-norm stacks end un-normalised), then pooling; `out_dim = hidden_size`.

    Padded positions are never keys, so real tokens do not see them; their own outputs are masked by the
    pooling. Every row has a real token, so no softmax row is all -inf.
    """

    def __init__(self, input_dim: int, hidden_size: int, layers: int, dropout: float, pooling: Pooling, *,
                 norm: bool = False) -> None:
        super().__init__()
        self.project = nn.Identity() if input_dim == hidden_size else nn.Linear(input_dim, hidden_size)
        layer = nn.TransformerEncoderLayer(
            hidden_size,
            num_heads(hidden_size),
            dim_feedforward=4 * hidden_size,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # No nested tensors: they change the output layout and do not trace to ONNX.
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(hidden_size), enable_nested_tensor=False)
        self.pool = Pool(pooling, hidden_size, norm=norm)
        self.out_dim = self.pool.out_dim

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.project(zero_padding(x, mask))  # [B, T, H]; padded values are attention values (weight 0, 0*NaN)
        h = h + sinusoidal_positions(h.size(1), h.size(2), h.device).to(h.dtype)
        h = self.encoder(h, src_key_padding_mask=~mask)  # [B, T, H]
        return self.pool(h, mask)  # [B, H]
