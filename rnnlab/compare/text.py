"""The words of the report: the summary paragraph and results.md, generated from the aggregated rows."""

from __future__ import annotations

ALPHA = 0.05  # significance level used by the summary's "significantly worse" wording
PAIRING_NOTE = (
    "p vs best: McNemar's test (exact binomial below 25 discordant pairs, else chi-square with continuity correction) "
    "between the lowest-seed run of the best row and the lowest-seed run of each other row, on the same test split. "
    "It compares two single runs, so read it next to the seed std."
)


def _points(x: float) -> str:
    return f"{100 * x:.1f}"


def summary_paragraph(rows: list[dict]) -> str:
    """One paragraph from the numbers: best row, its margin to the baseline, significance, speed."""
    if not rows:
        return "No finished runs were found."
    best, base = rows[0], next((r for r in rows if r["baseline"]), None)
    parts = [
        f"The best row is {best['name']} with test accuracy {_points(best['accuracy_mean'])}% "
        f"± {_points(best['accuracy_std'])} points (macro-F1 {_points(best['macro_f1_mean'])}%, n={best['n']} seeds)."
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
        parts.append(f"That is {gap} points above the TF-IDF + logistic-regression baseline ({_points(base['accuracy_mean'])}%).")
    parts += _significance_sentences(rows)
    timed = [r for r in rows if r["reviews_per_s"]]
    if timed:
        fast = max(timed, key=lambda r: r["reviews_per_s"])
        parts.append(f"The highest throughput is {fast['name']} ({fast['reviews_per_s']:,.0f} reviews/s).")
    trained = [r for r in rows if r["train_seconds"]]
    if trained:
        quick = min(trained, key=lambda r: r["train_seconds"])
        parts.append(f"The quickest to train is {quick['name']} ({quick['train_seconds']:,.1f} s).")
    return " ".join(parts)


def _significance_sentences(rows: list[dict]) -> list[str]:
    tested = [r for r in rows[1:] if r["p_value"] is not None]
    # b > c: the best row's run was right where the other was wrong more often than the reverse.
    worse = [f"{r['name']} (p={r['p_value']:.3g})" for r in tested if r["p_value"] < ALPHA and r["mcnemar_b"] > r["mcnemar_c"]]
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
        sentences.append(f"Lower on mean but significantly better on the paired lowest-seed runs: {', '.join(reversed_)}.")
    if untested:
        sentences.append(f"Not tested: {', '.join(untested)}.")
    return sentences


def _fmt(value, spec: str = ".4f") -> str:
    return "–" if value is None else format(value, spec)


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def _fmt_count(value) -> str:
    if value is None:
        return "–"
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k" if value >= 1e3 else f"{value:.0f}"


TABLE_HEADER = (
    "#", "model", "n", "accuracy", "macro-F1", "recall per class", "p vs best", "ECE (scaled)", "behaviour fails",
    "negation fails", "params trainable / total", "train s", "reviews/s", "peak MB", "best epoch",
)  # fmt: skip


def _table_cells(i: int, r: dict) -> list[str]:
    name = f"**{r['name']}** (baseline)" if r["baseline"] else r["name"]
    p = "(best)" if i == 1 else _fmt(r["p_value"], ".3g") if r["p_value"] is not None else f"– ({r['test_note']})"
    return [
        str(i), name, str(r["n"]),
        f"{r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f}", f"{r['macro_f1_mean']:.4f} ± {r['macro_f1_std']:.4f}",
        _recall_cell(r.get("recall")), p, _fmt(r.get("ece_scaled"), ".3f"), _percent(r.get("behaviour_failure_rate")),
        _percent(r.get("negation_failure_rate")),
        f"{_fmt_count(r['params_trainable'])} / {_fmt_count(r['params_total'])}", _fmt(r["train_seconds"], ".1f"),
        _fmt(r["reviews_per_s"], ",.0f"), _fmt(r["peak_memory_mb"], ",.0f"), _fmt(r["best_epoch"], ".1f"),
    ]  # fmt: skip


def _recall_cell(recall: dict[str, float] | None) -> str:
    return "–" if not recall else ", ".join(f"{name} {value:.2f}" for name, value in recall.items())


def markdown_table(rows: list[dict]) -> str:
    lines = [TABLE_HEADER, ["---"] * len(TABLE_HEADER)] + [_table_cells(i, r) for i, r in enumerate(rows, 1)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def render_markdown(report: dict) -> str:
    """results.md in reading order: loud warnings, summary, table, notes."""
    loud = [f"> **WARNING:** {w}" for w in report["warnings"]]
    notes = [PAIRING_NOTE, "± is the sample std over seeds (ddof=1); 0 when n=1. Other columns are means over seeds.",
             "ECE (scaled): top-label ECE on test after temperature scaling fitted on validation; behaviour and "
             "negation fails: share of failed cases of the behavioural suite and of its three negation tests "
             "(`rnnlab analyze` explains both)."]  # fmt: skip
    notes += [f"Skipped {s}" for s in report["skipped"]]
    body = ["# Results", *loud, "", report["summary"], "", markdown_table(report["rows"]), "", "## Notes", ""]
    return "\n".join(body + [f"- {n}" for n in notes]) + "\n"
