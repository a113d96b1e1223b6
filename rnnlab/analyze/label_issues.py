"""Which given labels look wrong? Confident learning (Northcutt et al. 2021) on out-of-sample probabilities.

Each class j gets a threshold t_j: the mean probability of j over the rows labelled j (how confident the model is
on its own class). A row labelled i counts as confidently belonging to j when p_j ≥ t_j; the rows whose confident
class is not their given one are the off-diagonal of the confident joint. As cleanlab's `filter_by="both"` does,
rows whose most probable class is not their given one join them (a noisy label pulls its class's threshold down,
so on its own the joint misses rows sitting just under a threshold). All are ranked by self-confidence p_i, lowest
first. The probabilities must come from a model that never trained on those rows: a held-out split, or folds.
"""

from __future__ import annotations

import numpy as np


def per_class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """t_j = mean p_j over rows labelled j; a class with no rows gets 1.0 (never confidently assigned)."""
    return np.array([probs[labels == j, j].mean() if (labels == j).any() else 1.0 for j in range(probs.shape[1])])


def label_issues(probs: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Candidate label errors, most suspicious first: row, given label, suggested label, self-confidence."""
    thresholds = per_class_thresholds(probs, labels)
    above = probs >= thresholds[None, :]  # [N, C]
    # Among the classes a row is confidently in, the most probable; a row confident in none falls back to its argmax.
    confident = np.where(above.any(axis=1), np.where(above, probs, -1.0).argmax(axis=1), probs.argmax(axis=1))
    rows = np.flatnonzero(confident != labels)
    order = rows[np.argsort(probs[rows, labels[rows]], kind="stable")]
    return [{"row": int(r), "given": int(labels[r]), "suggested": int(confident[r]),
             "self_confidence": float(probs[r, labels[r]])} for r in order]  # fmt: skip
