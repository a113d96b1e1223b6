import math

import numpy as np
import pytest

from rnnlab.compare.stats import mcnemar


def _pairs(b: int, c: int, both_right: int = 0, both_wrong: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correctness vectors with b 'only A right' and c 'only B right' examples."""
    a = [True] * b + [False] * c + [True] * both_right + [False] * both_wrong
    bb = [False] * b + [True] * c + [True] * both_right + [False] * both_wrong
    return np.array(a), np.array(bb)


def test_mcnemar_exact_one_sided_disagreement():
    result = mcnemar(*_pairs(10, 0, both_right=50))
    assert (result["b"], result["c"], result["method"]) == (10, 0, "exact")
    assert result["p_value"] == pytest.approx(2 * 0.5**10)


def test_mcnemar_is_symmetric():
    assert mcnemar(*_pairs(7, 2))["p_value"] == pytest.approx(mcnemar(*_pairs(2, 7))["p_value"])


def test_mcnemar_identical_systems():
    a = np.array([True, False, True, True])
    result = mcnemar(a, a.copy())
    assert (result["b"], result["c"], result["p_value"]) == (0, 0, 1.0)


def test_mcnemar_balanced_exact_is_one():
    assert mcnemar(*_pairs(5, 5))["p_value"] == 1.0


def test_mcnemar_chi_square_hand_computed():
    # b=30, c=10: (|30-10| - 1)^2 / 40 = 9.025; a chi2(1) tail equals erfc(sqrt(x / 2)).
    result = mcnemar(*_pairs(30, 10, both_right=100, both_wrong=5))
    assert result["method"] == "chi2-cc"
    assert result["statistic"] == pytest.approx(9.025)
    assert result["p_value"] == pytest.approx(math.erfc(math.sqrt(9.025 / 2)))


def test_mcnemar_switches_to_chi_square_at_25():
    assert mcnemar(*_pairs(20, 4))["method"] == "exact"
    assert mcnemar(*_pairs(20, 5))["method"] == "chi2-cc"
