"""`rnnlab demo gates RUN "text"`: what an LSTM's (or GRU's) gates do over the tokens of a real review.

The gates are recomputed from the first layer's own weights, step by step in torch's gate order,
from the same token vectors the trained head reads.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rnnlab.data.batching import collate
from rnnlab.demos.config import GatesConfig
from rnnlab.errors import UserError

GATES = {"LSTM": ("input", "forget", "output"), "GRU": ("reset", "update")}


def trace(layer: torch.nn.Module, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Gate activations [T, H] of a single-layer LSTM/GRU (torch.nn or rnnlab.cells) over x [T, D], and its outputs [T, H]."""
    kind = type(layer).__name__
    w_ih, w_hh = layer.weight_ih_l0, layer.weight_hh_l0
    b_ih = getattr(layer, "bias_ih_l0", None)
    b_hh = getattr(layer, "bias_hh_l0", None)
    gi = torch.nn.functional.linear(x, w_ih, b_ih)  # [T, G*H]
    h = x.new_zeros(layer.hidden_size)
    c = x.new_zeros(layer.hidden_size)
    rows: dict[str, list[torch.Tensor]] = {name: [] for name in GATES[kind]}
    outputs = []
    for t in range(x.shape[0]):
        gh = torch.nn.functional.linear(h, w_hh, b_hh)
        if kind == "LSTM":  # gate order i, f, g, o
            i, f, g, o = (gi[t] + gh).chunk(4)
            i, f, o = i.sigmoid(), f.sigmoid(), o.sigmoid()
            c = f * c + i * g.tanh()
            h = o * c.tanh()
            values = (i, f, o)
        else:  # gate order r, z, n; the candidate sees r * (W_hn h + b_hn)
            (i_r, i_z, i_n), (h_r, h_z, h_n) = gi[t].chunk(3), gh.chunk(3)
            r, z = (i_r + h_r).sigmoid(), (i_z + h_z).sigmoid()
            h = (1 - z) * (i_n + r * h_n).tanh() + z * h
            values = (r, z)
        for name, value in zip(GATES[kind], values):
            rows[name].append(value)
        outputs.append(h)
    return {name: torch.stack(v) for name, v in rows.items()}, torch.stack(outputs)


@torch.no_grad()
def run(cfg: GatesConfig) -> dict:
    from rnnlab.serve.predict import Predictor

    predictor = Predictor.load(cfg.run, device="cpu", bf16=False)
    model = predictor.model
    layers = getattr(model.head, "forward_layers", None)
    if layers is None or type(layers[0]).__name__ not in GATES:
        raise UserError(f"{cfg.run}: demo gates needs a run with an lstm, bilstm, gru or bigru head")
    ids = model.encoder.tokenize([cfg.text])[0]
    batch, mask = collate([ids], model.encoder.pad_id)
    gates, _ = trace(layers[0], model.encoder(batch, mask)[0].float())
    tokens = model.encoder.token_strings(ids)
    label = predictor.predict([cfg.text])[0]
    _plot(gates, tokens, cfg, label["label"])
    means = {name: round(float(v.mean()), 3) for name, v in gates.items()}
    print(f"prediction: {label['label']}  ({', '.join(f'{k}={v:.3f}' for k, v in label['probs'].items())})")
    print("mean gate activations: " + ", ".join(f"{k} {v}" for k, v in means.items()) + f"\nwrote {cfg.out}")
    return {"tokens": tokens, "means": means, "label": label}


def _plot(gates: dict[str, torch.Tensor], tokens: list[str], cfg: GatesConfig, label: str) -> None:
    from matplotlib.figure import Figure

    n = len(gates)
    fig = Figure(figsize=(max(8, 0.22 * len(tokens)), 2.2 * (n + 1)))
    axes = fig.subplots(n + 1, 1, sharex=True)
    for name, values in gates.items():
        axes[0].plot(values.mean(1).numpy(), label=name)
    axes[0].set(ylabel="mean over units", ylim=(0, 1), title=f"{Path(cfg.run).name}: gates over the text (prediction {label})")
    axes[0].legend(loc="upper right", ncols=n)
    for ax, (name, values) in zip(axes[1:], gates.items()):
        ax.imshow(values[:, : cfg.units].T.numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set(ylabel=f"{name}\nunit")
    axes[-1].set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
    fig.tight_layout()
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(cfg.out, dpi=110)
