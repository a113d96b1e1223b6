"""Tables, significance tests and charts from a folder of run folders (reads JSON only; never imports torch).

A run folder is any folder holding results.json, metrics.jsonl or a run's config.json. Finished runs are grouped
into rows by (encoder, head, finetune); the seeds of one cell are separate runs and become mean ± std.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlab.errors import UserError
from rnnlab.report_charts import plot_accuracy, plot_confusions, plot_val_curves
from rnnlab.stats import mcnemar

ALPHA = 0.05  # significance level used by the summary's "significantly worse" wording
_RESULT_KEYS = (
    "test_accuracy", "test_macro_f1", "best_epoch", "train_seconds", "reviews_per_s", "peak_memory_mb",
    "params_trainable", "params_total", "confusion_matrix", "label_names", "split_hash",
)  # fmt: skip
PAIRING_NOTE = (
    "p vs best: McNemar's test (exact binomial below 25 discordant pairs, else chi-square with continuity correction) "
    "between the lowest-seed run of the best row and the lowest-seed run of each other row, on the same test split. "
    "It compares two single runs, so read it next to the seed std."
)


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
    results = _read_json(run_dir / "results.json") or {}
    config = _read_json(run_dir / "config.json") or {}
    metrics = _read_jsonl(run_dir / "metrics.jsonl")
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
    }


def find_runs(grid_dir: Path, exclude: Path | None = None) -> tuple[list[dict], list[str]]:
    """Finished runs under `grid_dir` (any depth), and one line for each run folder that was skipped and why."""
    dirs = {p.parent for name in ("results.json", "metrics.jsonl", "config.json") for p in Path(grid_dir).rglob(name)}
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
        is_run_config = (run_dir / "metrics.jsonl").exists() or (run_dir / "results.json").exists() or run["head"]
        if run["finished"]:
            finished.append(run)
        elif is_run_config:  # a config.json alone that is not a run's config (e.g. a grid spec) is not a run
            planned = run["epochs_planned"] if run["epochs_planned"] is not None else "?"
            skipped.append(f"{shown}: unfinished ({run['epochs_done']}/{planned} epochs)")
    return finished, skipped


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _std(values: list[float]) -> float:
    # Sample std (ddof=1) is the honest spread for a handful of seeds; one seed has no spread to report.
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
            "macro_f1_mean": float(np.mean(f1)), "macro_f1_std": _std(f1),
            **{k: _mean([r[k] for r in members]) for k in ("params_trainable", "params_total", "train_seconds",
                                                           "reviews_per_s", "peak_memory_mb", "best_epoch")},
            "split_hashes": sorted({str(r["split_hash"]) for r in members}),
            "p_value": None, "mcnemar_b": None, "mcnemar_c": None, "test_note": "",
        })  # fmt: skip
    rows.sort(key=lambda r: (-r["accuracy_mean"], -r["macro_f1_mean"], r["name"]))
    return rows, groups


def _correctness(run: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """(example indices, correct?) from a run's predictions.jsonl, or None when it has none."""
    preds = _read_jsonl(Path(run["run_dir"]) / "predictions.jsonl")
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


def _points(x: float) -> str:
    return f"{100 * x:.1f}"


def summary_paragraph(rows: list[dict]) -> str:
    """One paragraph from the numbers: best row, its margin to the baseline, significance, speed."""
    if not rows:
        return "No finished runs were found."
    best, base = rows[0], next((r for r in rows if r["baseline"]), None)
    parts = [
        f"The best row is {best['name']} with test accuracy {_points(best['accuracy_mean'])}% "
        f"± {_points(best['accuracy_std'])} (macro-F1 {_points(best['macro_f1_mean'])}%, n={best['n']})."
    ]
    if base is None:
        parts.append("There is no TF-IDF baseline row to compare against.")
    elif base is best:
        runner = next((r for r in rows if not r["baseline"]), None)
        if runner:
            gap = _points(base["accuracy_mean"] - runner["accuracy_mean"])
            parts.append(
                f"No neural row beats the TF-IDF + logistic-regression baseline; the closest, "
                f"{runner['name']}, falls {gap} points short of it."
            )
    else:
        gap = _points(best["accuracy_mean"] - base["accuracy_mean"])
        parts.append(
            f"That is {gap} points above the TF-IDF + logistic-regression baseline ({_points(base['accuracy_mean'])}%)."
        )
    parts += _significance_sentences(rows)
    timed = [r for r in rows if r["reviews_per_s"]]
    if timed:
        fast = max(timed, key=lambda r: r["reviews_per_s"])
        parts.append(f"The fastest row at test time is {fast['name']} ({fast['reviews_per_s']:,.0f} reviews/s).")
    return " ".join(parts)


def _significance_sentences(rows: list[dict]) -> list[str]:
    tested = [r for r in rows[1:] if r["p_value"] is not None]
    # b > c: the best row's run was right where the other was wrong more often than the reverse.
    worse = [
        f"{r['name']} (p={r['p_value']:.3g})"
        for r in tested
        if r["p_value"] < ALPHA and r["mcnemar_b"] > r["mcnemar_c"]
    ]
    # Possible because rows are ranked by mean over seeds while the test pairs single runs.
    reversed_ = [r["name"] for r in tested if r["p_value"] < ALPHA and r["mcnemar_b"] <= r["mcnemar_c"]]
    same = [r["name"] for r in tested if r["p_value"] >= ALPHA]
    untested = [r["name"] for r in rows[1:] if r["p_value"] is None]
    sentences = []
    if worse:
        sentences.append(f"Significantly worse than the best (McNemar, p < {ALPHA}): {', '.join(worse)}.")
    if same:
        sentences.append(f"Not significantly different from the best: {', '.join(same)}.")
    if reversed_:
        sentences.append(
            f"Lower on mean but significantly better on the paired lowest-seed runs: {', '.join(reversed_)}."
        )
    if untested:
        sentences.append(f"Not tested: {', '.join(untested)}.")
    return sentences


def _fmt(value, spec: str = ".4f") -> str:
    return "–" if value is None else format(value, spec)


def _fmt_count(value) -> str:
    if value is None:
        return "–"
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k" if value >= 1e3 else f"{value:.0f}"


TABLE_HEADER = (
    "#", "model", "n", "accuracy", "macro-F1", "p vs best", "params trainable / total", "train s", "reviews/s",
    "peak MB", "best epoch",
)  # fmt: skip


def _table_cells(i: int, r: dict) -> list[str]:
    name = f"**{r['name']}** (baseline)" if r["baseline"] else r["name"]
    p = "(best)" if i == 1 else _fmt(r["p_value"], ".3g") if r["p_value"] is not None else f"– ({r['test_note']})"
    return [
        str(i), name, str(r["n"]),
        f"{r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f}", f"{r['macro_f1_mean']:.4f} ± {r['macro_f1_std']:.4f}",
        p, f"{_fmt_count(r['params_trainable'])} / {_fmt_count(r['params_total'])}", _fmt(r["train_seconds"], ".1f"),
        _fmt(r["reviews_per_s"], ",.0f"), _fmt(r["peak_memory_mb"], ",.0f"), _fmt(r["best_epoch"], ".1f"),
    ]  # fmt: skip


def markdown_table(rows: list[dict]) -> str:
    lines = [TABLE_HEADER, ["---"] * len(TABLE_HEADER)] + [_table_cells(i, r) for i, r in enumerate(rows, 1)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees a half-written report


def _markdown(report: dict) -> str:
    loud = [f"> **WARNING:** {w}" for w in report["warnings"]]
    notes = [PAIRING_NOTE, "± is the sample std over seeds (ddof=1); 0 when n=1. Other columns are means over seeds."]
    notes += [f"Skipped {s}" for s in report["skipped"]]
    body = ["# Results", *loud, "", report["summary"], "", markdown_table(report["rows"]), "", "## Notes", ""]
    return "\n".join(body + [f"- {n}" for n in notes]) + "\n"


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
    _write_atomic(out_dir / "results.csv", table.to_csv(index=False))
    _write_atomic(out_dir / "results.json", json.dumps(report, indent=2) + "\n")
    _write_atomic(out_dir / "results.md", _markdown(report))
    charts = [plot_accuracy(rows, out_dir / "accuracy.png")]
    charts += plot_val_curves(rows, groups, out_dir)
    charts.append(plot_confusions(rows, groups, out_dir / "confusion.png"))
    report["files"] = [str(p) for p in [out_dir / f"results.{ext}" for ext in ("csv", "json", "md")] + charts if p]
    return report
