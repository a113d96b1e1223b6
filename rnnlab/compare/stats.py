"""Paired significance tests for two classifiers scored on the same test examples (numpy + scipy, no torch).

Both tests take one boolean per test example ("was this prediction correct?"), in the same example order for the two
systems. Pairing matters: two models that err on the same hard reviews are far more alike than their accuracies alone
suggest, and an unpaired test would throw that information away.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

# Below this many discordant pairs the chi-square approximation is poor, so the exact binomial test is used instead.
EXACT_BELOW = 25


def _as_paired_bools(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(correct_a, dtype=bool).ravel()
    b = np.asarray(correct_b, dtype=bool).ravel()
    assert a.shape == b.shape, f"paired tests need equal lengths, got {a.shape} and {b.shape}"
    return a, b


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's test on paired correctness.

    b = examples A gets right and B gets wrong, c = the reverse. Only these discordant pairs carry evidence.
    Uses the exact two-sided binomial test when b + c < 25, else chi-square with continuity correction.
    Returns {"b", "c", "statistic", "p_value", "method"}; for the exact test the statistic is min(b, c).
    """
    a, b_ = _as_paired_bools(correct_a, correct_b)
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    n = b + c
    if n == 0:
        # No discordant pairs: the two systems made exactly the same mistakes, nothing to tell them apart.
        return {"b": b, "c": c, "statistic": 0.0, "p_value": 1.0, "method": "exact"}
    if n < EXACT_BELOW:
        p = sps.binomtest(min(b, c), n, 0.5, alternative="two-sided").pvalue
        return {"b": b, "c": c, "statistic": float(min(b, c)), "p_value": float(min(1.0, p)), "method": "exact"}
    statistic = (abs(b - c) - 1) ** 2 / n
    p = sps.chi2.sf(statistic, df=1)
    return {"b": b, "c": c, "statistic": float(statistic), "p_value": float(p), "method": "chi2-cc"}


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, n: int = 2000, seed: int = 0) -> dict:
    """Paired bootstrap of the accuracy difference acc(A) - acc(B) over test examples.

    Returns {"diff", "ci_low", "ci_high", "p_value"}: the observed difference, a 95% percentile interval, and a
    two-sided p-value = 2 * the share of resamples on the far side of zero (capped at 1).
    """
    a, b = _as_paired_bools(correct_a, correct_b)
    size = a.size
    assert size > 0, "paired_bootstrap needs at least one example"
    d = a.astype(np.int8) - b.astype(np.int8)  # per example: +1 only A right, -1 only B right, 0 otherwise
    counts = np.array([np.sum(d == 1), np.sum(d == -1), np.sum(d == 0)])
    # Resampling `size` examples with replacement only matters through how many +1/-1/0 were drawn, so drawing
    # those counts from a multinomial gives the same distribution as index resampling in O(n) memory, not O(n*size).
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(size, counts / size, size=n)
    diffs = (draws[:, 0] - draws[:, 1]) / size
    p = 2.0 * min(np.mean(diffs <= 0), np.mean(diffs >= 0))
    return {
        "diff": float(d.mean()),
        "ci_low": float(np.percentile(diffs, 2.5)),
        "ci_high": float(np.percentile(diffs, 97.5)),
        "p_value": float(min(1.0, p)),
    }
