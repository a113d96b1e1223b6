"""What `rnnlab tune` leaves in its study folder besides the runs: the trials table and the two charts. Torch-free."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from rnnlab.runs import atomic_write_bytes

TABLE_CSV, TABLE_MD, HISTORY_PNG, IMPORTANCE_PNG = "trials.csv", "trials.md", "history.png", "importance.png"


def write_table(rows: list[dict[str, Any]], out: Path, *, params: list[str], summary: list[str]) -> None:
    """trials.csv and trials.md: one row per trial (number, state, best validation accuracy, epochs it ran, seconds,
    parameters); `summary` lines head the markdown."""
    columns = ["trial", "state", "val_accuracy", "epochs_run", "seconds", *params]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[row.get(c, "") for c in columns] for row in rows])
    atomic_write_bytes(out / TABLE_CSV, buffer.getvalue().encode())
    lines = [*summary, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    atomic_write_bytes(out / TABLE_MD, ("\n".join(lines) + "\n").encode())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plot_history(rows: list[dict[str, Any]], path: Path) -> None:
    """Validation accuracy of each trial (a pruned one: the best it reported before it was stopped) and the best so far."""
    from matplotlib.figure import Figure  # not pyplot: no global backend switch for whoever tunes in-process

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for state, marker in (("COMPLETE", "o"), ("PRUNED", "x")):
        shown = [r for r in rows if r["state"] == state and r["val_accuracy"] is not None]
        ax.scatter([r["trial"] for r in shown], [r["val_accuracy"] for r in shown], marker=marker, label=state.lower())
    best, steps = None, []
    for row in rows:
        if row["state"] == "COMPLETE" and row["val_accuracy"] is not None:
            best = row["val_accuracy"] if best is None else max(best, row["val_accuracy"])
        steps.append(best)
    ax.step([r["trial"] for r in rows], steps, where="post", color="C2", label="best so far")
    ax.set(xlabel="trial", ylabel="validation accuracy", title="Search history")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_importance(importances: dict[str, float], path: Path, *, note: str = "") -> None:
    """Horizontal bars of each parameter's importance (fANOVA share of the variance of validation accuracy)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 0.4 * max(len(importances), 3) + 1))
    ax = fig.subplots()
    names = list(importances)[::-1]  # largest at the top
    ax.barh(names, [importances[n] for n in names], color="C0")
    ax.set(xlabel="importance (share of variance)", title="Parameter importance")
    if note:
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
