"""The report's charts, split from report.py to keep both short.

Figures are built with matplotlib.figure.Figure, not pyplot: no global backend switch for whoever imports the report
(a notebook keeps its backend), nothing to close, and PNGs render headless through Agg.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure


def _safe(name: str) -> str:
    # Encoder names can be hub ids such as "sentence-transformers/all-MiniLM-L6-v2"; keep file names flat.
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))


def _head_colors(rows: list[dict]) -> dict[str, tuple]:
    # One colour per head across every encoder group, so "lstm" looks the same everywhere.
    heads = sorted({r["head"] for r in rows if not r["baseline"]})
    cmap = matplotlib.colormaps["tab10"]
    return {h: cmap(i % 10) for i, h in enumerate(heads)}


def plot_accuracy(rows: list[dict], path: Path) -> Path | None:
    """Bars of mean test accuracy (error bars = std over seeds), grouped by encoder; the baseline as a line."""
    bars = [r for r in rows if not r["baseline"]]
    baseline = next((r for r in rows if r["baseline"]), None)
    if not rows:
        return None
    by_encoder: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(bars, key=lambda r: (r["encoder"], r["finetune"], r["head"])):
        by_encoder[r["encoder"]].append(r)
    colors = _head_colors(rows)
    width = 0.8 / max((len(g) for g in by_encoder.values()), default=1)
    fig = Figure(figsize=(max(7.5, 2.8 + 0.55 * len(bars)), 4.5))
    ax = fig.subplots()
    labelled = set()
    for x, group in enumerate(by_encoder.values()):
        for i, r in enumerate(group):
            xpos = x - 0.4 + width * (i + 0.5)
            label = r["head"] + (" (finetuned)" if r["finetune"] else "")
            ax.bar(xpos, r["accuracy_mean"], width * 0.9, yerr=r["accuracy_std"], capsize=3, color=colors[r["head"]],
                   hatch="//" if r["finetune"] else None, label=None if label in labelled else label)  # fmt: skip
            labelled.add(label)
            ax.text(xpos, r["accuracy_mean"] + r["accuracy_std"] + 0.003, f"{r['accuracy_mean']:.3f}",
                    ha="center", va="bottom", fontsize=7)  # fmt: skip
    if baseline is not None:
        ax.axhline(baseline["accuracy_mean"], color="black", linestyle="--", linewidth=1,
                   label=f"TF-IDF + logreg ({baseline['accuracy_mean']:.3f})")  # fmt: skip
    lows = [r["accuracy_mean"] - r["accuracy_std"] for r in rows]
    # Accuracies of competing models sit within a few points; a zero-based axis would hide every difference.
    ax.set_ylim(max(0.0, min(lows) - 0.05), min(1.0, max(r["accuracy_mean"] + r["accuracy_std"] for r in rows) + 0.03))
    ax.set_xticks(range(len(by_encoder)), list(by_encoder))
    ax.set(xlabel="encoder", ylabel="test accuracy (mean ± std over seeds)", title="Test accuracy by encoder and head")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never covers a bar
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _mean_curve(runs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    # Seeds can stop at different epochs (early stopping); average whatever seeds reached each epoch.
    per_epoch: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        for epoch, acc in zip(run["val_epochs"], run["val_accuracy"], strict=True):
            if acc is not None:
                per_epoch[int(epoch)].append(acc)
    epochs = np.array(sorted(per_epoch))
    return epochs, np.array([np.mean(per_epoch[e]) for e in epochs])


def plot_val_curves(rows: list[dict], groups: dict[tuple, list[dict]], out_dir: Path) -> list[Path]:
    """val_curves_<encoder>.png: validation accuracy per epoch, one line per head, mean over seeds."""
    colors = _head_colors(rows)
    paths = []
    for encoder in sorted({r["encoder"] for r in rows if not r["baseline"]}):
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        drawn = False
        for r in (r for r in rows if r["encoder"] == encoder and not r["baseline"]):
            epochs, acc = _mean_curve(groups[(r["encoder"], r["head"], r["finetune"])])
            if len(epochs):
                ax.plot(epochs, acc, marker="o", color=colors[r["head"]], linestyle="--" if r["finetune"] else "-",
                        label=f"{r['head']}{' (finetuned)' if r['finetune'] else ''} (n={r['n']})")  # fmt: skip
                drawn = True
        if not drawn:
            continue
        ax.set(xlabel="epoch", ylabel="validation accuracy (mean over seeds)", title=f"Validation accuracy: {encoder}")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(_save(fig, out_dir / f"val_curves_{_safe(encoder)}.png"))
    return paths


def plot_confusions(rows: list[dict], groups: dict[tuple, list[dict]], path: Path) -> Path | None:
    """One grid figure: a row-normalised confusion matrix per row (counts summed over seeds), best row first."""
    cells = []
    for r in rows:
        matrices = [np.array(m["confusion_matrix"]) for m in groups[(r["encoder"], r["head"], r["finetune"])]
                    if m["confusion_matrix"]]  # fmt: skip
        if matrices:
            cells.append((r, sum(matrices), groups[(r["encoder"], r["head"], r["finetune"])][0]["label_names"]))
    if not cells:
        return None
    ncols = min(4, len(cells))
    nrows = -(-len(cells) // ncols)
    fig = Figure(figsize=(3.3 * ncols, 3.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (r, counts, names) in zip(axes.flat, cells, strict=False):
        _draw_confusion(ax, counts, names or [str(i) for i in range(len(counts))])
        ax.set_title(f"{r['name']} (n={r['n']})", fontsize=8)
    for ax in axes.flat[len(cells) :]:
        ax.axis("off")
    fig.suptitle("Confusion matrices (rows = true label, share of the row)", fontsize=10)
    return _save(fig, path)


def _draw_confusion(ax, counts: np.ndarray, names: list[str]) -> None:
    # Normalise by true-label row so classes of different sizes are read on the same 0-1 scale (per-class recall).
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    k = len(names)
    ax.set_xticks(range(k), names, fontsize=7, rotation=45 if k > 4 else 0)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true")
    if k <= 10:  # beyond ten classes the numbers would overlap; the colours still read
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")  # fmt: skip


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
