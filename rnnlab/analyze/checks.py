"""What every run of a grid gets measured on besides accuracy: calibrated ECE and behavioural failure rates.

`run_checks(RUN)` fits the temperature on the run's validation split (stored as calibration.json, as `rnnlab
analyze` does), scores the test predictions the run wrote, runs a smaller behavioural suite, and writes
RUN/checks.json, which `rnnlab report` reads for its ECE and behaviour columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rnnlab import runs
from rnnlab.analyze.behaviour import NEGATION_TESTS, build_suite, run_suite
from rnnlab.calibration import calibration_errors, fit_temperature, nll, scale
from rnnlab.data.readers import PACKAGED
from rnnlab.runs import atomic_write_json
from rnnlab.serve.evaluate import LabelledTexts, run_split
from rnnlab.serve.predict import Predictor

GRID_CASES_PER_TEST = 20
"""Behavioural cases per test in a grid cell (the full analysis uses 60)."""


def run_checks(run: Path, *, device: str = "auto", seed: int = 0) -> dict:
    predictor = Predictor.load(run, device=device, calibrated=False)
    temperature = fit_and_store_temperature(run, predictor, run_split(run, "val"))
    probs, labels = _test_predictions(run, predictor.label_names)
    checks = {"temperature": temperature, "ece_raw": calibration_errors(probs, labels)["ece"],
              "ece_scaled": calibration_errors(scale(probs, temperature), labels)["ece"]}  # fmt: skip
    sentiment = sentiment_labels(run, predictor.label_names)
    if sentiment is not None:
        test = run_split(run, "test")
        suite = build_suite(test.texts, seed=seed, per_test=GRID_CASES_PER_TEST, negative=sentiment[0], positive=sentiment[1])
        results = run_suite(suite, predictor.predict_proba, predictor.label_names)
        negation = [r for r in results if r["test"] in NEGATION_TESTS]
        checks |= {"behaviour_failure_rate": _rate(results), "negation_failure_rate": _rate(negation)}
    atomic_write_json(run / runs.CHECKS, checks)
    return checks


def fit_and_store_temperature(run: Path, predictor: Predictor, val: LabelledTexts) -> float:
    """Fit T on the validation split alone and store it as RUN/calibration.json."""
    raw_val = predictor.raw_probs_of_ids(predictor.encoder.tokenize(val.texts))
    temperature = fit_temperature(raw_val, val.labels)
    atomic_write_json(run / runs.CALIBRATION, {
        "temperature": temperature, "fitted_on": "validation split", "examples": len(val.labels),
        "val_nll_before": nll(raw_val, val.labels), "val_nll_after": nll(scale(raw_val, temperature), val.labels),
    })  # fmt: skip
    return temperature


def sentiment_labels(run: Path, names: list[str]) -> tuple[str, str] | None:
    """(negative, positive) as a binary sentiment run names them, or None for any other label set."""
    lowered = [n.lower() for n in names]
    for negative, positive in (("negative", "positive"), ("neg", "pos")):
        if sorted(lowered) == [negative, positive]:
            return names[lowered.index(negative)], names[lowered.index(positive)]
    if names == ["0", "1"] and runs.read_config(run).dataset.data.lower() in PACKAGED:
        return "0", "1"  # a run made before the packaged data carried names: 1 is positive
    return None


def _test_predictions(run: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The raw test probabilities the run wrote at the end of training, and their labels."""
    rows = [json.loads(line) for line in (run / runs.PREDICTIONS).read_text().splitlines() if line.strip()]
    index = {name: i for i, name in enumerate(names)}
    return np.array([r["probs"] for r in rows]), np.array([index[r["label"]] for r in rows])


def _rate(results: list[dict]) -> float:
    return sum(r["failures"] for r in results) / max(sum(r["cases"] for r in results), 1)
