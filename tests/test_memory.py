"""A run's peak memory is its own, not the largest of every run before it in the same process."""

from __future__ import annotations

import sys

import pytest

from rnnlab.peak_memory import peak_mb, reset_peak


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the resettable high-water mark is Linux's")
def test_reset_peak_forgets_an_earlier_larger_peak():
    big = bytearray(400 * 2**20)
    big[::4096] = b"\1" * len(big[::4096])  # touch every page so it is resident
    earlier = peak_mb()
    del big
    reset_peak()
    assert peak_mb() < earlier - 300
