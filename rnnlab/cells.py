"""Recurrent layers written from tensor operations, interchangeable with torch.nn.RNN/GRU/LSTM.

`RNN`, `GRU` and `LSTM` take torch.nn's constructor arguments, create parameters with torch.nn's names, shapes,
gate order and initialisation (so a `state_dict` loads either way) and return torch.nn's `(output, h_n)` or
`(output, (h_n, c_n))`. Each kind is one cell step function; one shared loop runs every layer and direction.

`forward(input, hx=None, mask=None)` also takes a right-padded bool mask `[B, T]` (True = real token). Its meaning
is that of torch.nn on a PackedSequence: the state is held at padded steps, padded outputs are 0, and the reverse
direction starts at each row's own last real token.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

State = tuple[Tensor, ...]  # (h,) or (h, c), each [B, H]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    # Teaching only (torch.nn.RNN has neither): `identity` for the worked example with no activation,
    # `sigmoid` for the gradient study (its derivative is at most 0.25, so gradients vanish faster than with tanh).
    "identity": lambda x: x,
    "sigmoid": torch.sigmoid,
}


def rnn_cell(gi: Tensor, state: State, w_hh: Tensor, b_hh: Tensor | None, activation: Callable) -> State:
    """h' = act(W_ih x + b_ih + W_hh h + b_hh); `gi` is the precomputed W_ih x + b_ih, [B, H]."""
    (h,) = state
    return (activation(gi + F.linear(h, w_hh, b_hh)),)


def gru_cell(gi: Tensor, state: State, w_hh: Tensor, b_hh: Tensor | None) -> State:
    """One GRU step; `gi` = W_ih x + b_ih, [B, 3H] in torch's gate order r, z, n.

    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)      reset gate: how much of h the candidate sees
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)      update gate: how much of h is kept
    n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))   candidate state
    h' = (1 - z) * n + z * h
    """
    (h,) = state
    gh = F.linear(h, w_hh, b_hh)  # [B, 3H]
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return ((1 - z) * n + z * h,)


def lstm_cell(gi: Tensor, state: State, w_hh: Tensor, b_hh: Tensor | None) -> State:
    """One LSTM step; `gi` = W_ih x + b_ih, [B, 4H] in torch's gate order i, f, g, o.

    i  = sigmoid(W_ii x + b_ii + W_hi h + b_hi)   input gate: how much of g is written
    f  = sigmoid(W_if x + b_if + W_hf h + b_hf)   forget gate: how much of c is kept
    g  = tanh(W_ig x + b_ig + W_hg h + b_hg)      candidate cell content
    o  = sigmoid(W_io x + b_io + W_ho h + b_ho)   output gate: how much of c is shown
    c' = f * c + i * g
    h' = o * tanh(c')
    """
    h, c = state
    z_i, z_f, z_g, z_o = (gi + F.linear(h, w_hh, b_hh)).chunk(4, dim=-1)
    i = torch.sigmoid(z_i)
    f = torch.sigmoid(z_f)
    g = torch.tanh(z_g)
    o = torch.sigmoid(z_o)
    c = f * c + i * g
    return (o * torch.tanh(c), c)


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Flip each row of `x` [B, T, ...] within its own length, leaving the padding after it in place."""
    B, T = x.shape[:2]
    t = torch.arange(T, device=x.device).expand(B, T)  # [B, T]
    lengths = lengths.to(x.device).unsqueeze(1)  # [B, 1]
    index = torch.where(t < lengths, lengths - 1 - t, t)  # [B, T]
    index = index.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


def run_direction(cell: Callable, x: Tensor, state: State, weights: list, mask: Tensor | None) -> tuple[Tensor, State]:
    """Run `cell` over x [B, T, D] from t=0; with a mask [B, T] the state is held at padded steps."""
    w_ih, w_hh, b_ih, b_hh = weights
    gi = F.linear(x, w_ih, b_ih)  # [B, T, G*H]: the input projection of all steps at once
    outputs = []
    for t in range(x.shape[1]):
        new = cell(gi[:, t], state, w_hh, b_hh)
        if mask is not None:
            real = mask[:, t, None]  # [B, 1]
            new = tuple(torch.where(real, n, s) for n, s in zip(new, state, strict=True))
        state = new
        outputs.append(state[0])
    out = torch.stack(outputs, dim=1)  # [B, T, H]
    if mask is not None:
        out = out.masked_fill(~mask.unsqueeze(-1), 0.0)
    return out, state


class _Recurrent(nn.Module):
    """The layer/direction loop shared by RNN, GRU and LSTM; subclasses choose the cell."""

    gates = 1  # gate blocks stacked in the weight matrices (RNN 1, GRU 3, LSTM 4)
    states = 1  # tensors in the recurrent state: (h,) or (h, c)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        assert hidden_size > 0 and num_layers > 0 and 0 <= dropout <= 1
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.bidirectional = bias, batch_first, float(dropout), bidirectional
        self.num_directions = 2 if bidirectional else 1
        G, H = self.gates * hidden_size, hidden_size
        # Registered in torch.nn's order, so that the same seed gives the same initial values.
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else H * self.num_directions
            for suffix in self._suffixes(layer):
                self.register_parameter(f"weight_ih{suffix}", nn.Parameter(torch.empty(G, layer_in)))
                self.register_parameter(f"weight_hh{suffix}", nn.Parameter(torch.empty(G, H)))
                if bias:
                    self.register_parameter(f"bias_ih{suffix}", nn.Parameter(torch.empty(G)))
                    self.register_parameter(f"bias_hh{suffix}", nn.Parameter(torch.empty(G)))
        self.reset_parameters()

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][: self.num_directions]

    def _weights(self, suffix: str) -> list[Tensor | None]:
        return [getattr(self, f"{name}{suffix}", None) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def flatten_parameters(self) -> None:
        """No-op, for code written against torch.nn's cuDNN modules."""

    def cell(self) -> Callable:
        raise NotImplementedError

    def extra_repr(self) -> str:
        defaults = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0, "bidirectional": False}
        changed = [f"{k}={getattr(self, k)}" for k, v in defaults.items() if getattr(self, k) != v]
        return ", ".join([f"{self.input_size}, {self.hidden_size}", *changed])

    def forward(self, input: Tensor, hx: Tensor | State | None = None, mask: Tensor | None = None):
        unbatched = input.dim() == 2  # [T, D], as torch.nn allows
        x = input.unsqueeze(0) if unbatched else (input if self.batch_first else input.transpose(0, 1))  # [B, T, D]
        B, T, _ = x.shape
        state0 = self._initial_state(x, hx, unbatched)  # each [L * dirs, B, H]
        lengths = None
        if mask is not None:
            assert mask.shape == (B, T) and mask.dtype == torch.bool, "mask must be bool [B, T]"
            lengths = mask.sum(dim=1)  # [B]
            assert torch.equal(mask, torch.arange(T, device=mask.device) < lengths.unsqueeze(1)), "mask: right-padded"
        cell, finals = self.cell(), []
        for layer in range(self.num_layers):
            outs = []
            for d, suffix in enumerate(self._suffixes(layer)):
                k = layer * self.num_directions + d
                state = tuple(s[k] for s in state0)
                xd = x if d == 0 else self._reverse(x, lengths)
                out, state = run_direction(cell, xd, state, self._weights(suffix), mask)
                outs.append(out if d == 0 else self._reverse(out, lengths))
                finals.append(state)
            x = torch.cat(outs, dim=-1)  # [B, T, H * dirs]
            if layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, self.training)
        final = tuple(torch.stack(parts) for parts in zip(*finals, strict=True))  # each [L * dirs, B, H]
        if unbatched:
            x, final = x.squeeze(0), tuple(s.squeeze(1) for s in final)
        elif not self.batch_first:
            x = x.transpose(0, 1)
        return x, (final if self.states == 2 else final[0])

    @staticmethod
    def _reverse(x: Tensor, lengths: Tensor | None) -> Tensor:
        return x.flip(1) if lengths is None else reverse_padded(x, lengths)

    def _initial_state(self, x: Tensor, hx: Tensor | State | None, unbatched: bool) -> State:
        shape = (self.num_layers * self.num_directions, x.shape[0], self.hidden_size)
        if hx is None:
            return tuple(x.new_zeros(shape) for _ in range(self.states))
        hx = (hx,) if isinstance(hx, Tensor) else tuple(hx)
        assert len(hx) == self.states, f"{type(self).__name__} expects {self.states} state tensor(s)"
        hx = tuple(h.unsqueeze(1) for h in hx) if unbatched else hx
        assert all(h.shape == shape for h in hx), f"hx must have shape {shape}"
        return hx


class RNN(_Recurrent):
    """Elman RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh or relu, as torch.nn.RNN.

    `identity` and `sigmoid` are extra, teaching-only activations (torch.nn.RNN rejects them).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        if nonlinearity not in ACTIVATIONS:
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; expected one of {sorted(ACTIVATIONS)}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)

    def cell(self) -> Callable:
        return functools.partial(rnn_cell, activation=ACTIVATIONS[self.nonlinearity])

    def extra_repr(self) -> str:
        extra = "" if self.nonlinearity == "tanh" else f", nonlinearity={self.nonlinearity!r}"
        return super().extra_repr() + extra


class GRU(_Recurrent):
    """GRU with torch.nn.GRU's gate order r, z, n; see `gru_cell` for the equations."""

    gates = 3

    def cell(self) -> Callable:
        return gru_cell


class LSTM(_Recurrent):
    """LSTM with torch.nn.LSTM's gate order i, f, g, o; see `lstm_cell`. Returns (output, (h_n, c_n))."""

    gates, states = 4, 2

    def cell(self) -> Callable:
        return lstm_cell
