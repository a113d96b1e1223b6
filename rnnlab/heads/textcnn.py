"""`textcnn`: Conv1d with kernel widths 3, 4, 5 (hidden_size channels each), ReLU, masked pooling, concat."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab.config import Pooling
from rnnlab.heads.base import Head, valid_lengths, zero_padding
from rnnlab.heads.pooling import Pool

KERNEL_SIZES = (3, 4, 5)


class TextCNNHead(Head):
    """Kim (2014)-style text CNN; `out_dim = 3 * channels`.

    Each conv is "full" (padding k-1 on both sides) over token vectors whose padding is zeroed. For a row of
    length L, outputs 0 .. L+k-2 are the windows that touch at least one real token, and they equal what
    the row alone would give (beyond its end it sees zeros either way). Later outputs are masked out. This
    also gives texts shorter than k a window.
    """

    def __init__(self, input_dim: int, channels: int, pooling: Pooling, *, norm: bool = False) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(input_dim, channels, k, padding=k - 1) for k in KERNEL_SIZES)
        self.pools = nn.ModuleList(Pool(pooling, channels, norm=norm) for _ in KERNEL_SIZES)
        self.out_dim = sum(pool.out_dim for pool in self.pools)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        lengths = valid_lengths(mask)
        x = zero_padding(x, mask).transpose(1, 2)  # [B, D, T]
        pooled = []
        for k, conv, pool in zip(KERNEL_SIZES, self.convs, self.pools):
            h = torch.relu(conv(x)).transpose(1, 2)  # [B, T+k-1, C]
            steps = torch.arange(h.size(1), device=h.device).unsqueeze(0)  # [1, T+k-1]
            pooled.append(pool(h, steps < (lengths + k - 1).unsqueeze(1)))  # [B, C]
        return torch.cat(pooled, dim=1)  # [B, 3C]
