"""The worked example of the tutorial: an RNN whose weights are all 1 remembers what it saw.

Hidden size 2, inputs [1, 1], [2, 2], [1, 1], weights 1, biases 0. Each hidden unit adds up both inputs and both
previous hidden values, so with no activation the hidden state goes 2, 8, 18: the same input [1, 1] gives 2 the
first time and 18 the second, because the state carries what came before.
"""

from __future__ import annotations

import torch

from rnnlab import cells
from rnnlab.demos.config import MemoryConfig

INPUTS = [[1.0, 1.0], [2.0, 2.0], [1.0, 1.0]]


def all_ones_rnn(activation: str) -> cells.RNN:
    """rnnlab.cells.RNN(2, 2) with every weight 1 and every bias 0; `none` is the teaching-only identity."""
    rnn = cells.RNN(2, 2, nonlinearity="identity" if activation == "none" else activation)
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            p.fill_(1.0 if name.startswith("weight") else 0.0)
    return rnn


@torch.no_grad()
def run(cfg: MemoryConfig) -> dict:
    """Print the hidden state step by step and return them as {"hidden_states": [[h1, h2], ...]}."""
    rnn = all_ones_rnn(cfg.activation)
    x = torch.tensor(INPUTS).unsqueeze(1)  # [T=3, B=1, 2]
    outputs, _ = rnn(x)  # [3, 1, 2]
    states = outputs[:, 0].tolist()
    act = "" if cfg.activation == "none" else cfg.activation
    rule = f"{act}(W_ih x_t + W_hh h_(t-1))" if act else "W_ih x_t + W_hh h_(t-1)"
    print(f"h_t = {rule}, all weights 1, biases 0, h_0 = [0, 0]")
    previous = [0.0, 0.0]
    for t, (inp, h) in enumerate(zip(INPUTS, states, strict=True), start=1):
        terms = f"{_num(inp[0])}+{_num(inp[1])} + {_num(previous[0])}+{_num(previous[1])}"
        pre = sum(inp) + sum(previous)
        shown = f"{_num(pre)}" if act == "" else f"{act}({_num(pre)}) = {_num(h[0])}"
        print(f"step {t}  input {_vec(inp)}  each unit: {terms} = {shown}  hidden {_vec(h)}")
        previous = h
    print("Steps 1 and 3 get the same input [1, 1] but different hidden states: the state carries the earlier steps.")
    return {"activation": cfg.activation, "hidden_states": states}


def _num(v: float) -> str:
    """2.0 -> '2', 0.96402758 -> '0.964'."""
    return f"{v:g}" if float(v).is_integer() else f"{v:.3f}"


def _vec(values: list[float]) -> str:
    return "[" + ", ".join(_num(v) for v in values) + "]"
