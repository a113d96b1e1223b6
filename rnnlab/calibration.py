"""Do the probabilities mean what they say? Top-label calibration error, reliability bins, temperature scaling.

Temperature scaling (Guo et al. 2017) divides the logits by one scalar T fitted on held-out data. Class
probabilities are a softmax of the logits, so `log p` equals the logits up to a per-row constant, which the
softmax ignores: scaling stored probabilities is exact. T never changes a row's argmax.
"""

from __future__ import annotations

import numpy as np

BINS = 15


def scale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T), row by row: [N, C] → [N, C]."""
    if temperature == 1.0:
        return probs
    logits = np.log(np.clip(probs, 1e-12, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels."""
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared distance between the probability vector and the one-hot label (summed over classes)."""
    onehot = np.eye(probs.shape[1])[labels]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the NLL of `labels` under `scale(probs, T)`."""
    from scipy.optimize import minimize_scalar  # here: serving applies `scale` and never needs scipy

    result = minimize_scalar(lambda log_t: nll(scale(probs, float(np.exp(log_t))), labels),
                             bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})  # fmt: skip
    return float(np.exp(result.x))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS, *, equal_mass: bool = False) -> list[dict]:
    """Top-label confidence bins: equal-width on [0, 1] (empty bins dropped), or `equal_mass` with ~N/bins rows each.
    Each bin: its bounds, count, mean confidence and accuracy."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    if equal_mass:
        groups = np.array_split(np.argsort(confidence, kind="stable"), min(bins, len(confidence)))
    else:
        edges = np.linspace(0.0, 1.0, bins + 1)
        # Right-closed bins, the first also closed on the left: a confidence of exactly 1.0 lands in the last.
        which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
        groups = [np.flatnonzero(which == b) for b in range(bins)]
    out = []
    for rows in groups:
        if len(rows):
            out.append({"low": float(confidence[rows].min()), "high": float(confidence[rows].max()), "count": int(len(rows)),
                        "confidence": float(confidence[rows].mean()), "accuracy": float(correct[rows].mean())})  # fmt: skip
    return out


def calibration_errors(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict[str, float]:
    """ECE (equal-width bins), equal-mass ECE and MCE (the worst equal-width bin)."""
    n = len(labels)
    width = reliability(probs, labels, bins)
    mass = reliability(probs, labels, bins, equal_mass=True)
    gap = lambda b: abs(b["accuracy"] - b["confidence"])  # noqa: E731
    return {"ece": sum(b["count"] / n * gap(b) for b in width), "ece_equal_mass": sum(b["count"] / n * gap(b) for b in mass),
            "mce": max(gap(b) for b in width)}  # fmt: skip
