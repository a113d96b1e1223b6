"""What every head shares: the `Head` interface and the masked tensor operations behind padding invariance.

Rows are right-padded (real tokens first, then padding) and `mask` is True on real tokens. Every operation
here is written with gathers and comparisons on index tensors, never Python loops over the batch, so heads
trace to ONNX with a dynamic batch size and sequence length.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Head(nn.Module):
    """Token vectors + mask → one vector per text: `forward(x [B, T, D], mask [B, T] bool) -> [B, out_dim]`."""

    out_dim: int

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        raise NotImplementedError


def valid_lengths(mask: Tensor) -> Tensor:
    """Real tokens per row, `[B]` int64; the mask must be bool (an int mask would invert wrongly under `~`)."""
    assert mask.dtype == torch.bool, f"mask must be bool, got {mask.dtype}"
    return mask.sum(dim=1)


def zero_padding(x: Tensor, mask: Tensor) -> Tensor:
    """Set padded positions to 0 so whatever an encoder left there (even NaN) cannot leak into sums or convs."""
    return x.masked_fill(~mask.unsqueeze(-1), 0.0)  # [B, T, D]


def last_states(x: Tensor, lengths: Tensor, directions: int = 1) -> Tensor:
    """The final state of each direction: `[B, T, dirs*H] -> [B, dirs*H]`.

    The forward half is read at each row's last real token; a backward half (directions=2) finished at
    position 0, because it ran over the row from its end to its start.
    """
    index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, x.size(2))  # [B, 1, dirs*H]
    last = x.gather(1, index).squeeze(1)  # [B, dirs*H]
    if directions == 1:
        return last
    half = x.size(2) // 2
    return torch.cat([last[:, :half], x[:, 0, half:]], dim=1)  # [B, 2H]
