"""The long-range dependency study: how much of the loss's gradient reaches the early steps of a sequence.

Memory task: sequences of `length` steps whose label (one of two) is shown only at t=0; the other steps carry
noise. For each cell the loss at the last step is differentiated w.r.t. every input x_t, at initialisation and after
a short training run. A ReLU RNN with large recurrent weights is then trained with and without gradient clipping.
Writes gradient_profile.png, growth.png, clipping.png and gradients.md into `out_dir`.
"""

from __future__ import annotations

import contextlib
import copy
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from rnnlab import cells
from rnnlab.demos.config import GradientsConfig

KINDS = ("rnn_tanh", "rnn_sigmoid", "gru", "lstm")
CLASSES, FEATURES = 2, 4  # channels 0-1: the label at t=0; channels 2-3: noise at t>0


def memory_batch(cfg: GradientsConfig, generator: torch.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(0, CLASSES, (size,), generator=generator)  # [B]
    x = torch.zeros(size, cfg.length, FEATURES)  # [B, T, F]
    x[:, 1:, CLASSES:] = torch.randn(size, cfg.length - 1, FEATURES - CLASSES, generator=generator)
    x[torch.arange(size), 0, y] = 1.0
    return x, y


class LastStepClassifier(nn.Module):
    """Recurrent layer + linear layer on the state after the last step."""

    def __init__(self, kind: str, hidden_size: int, gate_bias: float = 0.0) -> None:
        super().__init__()
        if kind == "rnn_sigmoid":  # torch.nn.RNN has no sigmoid; the from-scratch cell does (teaching only)
            self.rnn = cells.RNN(FEATURES, hidden_size, nonlinearity="sigmoid", batch_first=True)
        elif kind.startswith("rnn_"):
            self.rnn = nn.RNN(FEATURES, hidden_size, nonlinearity=kind[4:], batch_first=True)
        else:
            self.rnn = getattr(nn, kind.upper())(FEATURES, hidden_size, batch_first=True)
        if kind in ("gru", "lstm") and gate_bias:
            keep = slice(hidden_size, 2 * hidden_size)  # GRU's update gate z and LSTM's forget gate f: 2nd block
            with torch.no_grad():
                self.rnn.bias_ih_l0[keep] += gate_bias
                self.rnn.bias_hh_l0[keep] += gate_bias
        self.out = nn.Linear(hidden_size, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.rnn(x)  # [B, T, H]
        return self.out(states[:, -1])  # [B, C]


def gradient_profile(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Mean over the batch of |dL/dx_t| for every t, in float64 so that tiny values do not underflow."""
    model64 = copy.deepcopy(model).double()
    x = x.double().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model64(x), y), x)  # [B, T, F]
    return grad.norm(dim=2).mean(dim=0).tolist()


def train_memory(model: nn.Module, cfg: GradientsConfig, generator: torch.Generator) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    for _ in range(cfg.steps):
        x, y = memory_batch(cfg, generator, cfg.batch_size)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def study_memory(cfg: GradientsConfig) -> dict:
    """Gradient profiles at init and after training, plus accuracy, for every cell kind."""
    x_eval, y_eval = memory_batch(cfg, torch.Generator().manual_seed(cfg.seed + 1000), 256)
    results = {}
    for kind in KINDS:
        torch.manual_seed(cfg.seed)
        model = LastStepClassifier(kind, cfg.hidden_size, cfg.gate_bias)
        init = gradient_profile(model, x_eval, y_eval)
        train_memory(model, cfg, torch.Generator().manual_seed(cfg.seed))
        with torch.no_grad():
            accuracy = (model(x_eval).argmax(dim=1) == y_eval).float().mean().item()
        trained = gradient_profile(model, x_eval, y_eval)
        results[kind] = {"init": init, "trained": trained, "accuracy": accuracy}
        print(f"{kind:12s} dL/dx_0 / dL/dx_T-1  init {_ratio(init):.1e}  trained {_ratio(trained):.1e}  acc {accuracy:.2f}")
    for kind in ("gru", "lstm") if cfg.gate_bias else ():  # the same cells with torch's own init, for comparison
        torch.manual_seed(cfg.seed)
        init = gradient_profile(LastStepClassifier(kind, cfg.hidden_size), x_eval, y_eval)
        results[f"{kind}_torch_init"] = {"init": init}
        print(f"{kind + ' (torch init)':24s} init {_ratio(init):.1e}")
    return results


def study_clipping(cfg: GradientsConfig) -> dict:
    """Train a ReLU RNN with large orthogonal recurrent weights by SGD, without and with gradient clipping."""
    torch.manual_seed(cfg.seed)
    model = LastStepClassifier("rnn_relu", cfg.hidden_size)
    nn.init.orthogonal_(model.rnn.weight_hh_l0.data, gain=cfg.explode_gain)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    runs = {}
    for name, max_norm in (("unclipped", math.inf), ("clipped", cfg.clip_norm)):
        model.load_state_dict(start)
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.explode_lr)
        generator, losses, norms = torch.Generator().manual_seed(cfg.seed), [], []
        for _ in range(cfg.explode_steps):
            x, y = memory_batch(cfg, generator, cfg.batch_size)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            norms.append(nn.utils.clip_grad_norm_(model.parameters(), max_norm).item())  # norm before clipping
            optimizer.step()
            losses.append(loss.item())
        runs[name] = {"losses": losses, "grad_norms": norms}
        print(f"{name:9s} loss first {losses[0]:.3g} last {losses[-1]:.3g}  grad norm at step 1 {norms[0]:.3g}")
    return runs


def _ratio(profile: list[float]) -> float:
    return profile[0] / profile[-1] if profile[-1] > 0 else float("nan")


def plot_profiles(memory: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, stage in zip(axes, ("init", "trained"), strict=True):
        for kind, result in memory.items():
            if stage in result:
                style = "--" if kind.endswith("torch_init") else "-"
                ax.semilogy([max(g, 1e-300) for g in result[stage]], style, label=kind.replace("_", " "))
        ax.set(title=f"|dL/dx_t| {'at initialisation' if stage == 'init' else 'after training'}", xlabel="step t")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("gradient norm (log)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_growth(path: Path, steps: int = 1000) -> dict:
    import matplotlib.pyplot as plt

    t = list(range(steps + 1))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(t, [1.01**s for s in t], label="1.01^t (explodes)")
    ax.semilogy(t, [0.99**s for s in t], label="0.99^t (vanishes)")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set(title="A factor repeated t times", xlabel="t", ylabel="value (log)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"1.01": 1.01**steps, "0.99": 0.99**steps, "t": steps}


def plot_clipping(runs: dict, clip_norm: float, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, run_ in runs.items():
        label = name if name == "unclipped" else f"clipped at {clip_norm:g}"
        steps = range(1, len(run_["losses"]) + 1)
        axes[0].semilogy(steps, run_["losses"], label=label)
        axes[1].semilogy(steps, run_["grad_norms"], label=label)
        bad = next((i + 1 for i, v in enumerate(run_["losses"]) if not math.isfinite(v)), None)
        if bad:
            axes[0].axvline(bad, color="red", ls=":", label=f"{name}: NaN from step {bad}")
    axes[0].set(title="training loss (NaN is not drawn)", xlabel="SGD step", ylabel="loss (log)")
    axes[1].set(title="gradient norm before clipping", xlabel="SGD step", ylabel="norm (log)")
    for ax in axes:
        ax.legend()
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_note(cfg: GradientsConfig, memory: dict, growth: dict, runs: dict, path: Path) -> str:
    T = cfg.length
    lines = [
        f"# Gradient study (length {T}, hidden {cfg.hidden_size}, seed {cfg.seed}, gate bias {cfg.gate_bias:g})",
        "",
        f"Ratio |dL/dx_0| / |dL/dx_{T - 1}|: how much of the last step's gradient reaches the first input.",
        "",
        "| cell | at init | after training | accuracy after training |",
        "|---|---|---|---|",
    ]
    for kind, r in memory.items():
        trained = f"{_ratio(r['trained']):.1e}" if "trained" in r else "-"
        accuracy = f"{r['accuracy']:.2f}" if "accuracy" in r else "-"
        name = kind.replace("_torch_init", " (torch's init, gate bias 0)").replace("_", " ")
        lines.append(f"| {name} | {_ratio(r['init']):.1e} | {trained} | {accuracy} |")
    tanh, lstm = memory["rnn_tanh"], memory["lstm"]
    unclipped, clipped = runs["unclipped"]["losses"], runs["clipped"]["losses"]
    bad = next((i + 1 for i, v in enumerate(unclipped) if not math.isfinite(v)), None)
    peak = max(v for v in unclipped if math.isfinite(v))
    fate = f"the loss became NaN at step {bad}" if bad else f"the loss peaked at {peak:.3g} and ended at {unclipped[-1]:.3g}"
    largest = max((v for v in runs["unclipped"]["grad_norms"] if math.isfinite(v)), default=float("nan"))
    lines += [
        "",
        f"- At initialisation the gradient at t=0 is {_ratio(tanh['init']):.1e} of the gradient at t={T - 1} "
        f"for the tanh RNN, {_ratio(memory['rnn_sigmoid']['init']):.1e} for the sigmoid RNN and "
        f"{_ratio(lstm['init']):.1e} for the LSTM.",
        f"- After {cfg.steps} Adam steps: tanh RNN {_ratio(tanh['trained']):.1e} (accuracy {tanh['accuracy']:.2f}), "
        f"LSTM {_ratio(lstm['trained']):.1e} (accuracy {lstm['accuracy']:.2f}); chance is 0.50.",
        f"- 1.01^{growth['t']} = {growth['1.01']:.0f} and 0.99^{growth['t']} = {growth['0.99']:.1e}.",
        f"- ReLU RNN (orthogonal recurrent weights, gain {cfg.explode_gain:g}), SGD lr {cfg.explode_lr:g}: without "
        f"clipping {fate} (largest finite gradient norm {largest:.2g}); clipped at norm "
        f"{cfg.clip_norm:g} the loss went from {clipped[0]:.3g} to {clipped[-1]:.3g} in {cfg.explode_steps} steps.",
        "",
        "Plots: gradient_profile.png, growth.png, clipping.png.",
    ]
    text = "\n".join(lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return text


@contextlib.contextmanager
def small_cpu_work():
    """One thread (these tensors are too small to share) and flushed denormals (vanishing float32 gradients reach
    them, and CPUs are slow on them); both restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(False)


def run(cfg: GradientsConfig) -> dict:
    """Run both studies, write the plots and the note into cfg.out_dir, and return the measured numbers."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with small_cpu_work():
        memory = study_memory(cfg)
        runs = study_clipping(cfg)
    plot_profiles(memory, out / "gradient_profile.png")
    growth = plot_growth(out / "growth.png")
    plot_clipping(runs, cfg.clip_norm, out / "clipping.png")
    write_note(cfg, memory, growth, runs, out / "gradients.md")
    print(f"wrote {out / 'gradients.md'} and 3 plots")
    ratios = {kind: {stage: _ratio(r[stage]) for stage in ("init", "trained") if stage in r} for kind, r in memory.items()}
    accuracy = {kind: r["accuracy"] for kind, r in memory.items() if "accuracy" in r}
    files = [str(out / name) for name in ("gradient_profile.png", "growth.png", "clipping.png", "gradients.md")]
    return {"ratios": ratios, "accuracy": accuracy, "profiles": memory, "growth": growth, "clipping": runs, "files": files}
