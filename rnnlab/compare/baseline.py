"""TF-IDF + logistic regression: the baseline every RNN head has to beat (scikit-learn, no torch).

It writes the same `results.json` and `predictions.jsonl` as a trained run, so the report treats it as one more row.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix

from rnnlab import runs
from rnnlab.metrics import scores
from rnnlab.peak_memory import peak_mb, reset_peak
from rnnlab.runs import atomic_write_json

# A fixed C, not one tuned on test. Word+bigram TF-IDF with sublinear tf is well-regularised around C = 4-10 on
# review sentiment; a larger C lets the many rare bigrams overfit small training sets.
DEFAULT_C = 6.0
MAX_FEATURES = 200_000
_HTML_BREAK = re.compile(r"<br\s*/?>", flags=re.IGNORECASE)


def _preprocess(text: str) -> str:
    # IMDB reviews carry literal "<br />" line breaks; left in, "br" becomes one of the most frequent tokens.
    # A custom preprocessor replaces sklearn's own lowercasing, so lowercase here too.
    return _HTML_BREAK.sub(" ", text).lower()


SPACE_SHARE = 0.05
"""Below this share of spaces among characters, texts are unsegmented (Chinese, Japanese): word n-grams would
see whole sentences as single words, so the baseline uses character n-grams."""


def unsegmented(texts: Sequence[str]) -> bool:
    """Whether `texts` are written without spaces between words (English has about one space in six characters)."""
    chars = sum(len(t) for t in texts)
    return chars > 0 and sum(t.count(" ") for t in texts) / chars < SPACE_SHARE


def build_baseline(seed: int = 0, C: float = DEFAULT_C, *, chars: bool = False) -> tuple[TfidfVectorizer, LogisticRegression]:
    """The vectorizer and classifier, unfitted; `chars` switches to character 1–3-grams for unsegmented text."""
    ngrams = {"analyzer": "char", "ngram_range": (1, 3)} if chars else {"ngram_range": (1, 2)}
    vectorizer = TfidfVectorizer(preprocessor=_preprocess, sublinear_tf=True, min_df=2, max_features=MAX_FEATURES, **ngrams)
    # lbfgs fits the multinomial model directly for any number of classes and is fast on sparse TF-IDF input.
    classifier = LogisticRegression(C=C, solver="lbfgs", max_iter=1000, random_state=seed)
    return vectorizer, classifier


def run_baseline(
    texts_train: Sequence[str],
    labels_train: Sequence[int],
    texts_test: Sequence[str],
    labels_test: Sequence[int],
    label_names: Sequence[str],
    out_dir: Path,
    seed: int = 0,
    *,
    C: float = DEFAULT_C,
    split_hash: str | None = None,
    test_indices: Sequence[int] | None = None,
) -> dict:
    """Fit on train, score on test, write `results.json` + `predictions.jsonl` into `out_dir`; return the results.

    Labels are class ids 0..C-1 indexing `label_names`. `split_hash` (from the run's split.json) lets the report pair
    these predictions with the RNN runs for McNemar's test; `test_indices` are the example ids written to
    predictions.jsonl (default 0..n-1, i.e. split order).
    """
    reset_peak()
    y_train, y_test = np.asarray(labels_train), np.asarray(labels_test)
    vectorizer, classifier = build_baseline(seed=seed, C=C, chars=unsegmented(texts_train))
    start = time.perf_counter()
    classifier.fit(vectorizer.fit_transform(texts_train), y_train)
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    probs = classifier.predict_proba(vectorizer.transform(texts_test))  # [N, C], columns follow classifier.classes_
    predict_seconds = time.perf_counter() - start
    preds = classifier.classes_[probs.argmax(axis=1)]

    results = _results(y_test, preds, label_names, classifier, seed, split_hash, train_seconds, predict_seconds)
    indices = range(len(y_test)) if test_indices is None else test_indices
    probs = _full_probs(probs, classifier.classes_, len(label_names))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs.write_predictions(out_dir, indices, y_test, probs, list(label_names))
    # results.json last: its presence is what marks the folder finished for the report.
    atomic_write_json(out_dir / runs.RESULTS, results)
    return results


def _full_probs(probs: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
    # A class missing from train gets no column from sklearn; predictions.jsonl always has one prob per label name.
    full = np.zeros((probs.shape[0], num_classes))
    full[:, classes] = probs
    return full


def _results(y_test, preds, label_names, classifier, seed, split_hash, train_seconds, predict_seconds) -> dict:
    num_classes = len(label_names)
    params = int(classifier.coef_.size + classifier.intercept_.size)  # coefficients are the baseline's parameters
    confusion = confusion_matrix(y_test, preds, labels=range(num_classes))
    score = scores(confusion)  # the same accuracy and macro-F1 code as every neural run
    return {
        "finished": True,
        "test_accuracy": score["accuracy"],
        "test_macro_f1": score["macro_f1"],
        "confusion_matrix": confusion.tolist(),
        "label_names": list(label_names),
        "best_epoch": None,  # no epochs: one convex fit
        "train_seconds": round(train_seconds, 3),
        "reviews_per_s": round(len(y_test) / max(predict_seconds, 1e-9), 1),
        "peak_memory_mb": round(peak_mb(), 1),
        "params_trainable": params,
        "params_total": params,
        "encoder": "tfidf",
        "head": "logreg",
        "finetune": False,
        "seed": seed,
        "split_hash": split_hash,
    }
