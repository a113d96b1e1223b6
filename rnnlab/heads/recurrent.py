"""Recurrent heads (rnn, gru, lstm and their bidirectional presets) on a masked path, not PackedSequence.

Each layer and direction is its own single-layer unidirectional module, so the same code runs torch's fused
cells and the from-scratch cells in rnnlab.cells, and exports to ONNX with dynamic batch and length
(PackedSequence does not export). Rows are right-padded, so:
- the forward direction runs on x as it is: padding comes after every real token and cannot affect them;
- the backward direction runs on each row reversed within its length (`reverse_padded`), so it too meets the
  real tokens before any padding, and its outputs are reversed back into place.
Outputs at padded positions are garbage by construction; they are zeroed and the pooling masks them out.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab import cells
from rnnlab.cells import reverse_padded
from rnnlab.config import Pooling
from rnnlab.heads.base import Head, valid_lengths, zero_padding
from rnnlab.heads.pooling import Pool

CELL_NAMES = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}


def recurrent_class(cell: str, impl: str) -> type[nn.Module]:
    """torch.nn.RNN/GRU/LSTM, or the rnnlab.cells class with the same constructor and call signature."""
    if impl == "torch":
        return getattr(nn, CELL_NAMES[cell])
    return getattr(cells, CELL_NAMES[cell])


class RecurrentHead(Head):
    """Stacked recurrent layers over token vectors, then pooling; `out_dim = hidden_size * directions` (3 times that
    with `concat` pooling).

    Parameters are `forward_layers.{l}.*` and `backward_layers.{l}.*`, each holding torch.nn's `*_l0`
    names, so the weights map one to one onto `nn.LSTM(num_layers=L, bidirectional=True)`'s `*_l{l}` and
    `*_l{l}_reverse`.
    """

    def __init__(
        self,
        cls: type[nn.Module],
        input_dim: int,
        *,
        hidden_size: int,
        layers: int,
        bidirectional: bool,
        dropout: float,
        pooling: Pooling,
        norm: bool = False,
    ) -> None:
        super().__init__()
        directions = 2 if bidirectional else 1
        sizes = [input_dim] + [hidden_size * directions] * (layers - 1)  # input width of each layer

        def stack() -> nn.ModuleList:
            return nn.ModuleList(cls(size, hidden_size, num_layers=1, batch_first=True) for size in sizes)

        self.forward_layers = stack()
        self.backward_layers = stack() if bidirectional else None
        self.dropout = nn.Dropout(dropout)  # between layers, as nn.LSTM(dropout=...) does
        self.pool = Pool(pooling, hidden_size * directions, directions, norm=norm)
        self.out_dim = self.pool.out_dim

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        lengths = valid_lengths(mask)
        x = zero_padding(x, mask)  # [B, T, D]; keeps the (masked) padded states finite
        for layer in range(len(self.forward_layers)):
            if layer > 0:
                x = self.dropout(x)
            x = self._run_layer(layer, x, lengths)  # [B, T, dirs*H]
        return self.pool(zero_padding(x, mask), mask)  # [B, dirs*H]

    def _run_layer(self, layer: int, x: Tensor, lengths: Tensor) -> Tensor:
        outputs = [self.forward_layers[layer](x)[0]]  # [B, T, H]
        if self.backward_layers is not None:
            backward = self.backward_layers[layer](reverse_padded(x, lengths))[0]  # [B, T, H], reversed time
            outputs.append(reverse_padded(backward, lengths))  # back in token order
        return torch.cat(outputs, dim=-1)  # [B, T, dirs*H]
