"""Tables, significance tests and charts from a folder of run folders (reads JSON only; never imports torch).

A run folder is any folder holding results.json, metrics.jsonl or a run's config.json. Finished runs are grouped
into rows by (encoder, head, finetune); the seeds of one cell are separate runs and become mean ± std.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlab.compare.charts import plot_accuracy, plot_confusions, plot_val_curves
from rnnlab.compare.stats import mcnemar
from rnnlab.compare.text import PAIRING_NOTE, render_markdown, summary_paragraph
from rnnlab.errors import UserError
from rnnlab.metrics import per_class
from rnnlab.runs import CHECKS, CONFIG, METRICS, PREDICTIONS, RESULTS, atomic_write_bytes

_RESULT_KEYS = (
    "test_accuracy", "test_macro_f1", "best_epoch", "train_seconds", "reviews_per_s", "peak_memory_mb",
    "params_trainable", "params_total", "confusion_matrix", "label_names", "split_hash",
)  # fmt: skip


_CHECK_KEYS = ("ece_scaled", "behaviour_failure_rate", "negation_failure_rate")


def _read_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from e


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a run killed mid-write leaves a truncated last line; the complete epochs still count
    return rows


def summarize_run(run_dir: Path) -> dict:
    """One run folder as a flat dict: identity (encoder, head, finetune, seed), progress, and test results."""
    run_dir = Path(run_dir)
    results = _read_json(run_dir / RESULTS) or {}
    checks = _read_json(run_dir / CHECKS) or {}  # written by rnnlab.analyze.checks after a grid cell
    config = _read_json(run_dir / CONFIG) or {}
    metrics = _read_jsonl(run_dir / METRICS)
    encoder_cfg, model_cfg, train_cfg = (config.get(k) or {} for k in ("encoder", "model", "train"))
    val = [m.get("val_accuracy") for m in metrics]
    return {
        "run_dir": str(run_dir),
        "finished": bool(results.get("finished", False)),
        "encoder": results.get("encoder", encoder_cfg.get("encoder")),
        "head": results.get("head", model_cfg.get("head")),
        "finetune": bool(results.get("finetune", encoder_cfg.get("finetune", False))),
        "seed": results.get("seed", train_cfg.get("seed")),
        "epochs_done": len(metrics),
        "epochs_planned": train_cfg.get("epochs"),
        "val_epochs": [m.get("epoch", i + 1) for i, m in enumerate(metrics)],
        "val_accuracy": val,
        "best_val_accuracy": max((v for v in val if v is not None), default=None),
        **{k: results.get(k) for k in _RESULT_KEYS},
        **{k: checks.get(k) for k in _CHECK_KEYS},
    }


def find_runs(grid_dir: Path, exclude: Path | None = None) -> tuple[list[dict], list[str]]:
    """Finished runs under `grid_dir` (any depth), and one line for each run folder that was skipped and why."""
    dirs = {p.parent for name in (RESULTS, METRICS, CONFIG) for p in Path(grid_dir).rglob(name)}
    finished, skipped = [], []
    for run_dir in sorted(dirs):
        shown = run_dir.relative_to(grid_dir) if run_dir != Path(grid_dir) else run_dir
        if exclude is not None and run_dir.resolve().is_relative_to(exclude.resolve()):
            continue
        try:
            run = summarize_run(run_dir)
        except UserError as e:
            skipped.append(f"{shown}: unreadable ({e})")
            continue
        looks_like_run = (run_dir / METRICS).exists() or (run_dir / RESULTS).exists() or run["head"]
        if run["finished"] and run["test_accuracy"] is None:
            skipped.append(f"{shown}: results.json says finished but has no test_accuracy")
        elif run["finished"]:
            finished.append(run)
        elif looks_like_run:  # a config.json alone that is not a run's config (e.g. a grid spec) is not a run
            planned = run["epochs_planned"] if run["epochs_planned"] is not None else "?"
            skipped.append(f"{shown}: unfinished ({run['epochs_done']}/{planned} epochs)")
    return finished, skipped


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _std(values: list) -> float:
    # Sample std (ddof=1) is the honest spread for a handful of seeds; one seed has no spread to report.
    values = [v for v in values if v is not None]
    return float(np.std(values, ddof=1)) if len(values) >= 2 else 0.0


def _row_name(encoder: str, head: str, finetune: bool) -> str:
    return f"{encoder} + {head}" + (" (finetuned)" if finetune else "")


def aggregate(runs: list[dict]) -> tuple[list[dict], dict[tuple, list[dict]]]:
    """Rows (one per encoder × head × finetune, best mean accuracy first) and the runs behind each row key."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        groups[(run["encoder"], run["head"], run["finetune"])].append(run)
    rows = []
    for (encoder, head, finetune), members in groups.items():
        members.sort(key=lambda r: (r["seed"] is None, r["seed"] or 0))
        acc = [r["test_accuracy"] for r in members]
        f1 = [r["test_macro_f1"] for r in members]
        rows.append({
            "name": _row_name(encoder, head, finetune), "encoder": encoder, "head": head, "finetune": finetune,
            "baseline": encoder == "tfidf", "n": len(members), "seeds": [r["seed"] for r in members],
            "accuracy_mean": float(np.mean(acc)), "accuracy_std": _std(acc),
            "macro_f1_mean": _mean(f1) or 0.0, "macro_f1_std": _std(f1), "recall": _recall(members),
            **{k: _mean([r[k] for r in members]) for k in ("params_trainable", "params_total", "train_seconds",
                                                           "reviews_per_s", "peak_memory_mb", "best_epoch",
                                                           *_CHECK_KEYS)},
            "split_hashes": sorted({str(r["split_hash"]) for r in members}),
            "p_value": None, "mcnemar_b": None, "mcnemar_c": None, "test_note": "",
        })  # fmt: skip
    rows.sort(key=lambda r: (-r["accuracy_mean"], -r["macro_f1_mean"], r["name"]))
    return rows, groups


def _recall(members: list[dict]) -> dict[str, float] | None:
    """Mean test recall of each class over the seeds, from each run's confusion matrix (so older runs have it too)."""
    found = [dict(zip(r["label_names"], per_class(np.asarray(r["confusion_matrix"]))["recall"]))
             for r in members if r["confusion_matrix"] and r["label_names"]]  # fmt: skip
    if not found:
        return None
    return {name: float(np.mean([f[name] for f in found])) for name in found[0]}


def _correctness(run: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """(example indices, correct?) from a run's predictions.jsonl, or None when it has none."""
    preds = _read_jsonl(Path(run["run_dir"]) / PREDICTIONS)
    if not preds:
        return None
    index = np.array([p["index"] for p in preds])
    correct = np.array([str(p["label"]) == str(p["pred"]) for p in preds])
    return index, correct


def _pair_problem(row: dict, run: dict, best_run: dict) -> tuple[str, str | None] | None:
    """Why `run` cannot be paired with the best row's run: (table note, warning or None); None when it can."""
    if run["split_hash"] is None or best_run["split_hash"] is None:
        return "no split hash", f"{row['name']} vs best: a split hash is missing, the test split cannot be checked"
    if run["split_hash"] != best_run["split_hash"]:
        return "split differs", (
            f"{row['name']}: test split hash {run['split_hash'][:12]} differs from the best row's "
            f"{best_run['split_hash'][:12]}; its accuracy is on other test examples and McNemar's test is skipped"
        )
    return None


def add_significance(rows: list[dict], groups: dict[tuple, list[dict]]) -> list[str]:
    """Fill p_value (best row vs each other row) in place; return warnings about splits that do not match."""
    warnings = [
        f"{r['name']}: its seeds ran on {len(r['split_hashes'])} different test splits"
        for r in rows
        if len(r["split_hashes"]) > 1
    ]
    if len(rows) < 2:
        return warnings
    best_run = groups[_key(rows[0])][0]  # runs are sorted by seed: this is the lowest seed
    best_pred = _correctness(best_run)
    for row in rows[1:]:
        run = groups[_key(row)][0]
        pred = _correctness(run)
        problem = _pair_problem(row, run, best_run)
        if problem is None and (best_pred is None or pred is None):
            problem = ("no predictions", None)
        if problem is None and not np.array_equal(best_pred[0], pred[0]):
            problem = ("predictions not aligned", f"{row['name']}: same split hash but other test examples listed")
        if problem is not None:
            row["test_note"] = problem[0]
            warnings += [problem[1]] if problem[1] else []
            continue
        result = mcnemar(best_pred[1], pred[1])
        row.update(p_value=result["p_value"], mcnemar_b=result["b"], mcnemar_c=result["c"])
    return warnings


def _key(row: dict) -> tuple:
    return row["encoder"], row["head"], row["finetune"]


def build_report(grid_dir: Path, out_dir: Path | None = None) -> dict:
    """Write results.{csv,json,md} and charts for every finished run under `grid_dir`; return the report dict."""
    grid_dir = Path(grid_dir)
    if not grid_dir.is_dir():
        raise UserError(f"{grid_dir}: not a folder")
    out_dir = Path(out_dir) if out_dir is not None else grid_dir / "report"
    runs, skipped = find_runs(grid_dir, exclude=out_dir)
    rows, groups = aggregate(runs)
    warnings = add_significance(rows, groups)
    report = {"grid_dir": str(grid_dir), "summary": summary_paragraph(rows), "rows": rows,
              "warnings": warnings, "skipped": skipped, "pairing": PAIRING_NOTE}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows).drop(columns=["split_hashes"], errors="ignore")
    atomic_write_bytes(out_dir / "results.csv", table.to_csv(index=False).encode())
    atomic_write_bytes(out_dir / "results.json", (json.dumps(report, indent=2) + "\n").encode())
    atomic_write_bytes(out_dir / "results.md", render_markdown(report).encode())
    charts = [plot_accuracy(rows, out_dir / "accuracy.png")]
    charts += plot_val_curves(rows, groups, out_dir)
    charts.append(plot_confusions(rows, groups, out_dir / "confusion.png"))
    report["files"] = [str(p) for p in [out_dir / f"results.{ext}" for ext in ("csv", "json", "md")] + charts if p]
    return report
