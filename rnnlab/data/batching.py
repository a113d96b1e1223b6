"""Length-bucketed batches (little padding), padding collation and sharding across ranks.

Batches are plain lists of indices, fixed by (seed, epoch): a trainer resumes mid-epoch by skipping the first k
batches, and shards a batch across ranks with `shard(batch, rank, world_size)`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch

from rnnlab.padding import pad_ids

BUCKET_BATCHES = 50
"""Batches per bucket: shuffled indices are sorted by length within chunks of this many batches."""


class LengthBucketSampler:
    """Batches of indices with similar lengths.

    With `shuffle`, each epoch shuffles the indices, sorts each chunk of `50 * batch_size` by length, cuts it into
    batches and shuffles the batch order. Without, batches run over the indices sorted by length (for fast
    evaluation; callers restore the original order). Only the last batch can be short; a rank that a short batch
    leaves without items runs a zero-weight stand-in (training.loop).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, shuffle: bool, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed

    def __len__(self) -> int:
        """Batches per epoch (the same every epoch)."""
        return len(self._cut(np.arange(len(self.lengths))))

    def batches(self, epoch: int) -> list[list[int]]:
        if not self.shuffle:
            return self._cut(np.argsort(self.lengths, kind="stable"))
        rng = np.random.default_rng([self.seed, epoch])
        batches = self._cut(self._bucketed(rng.permutation(len(self.lengths))))
        return [batches[i] for i in rng.permutation(len(batches))]

    def _bucketed(self, order: np.ndarray) -> np.ndarray:
        """Sort each chunk of `order` by length; chunks hold whole batches, so only the last batch can be short."""
        chunk = BUCKET_BATCHES * self.batch_size
        parts = [order[i : i + chunk] for i in range(0, len(order), chunk)]
        return np.concatenate([part[np.argsort(self.lengths[part], kind="stable")] for part in parts]) if parts else order

    def _cut(self, order: np.ndarray) -> list[list[int]]:
        return [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]


def collate(token_ids: list[list[int]], pad_id: int, round_to: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence (its length rounded up to a multiple of `round_to`): ids [B, T] (int64)
    and mask [B, T] (bool, True = real token)."""
    ids, lengths = pad_ids(token_ids, pad_id)
    return widen(torch.from_numpy(ids), length_mask(lengths, ids.shape[1]), pad_id, round_to)


def widen(ids: torch.Tensor, mask: torch.Tensor, pad_id: int, round_to: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad [B, T] ids and mask on the right to a multiple of `round_to` steps. On a GPU, a batch width that
    changes with every length-sorted batch costs a new cuDNN RNN plan and attention kernel choice each time
    (3.5 ms per new width for one LSTM layer on an H200); a few widths are planned once and reused."""
    extra = -ids.shape[1] % round_to
    if not extra:
        return ids, mask
    return torch.nn.functional.pad(ids, (0, extra), value=pad_id), torch.nn.functional.pad(mask, (0, extra), value=False)


def length_mask(lengths: torch.Tensor | np.ndarray, width: int) -> torch.Tensor:
    """[B, T] bool, True on the first `lengths[b]` positions of row b: the mask of right-padded batches."""
    return torch.arange(width)[None, :] < torch.as_tensor(lengths)[:, None]


def shard(batch: list[int], rank: int, world_size: int) -> list[int]:
    """This rank's share of a batch: every `world_size`-th item starting at `rank`."""
    return batch[rank::world_size]


_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def ahead(items: Iterable, depth: int = 4) -> Iterator:
    """Yield `items` as a background thread produces them, up to `depth` ahead, so that collating and pinning the
    next batches overlaps the device's work on this one (numpy and torch copies release the GIL). An error in the
    producer is raised here; leaving the loop early stops the producer."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer, which raises it
            put(_Failed(e))

    threading.Thread(target=produce, daemon=True, name="rnnlab-batches").start()
    try:
        while (item := slots.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
