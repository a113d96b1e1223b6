"""Classification scores from a confusion matrix, in numpy: the one definition runs, evaluations and the baseline share."""

from __future__ import annotations

import numpy as np


def per_class(confusion: np.ndarray) -> dict[str, list[float]]:
    """Precision, recall and F1 of each class (rows: true, columns: predicted); 0 where undefined."""
    tp = np.diag(confusion).astype(float)
    precision = np.divide(tp, confusion.sum(0), out=np.zeros_like(tp), where=confusion.sum(0) > 0)
    recall = np.divide(tp, confusion.sum(1), out=np.zeros_like(tp), where=confusion.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    return {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist()}


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default): sound at small n and near 0 or 1."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def scores(confusion: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 from a confusion matrix (rows: true, columns: predicted)."""
    f1 = per_class(confusion)["f1"]
    return {"accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)), "macro_f1": float(np.mean(f1))}
