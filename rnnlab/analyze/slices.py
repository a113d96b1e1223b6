"""Where a model fails: accuracy and calibration by review length and by label, with 95 % Wilson intervals."""

from __future__ import annotations

import numpy as np

from rnnlab.calibration import calibration_errors
from rnnlab.metrics import wilson

LENGTH_BUCKETS = [(1, 128), (129, 256), (257, 512), (513, None)]
"""Token counts before truncation; 256 is the default --max-length."""


def slices(probs: np.ndarray, labels: np.ndarray, n_tokens: np.ndarray, *, max_length: int, label_names: list[str]) -> dict:
    """Rows of {slice, examples, accuracy, low, high, ece, truncated_share} by length bucket and by gold label."""
    by_length = []
    for low, high in LENGTH_BUCKETS:
        rows = (n_tokens >= low) & (n_tokens <= (high if high is not None else np.inf))
        name = f"{low}–{high} tokens" if high is not None else f"> {low - 1} tokens"
        by_length.append(_row(name, probs[rows], labels[rows], n_tokens[rows], max_length))
    by_label = [
        _row(name, probs[labels == j], labels[labels == j], n_tokens[labels == j], max_length)
        for j, name in enumerate(label_names)
    ]
    return {"by_length": by_length, "by_label": by_label}


def _row(name: str, probs: np.ndarray, labels: np.ndarray, n_tokens: np.ndarray, max_length: int) -> dict:
    n = len(labels)
    correct = int((probs.argmax(1) == labels).sum()) if n else 0
    low, high = wilson(correct, n)
    return {
        "slice": name,
        "examples": n,
        "accuracy": correct / n if n else None,
        "low": low,
        "high": high,
        "ece": calibration_errors(probs, labels)["ece"] if n else None,
        "truncated_share": float((n_tokens > max_length).mean()) if n else None,
    }
