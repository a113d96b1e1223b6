"""`rnnlab analyze RUN`: fit the temperature on validation, then take the run apart on its test split (or a file).

The temperature is fitted on the run's validation split only, never on the texts being analysed, and stored in
the run as calibration.json, which `predict`, `rnnlab.load` and `serve` then apply.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

from rnnlab import runs
from rnnlab.analyze.behaviour import build_suite, load_templates, run_suite
from rnnlab.analyze.checks import fit_and_store_temperature, sentiment_labels
from rnnlab.analyze.crossfit import FOLDS_DIR, crossfit
from rnnlab.analyze.faithfulness import deletion_check
from rnnlab.analyze.label_issues import label_issues
from rnnlab.analyze.mistakes import confident_errors, influential_span, most_confused
from rnnlab.analyze.report import headline_line, write_report
from rnnlab.analyze.slices import slices
from rnnlab.calibration import brier, calibration_errors, nll, reliability, scale
from rnnlab.config import AnalyzeConfig
from rnnlab.metrics import per_class, scores, wilson
from rnnlab.serve.evaluate import LabelledTexts, labelled_file, run_split
from rnnlab.serve.explain import gradient_x_input
from rnnlab.serve.predict import Predictor

TOP_MISTAKES, TOP_ISSUES, ATTRIBUTION_TEXTS = 20, 30, 100


def analyze_run(run: Path, options: AnalyzeConfig) -> dict:
    """Write RUN/analysis/ and RUN/calibration.json; returns the report."""
    start = time.perf_counter()
    runs.require_finished(run)
    predictor = Predictor.load(run, device=options.device, calibrated=False)
    val = run_split(run, "val")
    target = _target(run, options)
    temperature = fit_and_store_temperature(run, predictor, val)
    ids, counts = predictor.encoder.tokenize_counted(target.texts)
    raw = predictor.raw_probs_of_ids(ids)
    probs = scale(raw, temperature)
    predictor.temperature = temperature  # the behavioural tests see what a user of the run sees
    n_tokens = np.asarray(counts)
    names, y = predictor.label_names, target.labels
    report = {"run": run.name, "data": target.source, "examples": len(y), "label_names": names,
              "headline": _headline(probs, y, len(names)),
              "calibration": _calibration(raw, probs, y, temperature, len(val.labels)),
              "slices": slices(probs, y, n_tokens, max_length=predictor.encoder.max_length, label_names=names)}  # fmt: skip
    mistakes, mistake_rows = _mistakes(predictor, target, ids, probs=probs, n_tokens=n_tokens,
                                       confusion=report["headline"]["confusion"])  # fmt: skip
    issues, issue_rows = _issues(run, options, target, probs, names)
    report |= {"mistakes": mistakes, "label_issues": issues, "behaviour": _behaviour(run, predictor, target, options),
               "attribution": _faithfulness(predictor, ids, options.seed), "seconds": time.perf_counter() - start}  # fmt: skip
    default = runs.ANALYSIS if options.data is None else f"{runs.ANALYSIS}-{Path(options.data).stem}"
    out = Path(options.out) if options.out else run / default
    write_report(out, report, mistakes_rows=mistake_rows, issue_rows=issue_rows)
    print(headline_line(report))
    print(f"wrote {out / 'report.md'} (and report.json, report.html, PNGs, CSVs)")
    return report


def _target(run: Path, options: AnalyzeConfig) -> LabelledTexts:
    """What is analysed: the run's test split, or --data with its columns and label map."""
    if options.data is None:
        return run_split(run, "test")
    return labelled_file(run, options.data, text_column=options.text_column, label_column=options.label_column,
                         label_map=options.label_map)  # fmt: skip


def _issues(run: Path, options: AnalyzeConfig, target: LabelledTexts, probs, names) -> tuple[dict, list[dict]]:
    """Label issues in the run's training split (cross-fitted with --folds) or in the analysed texts."""
    if options.folds:
        train, train_probs = crossfit(run, options.folds, device=options.device, seed=options.seed)
        source = f"the run's training split ({options.folds}-fold cross-fitted, RUN/{FOLDS_DIR}/)"
        return _label_issues(train, train_probs, names, source)
    held_out = "the run's test split (never trained on)" if options.data is None else f"{target.source} (out of sample)"
    return _label_issues(target, probs, names, held_out)


def _headline(probs: np.ndarray, y: np.ndarray, c: int) -> dict:
    confusion = np.zeros((c, c), dtype=np.int64)
    np.add.at(confusion, (y, probs.argmax(1)), 1)
    low, high = wilson(int(np.trace(confusion)), len(y))
    return {
        **scores(confusion),
        "accuracy_low": low,
        "accuracy_high": high,
        **per_class(confusion),
        "support": confusion.sum(1).tolist(),
        "confusion": confusion.tolist(),
    }


def _calibration(raw: np.ndarray, probs: np.ndarray, y: np.ndarray, temperature: float, fit_examples: int) -> dict:
    summary = lambda p: {**calibration_errors(p, y), "nll": nll(p, y), "brier": brier(p, y)}  # noqa: E731
    return {
        "temperature": temperature,
        "fitted_on": "the run's validation split",
        "fit_examples": fit_examples,
        "before": summary(raw),
        "after": summary(probs),
        "reliability_before": reliability(raw, y),
        "reliability_after": reliability(probs, y),
        "confidence_before": raw.max(1).round(4).tolist(),
        "confidence_after": probs.max(1).round(4).tolist(),
    }


def _mistakes(predictor, target: LabelledTexts, ids, *, probs, n_tokens, confusion) -> tuple[dict, list[dict]]:
    names, y, limit = predictor.label_names, target.labels, predictor.encoder.max_length
    order = confident_errors(probs, y)
    rows = [
        {
            "row": int(i),
            "gold": names[y[i]],
            "predicted": names[int(probs[i].argmax())],
            "probability": float(probs[i].max()),
            "loss": float(-np.log(max(probs[i, y[i]], 1e-12))),
            "n_tokens": int(n_tokens[i]),
            "truncated": bool(n_tokens[i] > limit),
            "text": target.texts[i],
        }
        for i in order
    ]
    top = rows[:TOP_MISTAKES]
    windows = predictor.encoder.chunks > 1  # no token attributions (gradient_x_input says why)
    attributions = [] if windows else gradient_x_input(predictor.model, [ids[r["row"]] for r in top])
    special = predictor.encoder.special_tokens()
    for row in top:
        row["excerpt"] = _excerpt(row["text"])
    for row, attribution in zip(top, attributions):
        row["span"] = influential_span(attribution, special)
    shown = [{k: v for k, v in row.items() if k != "text"} for row in top]
    return {"errors": len(rows), "top": shown, "most_confused": most_confused(np.asarray(confusion), names)}, rows


def _label_issues(target: LabelledTexts, probs, names, source: str) -> tuple[dict, list[dict]]:
    found = label_issues(probs, target.labels)
    rows = [
        {
            "row": f["row"],
            "given": names[f["given"]],
            "suggested": names[f["suggested"]],
            "self_confidence": f["self_confidence"],
            "text": target.texts[f["row"]],
        }
        for f in found
    ]
    top = [{**{k: v for k, v in r.items() if k != "text"}, "excerpt": _excerpt(r["text"])} for r in rows[:TOP_ISSUES]]
    return {"source": source, "candidates": len(rows), "share": len(rows) / max(len(target.labels), 1), "top": top}, rows


def _behaviour(run: Path, predictor: Predictor, target: LabelledTexts, options: AnalyzeConfig) -> dict:
    names = predictor.label_names
    if options.templates:
        tests = load_templates(Path(options.templates), target.texts, names, seed=options.seed)
    elif (sentiment := sentiment_labels(run, names)) is not None:
        tests = build_suite(target.texts, seed=options.seed, negative=sentiment[0], positive=sentiment[1])
    else:
        return {"skipped": f"labels {', '.join(names)} are not binary sentiment (negative/positive); give --templates FILE"}
    results = run_suite(tests, predictor.predict_proba, names)
    cases = sum(t["cases"] for t in results)
    return {"seed": options.seed, "cases": cases, "failure_rate": sum(t["failures"] for t in results) / cases,
            "tests": results}  # fmt: skip


def _faithfulness(predictor: Predictor, ids: list[list[int]], seed: int) -> dict:
    if predictor.encoder.chunks > 1:
        return {"skipped": "token attributions read one window per text; this run reads texts in windows (--chunks)"}
    chosen = random.Random(seed).sample(range(len(ids)), min(ATTRIBUTION_TEXTS, len(ids)))
    return deletion_check(predictor, [ids[i] for i in chosen], seed=seed)


def _excerpt(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
