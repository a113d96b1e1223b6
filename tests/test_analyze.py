"""`rnnlab analyze`: calibration numerics, validation-only temperature, label issues, behaviour, attributions."""

from __future__ import annotations

import csv
import json
import random
import re

import numpy as np
import pytest
from conftest import rnnlab, write_data, write_reviews

from rnnlab.analyze.behaviour import build_suite, run_suite
from rnnlab.analyze.label_issues import label_issues
from rnnlab.analyze.run import analyze_run
from rnnlab.calibration import calibration_errors, fit_temperature, reliability, scale
from rnnlab.config import AnalyzeConfig


def test_ece_and_mce_on_a_hand_computed_case():
    # Top-label confidences 0.95, 0.95, 0.95, 0.65, 0.55; the first two and the fourth are right.
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.05, 0.95], [0.35, 0.65], [0.45, 0.55]])
    labels = np.array([0, 0, 0, 1, 0])
    # Bins of width 1/15: {0.95 ×3: accuracy 2/3}, {0.65: 1}, {0.55: 0}
    ece = 3 / 5 * abs(2 / 3 - 0.95) + 1 / 5 * abs(1 - 0.65) + 1 / 5 * abs(0 - 0.55)
    errors = calibration_errors(probs, labels)
    assert errors["ece"] == pytest.approx(ece) and errors["ece"] == pytest.approx(0.35)
    assert errors["mce"] == pytest.approx(0.55)
    assert [b["count"] for b in reliability(probs, labels)] == [1, 1, 3]
    assert sum(b["count"] for b in reliability(probs, labels, 2, equal_mass=True)) == 5


def test_scaling_never_changes_an_argmax_and_fits_an_overconfident_model():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 3)) * 4
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for t in (0.1, 0.5, 1.0, 2.0, 10.0):
        scaled = scale(probs, t)
        assert (scaled.argmax(1) == probs.argmax(1)).all() and np.allclose(scaled.sum(1), 1)
    # Labels drawn from softmax(logits / 4): the model is 4× over-confident, so the fitted T is near 4.
    true = np.exp(logits / 4) / np.exp(logits / 4).sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in true])
    assert fit_temperature(probs, labels) == pytest.approx(4, rel=0.35)


def test_confident_learning_finds_flipped_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=400)
    probs = np.where(labels[:, None] == np.arange(2), 0.85, 0.15) + rng.normal(0, 0.08, size=(400, 2))
    probs = np.clip(probs, 0.01, None)
    probs /= probs.sum(1, keepdims=True)
    flipped = rng.choice(400, size=20, replace=False)
    given = labels.copy()
    given[flipped] = 1 - given[flipped]
    found = [issue["row"] for issue in label_issues(probs, given)[:40]]
    assert len(set(found) & set(flipped.tolist())) / 20 >= 0.9
    assert all(issue["suggested"] != issue["given"] for issue in label_issues(probs, given))


def test_behavioural_suite_is_deterministic_for_a_seed():
    originals = [f"Review number {i}. The plot was fine and the acting was good." for i in range(100)]
    first, again, other = build_suite(originals, seed=3), build_suite(originals, seed=3), build_suite(originals, seed=4)
    assert [t.cases for t in first] == [t.cases for t in again]
    assert [t.cases for t in first] != [t.cases for t in other]
    kinds = {t.kind for t in first}
    assert kinds == {"MFT", "INV", "DIR"} and all(len(t.cases) >= 50 for t in first)


def test_behavioural_suite_scores_a_word_counting_model():
    from rnnlab.analyze.behaviour import POSITIVE_ADJ

    def probs(texts):  # a bag of words: no negation, no typo robustness
        p = np.array([0.9 if any(w.strip(".,!") in POSITIVE_ADJ for w in t.lower().split()) else 0.1 for t in texts])
        return np.stack([1 - p, p], axis=1)

    results = {r["test"]: r for r in run_suite(build_suite(["A film."] * 60, seed=0), probs, ["negative", "positive"])}
    assert results["clear positive"]["failure_rate"] == 0 and results["clear negative"]["failure_rate"] == 0
    assert results["negated positive → negative"]["failure_rate"] == 1  # it reads "not great" as great
    assert len(results["negated positive → negative"]["examples"]) == 3


@pytest.fixture(scope="module")
def analysed(accurate_run, tmp_path_factory):
    """The accurate tiny run analysed on a held-out file whose labels were flipped in 5 % of rows."""
    folder = tmp_path_factory.mktemp("analysis")
    rows = write_reviews(200, seed=7)
    flipped = sorted(random.Random(1).sample(range(200), 10))
    held_out = folder / "held_out.csv"
    with held_out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        for i, (text, label) in enumerate(rows):
            writer.writerow(
                [text, ("bad" if label == "pos" else "good") if i in flipped else ("good" if label == "pos" else "bad")]
            )
    options = AnalyzeConfig(data=str(held_out), text_column="review", label_column="sentiment", label_map="bad=neg,good=pos")
    return analyze_run(accurate_run, options), flipped, held_out


def test_flipped_labels_are_recovered_from_a_held_out_file(analysed, accurate_run):
    report, flipped, _ = analysed
    with (accurate_run / "analysis-held_out" / "label_issues.csv").open() as f:
        candidates = [int(row["row"]) for row in csv.DictReader(f)]
    recall = len(set(candidates[: 2 * len(flipped)]) & set(flipped)) / len(flipped)
    assert recall >= 0.6, (recall, candidates[:20], flipped)
    assert report["label_issues"]["candidates"] == len(candidates)


def test_the_report_is_written_with_stable_keys(analysed, accurate_run):
    report, _, _ = analysed
    out = accurate_run / "analysis-held_out"
    for name in ("report.md", "report.json", "report.html", "reliability.png", "confidence.png", "length.png", "mistakes.csv"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "report.json").read_text())
    assert set(saved) == {"run", "data", "examples", "label_names", "headline", "calibration", "slices", "mistakes",
                          "label_issues", "behaviour", "attribution", "seconds"}  # fmt: skip
    assert saved["examples"] == 200 and saved["label_names"] == ["neg", "pos"]
    assert [s["slice"] for s in saved["slices"]["by_length"]][0] == "1–128 tokens"
    assert "skipped" in saved["behaviour"] or saved["behaviour"]["cases"] > 0
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and not re.search(r"(src|href)=[\"']?https?:", html)  # loads nothing


def test_attributions_pass_the_deletion_check(analysed):
    attribution = analysed[0]["attribution"]
    assert attribution["texts"] == 100 and attribution["passes"], attribution


def test_the_temperature_is_fitted_on_validation_only(analysed, accurate_run, tmp_path):
    report, _, held_out = analysed
    temperature = json.loads((accurate_run / "calibration.json").read_text())["temperature"]
    # Every label of the analysed file flipped: the analysis changes, the temperature does not.
    rows = list(csv.reader(held_out.open()))
    flipped = tmp_path / "all_flipped.csv"
    with flipped.open("w", newline="") as f:
        csv.writer(f).writerows([rows[0], *([t, "bad" if y == "good" else "good"] for t, y in rows[1:])])
    other = analyze_run(accurate_run, AnalyzeConfig(data=str(flipped), text_column="review", label_column="sentiment",
                                                     label_map="bad=neg,good=pos"))  # fmt: skip
    assert other["calibration"]["temperature"] == report["calibration"]["temperature"] == temperature
    assert other["headline"]["accuracy"] == pytest.approx(1 - report["headline"]["accuracy"])


def test_predict_applies_the_stored_temperature_unless_uncalibrated(analysed, accurate_run):
    text = "the movie was good and lovely"
    calibrated = json.loads(rnnlab(["predict", str(accurate_run), text, "--jsonl"]).stdout)
    raw = json.loads(rnnlab(["predict", str(accurate_run), text, "--jsonl", "--uncalibrated"]).stdout)
    temperature = json.loads((accurate_run / "calibration.json").read_text())["temperature"]
    assert calibrated["label"] == raw["label"]
    expected = scale(np.array([list(raw["probs"].values())]), temperature)[0]
    assert list(calibrated["probs"].values()) == pytest.approx(expected.tolist(), abs=2e-5)


def test_label_map_maps_and_refuses_in_one_line(analysed, accurate_run, tmp_path):
    _, _, held_out = analysed
    ok = rnnlab(["evaluate", str(accurate_run), "--data", str(held_out), "--text-column", "review",
                 "--label-column", "sentiment", "--label-map", "bad=neg,good=pos"])  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["examples"] == 200
    for label_map, words in [("bad=neg", "nor does --label-map map it"), ("bad=neg,good=great", "not a label of the run"),
                             ("bad:neg", "is not FILE_LABEL=RUN_LABEL"), (None, "map it with --label-map")]:  # fmt: skip
        args = ["evaluate", str(accurate_run), "--data", str(held_out), "--text-column", "review", "--label-column", "sentiment"]
        result = rnnlab(args + (["--label-map", label_map] if label_map else []))
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert words in result.stderr, result.stderr


def test_folds_find_flipped_labels_in_the_training_split(tmp_path):
    from rnnlab import runs
    from rnnlab.cli import main
    from rnnlab.serve.evaluate import run_split

    _, glove = write_data(tmp_path)
    rows = write_reviews(800, seed=5)
    flipped = set(random.Random(2).sample(range(800), 40))
    data = tmp_path / "noisy.csv"
    with data.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *((t, ("neg" if y == "pos" else "pos") if i in flipped else y)
                                                       for i, (t, y) in enumerate(rows))])  # fmt: skip
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--encoder", str(glove), "--head", "bilstm", "--hidden-size", "16",
            "--max-length", "16", "--epochs", "8", "--batch-size", "16", "--lr", "0.01", "--no-progress", "--no-bf16",
            "--patience", "8", "--run-dir", str(run)]  # fmt: skip
    assert main(args) == 0
    report = analyze_run(run, AnalyzeConfig(folds=2))
    assert report["label_issues"]["source"].startswith("the run's training split (2-fold")
    assert all(runs.is_finished(run / "analysis-folds" / f"fold{k}") for k in range(2))
    flipped_texts = {rows[i][0] for i in flipped}
    with (run / "analysis" / "label_issues.csv").open() as f:
        candidates = [row["text"] for row in csv.DictReader(f)]
    in_train = [t for t in run_split(run, "train").texts if t in flipped_texts]
    found = set(candidates[: 2 * len(in_train)]) & set(in_train)
    assert len(in_train) >= 8 and len(found) / len(in_train) >= 0.6, (len(found), len(in_train))



def test_a_template_file_drives_the_suite_for_any_label_set(accurate_run, tmp_path):
    from rnnlab.analyze.behaviour import load_templates

    lines = [
        {"test": "cue words", "kind": "MFT", "template": "the {x} was {cue}", "expected": "neg", "cases": 20,
         "fill": {"x": ["film", "plot"], "cue": ["awful", "dull"]}},
        {"test": "filler swap", "kind": "INV", "template": "the {x} was good", "vary": "x",
         "fill": {"x": ["film", "plot", "story"]}},
        {"test": "+ praise", "kind": "DIR", "suffix": "great superb lovely", "label": "pos", "direction": "up", "cases": 10},
    ]  # fmt: skip
    path = tmp_path / "suite.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    tests = load_templates(path, ["the movie was bad", "a dull story"], ["neg", "pos"], seed=0)
    assert [t.kind for t in tests] == ["MFT", "INV", "DIR"] and len(tests[0].cases) == 20 and len(tests[2].cases) == 2
    report = analyze_run(accurate_run, AnalyzeConfig(templates=str(path), out=str(tmp_path / "out")))
    assert [t["test"] for t in report["behaviour"]["tests"]] == ["cue words", "filler swap", "+ praise"]
    assert report["behaviour"]["tests"][0]["failure_rate"] <= 0.2  # the model learnt its cue words

    path.write_text(json.dumps(lines[0]) + "\n" + json.dumps({**lines[1], "vary": "nope"}) + "\n")
    result = rnnlab(["analyze", str(accurate_run), "--templates", str(path), "--out", str(tmp_path / "bad")])
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"{path}: line 2: INV needs vary" in result.stderr
