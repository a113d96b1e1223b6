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
