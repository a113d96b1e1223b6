"""Right-padded id batches and length-ordered inference in numpy alone: what the torch and ONNX engines share."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def pad_ids(token_ids: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to the longest sequence: ids [B, T] int64 and each row's length [B] int64."""
    assert token_ids, "pad_ids needs at least one sequence"
    lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
    ids = np.full((len(token_ids), max(int(lengths.max()), 1)), pad_id, dtype=np.int64)  # [B, T]
    for row, seq in enumerate(token_ids):
        ids[row, : len(seq)] = seq
    return ids, lengths


def by_length(lengths: np.ndarray, batch_size: int, probs_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Class probabilities [N, C] in the original order, computed by `probs_of(positions)` on batches of similar
    length (little padding): the one inference loop of the torch and ONNX engines."""
    order = np.argsort(lengths, kind="stable")
    out: np.ndarray | None = None
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        probs = probs_of(chunk)
        if out is None:
            out = np.zeros((len(order), probs.shape[1]), dtype=np.float32)
        out[chunk] = probs
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)
