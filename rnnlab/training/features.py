"""Frozen-encoder feature cache: run a frozen encoder once per text, then train many heads on its output.

A store is a folder holding `vectors.npy` (all token vectors of all texts, one flat `[N_tokens, D]` float16
array), `offsets.npy` (`[N + 1]` int64; text i owns rows offsets[i]:offsets[i+1]) and `done.json`, written
last: a folder without it is never read. Folders are named after a hash of the encoder's cache_key() and
of every token id, so a changed model, tokenizer, truncation or text can never read stale features.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rnnlab.data.batching import length_mask
from rnnlab.encoders import Encoder
from rnnlab.errors import UserError

VECTORS, OFFSETS, DONE = "vectors.npy", "offsets.npy", "done.json"
_FP16_MAX = float(np.finfo(np.float16).max)


def default_cache_dir() -> Path:
    """`$RNNLAB_CACHE/features`, else `~/.cache/rnnlab/features`."""
    root = os.environ.get("RNNLAB_CACHE")
    return Path(root).expanduser() / "features" if root else Path.home() / ".cache" / "rnnlab" / "features"


class FeatureStore:
    """Read-only, memory-mapped token vectors; only the rows a batch asks for are read from disk."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.offsets = np.load(self.folder / OFFSETS)
        self.lengths = np.diff(self.offsets)
        self.vectors = np.load(self.folder / VECTORS, mmap_mode="r")  # [N_tokens, D] float16
        self.dim = int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.lengths)

    def get(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts `indices` padded right with zeros: x `[B, T, D]` float32, mask `[B, T]` bool."""
        lengths = self.lengths[np.asarray(indices, dtype=np.int64)]
        x = np.zeros((len(indices), int(lengths.max(initial=0)), self.dim), dtype=np.float32)
        for row, (i, n) in enumerate(zip(indices, lengths)):
            start = self.offsets[i]
            x[row, :n] = self.vectors[start : start + n]
        return torch.from_numpy(x), length_mask(lengths, x.shape[1])

    def __getstate__(self) -> dict:
        # Data-loader workers get the folder name and map the file themselves; pickling the
        # memory map would copy every vector into each worker.
        return {"folder": self.folder}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["folder"])


def features_key(encoder: Encoder, token_ids: list[list[int]]) -> str:
    digest = hashlib.sha256(encoder.cache_key().encode())
    lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
    digest.update(lengths.tobytes())
    for ids in token_ids:
        digest.update(np.asarray(ids, dtype=np.int64).tobytes())
    return digest.hexdigest()


def encode_cached(
    encoder: Encoder,
    token_ids: list[list[int]],
    cache_dir: Path,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] | None = None,
) -> FeatureStore:
    """Features of `token_ids` (one row per tokenized text, or per window of one), encoded once and reused.

    With several processes, rank 0 encodes while the others wait in `barrier()`; every rank calls it
    exactly once, cache hit or not, so no rank can wait for a barrier another one skipped.
    The encoder is moved to `device`.
    """
    assert encoder.cacheable or not encoder.trainable, "only a frozen trunk's features can be cached"
    assert len(token_ids) > 0, "at least one row to encode"
    if world_size > 1 and barrier is None:
        raise ValueError("encode_cached with world_size > 1 needs a barrier")
    folder = Path(cache_dir) / features_key(encoder, token_ids)[:32]
    if rank == 0 and not (folder / DONE).is_file():
        encoder.to(device)
        device = torch.device(device)
        write_atomically(folder, lambda tmp: _write_store(tmp, encoder, token_ids, batch_size, device, autocast_dtype, progress))
    if world_size > 1:
        barrier()
    return FeatureStore(folder)


def write_atomically(folder: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` fills a temporary sibling folder that is then renamed into place (atomic on one file system), so a
    cache folder is whole or absent: an unfinished one left by a crash (no `done.json`) is replaced, a failed or
    interrupted write leaves nothing behind, and a full disk is one line naming the folder (`_cache_error`)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    except OSError as e:
        raise _cache_error(folder.parent, e) from None
    try:
        write(tmp)
        _fsync(folder.parent)
        if folder.is_dir() and not (folder / DONE).is_file():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / DONE).is_file():  # not another process finishing the same store first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        _fsync(folder.parent)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _cache_error(folder.parent, e) from None
    except BaseException:  # interrupted: leave no half-written folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_store(tmp: Path, encoder, token_ids, batch_size: int, device, dtype, progress: bool) -> None:
    from tqdm.auto import tqdm

    lengths = np.array([len(ids) for ids in token_ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    np.save(tmp / OFFSETS, offsets)
    vectors = _create_array(tmp / VECTORS, (int(offsets[-1]), encoder.trunk_dim))
    # Longest texts first: batches of similar lengths pad little, and an out-of-memory shows at once.
    order = np.argsort(-lengths, kind="stable")
    with tqdm(total=len(order), unit="text", desc="encoding features", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            out = _encode_batch(encoder, [token_ids[i] for i in batch], device, dtype)  # [B, T, D]
            for row, i in enumerate(batch):
                vectors[offsets[i] : offsets[i + 1]] = out[row, : lengths[i]]
            bar.update(len(batch))
    vectors.flush()
    del vectors
    _fsync(tmp / VECTORS)
    meta = {"texts": len(lengths), "tokens": int(offsets[-1]), "dim": encoder.trunk_dim, "dtype": "float16"}
    (tmp / DONE).write_text(json.dumps({**meta, "encoder": encoder.spec()}, indent=2), encoding="utf-8")
    _fsync(tmp / DONE)


@torch.inference_mode()
def _encode_batch(encoder: Encoder, batch: list[list[int]], device: torch.device, dtype) -> np.ndarray:
    lengths = torch.tensor([len(seq) for seq in batch])
    ids = torch.full((len(batch), int(lengths.max())), encoder.pad_id, dtype=torch.long)  # [B, T]
    for row, seq in enumerate(batch):
        ids[row, : len(seq)] = torch.from_numpy(np.array(seq, dtype=np.int64))  # a copy: cached rows are read-only
    mask = torch.arange(ids.shape[1]) < lengths[:, None]  # [B, T]
    ids, mask = ids.to(device), mask.to(device)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        out = encoder.trunk(ids, mask)  # [B, T, trunk_dim]
    # Clamp so that a rare large activation becomes fp16's maximum rather than inf.
    return out.float().clamp_(-_FP16_MAX, _FP16_MAX).cpu().numpy().astype(np.float16)


def _create_array(path: Path, shape: tuple[int, int]) -> np.memmap:
    """A float16 .npy file mapped for writing, its blocks reserved up front.

    np.lib.format.open_memmap makes a sparse file; a full disk would then kill the process with SIGBUS
    on some page write, instead of raising ENOSPC here, where it can be reported.
    """
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=shape)
    if hasattr(os, "posix_fallocate") and array.nbytes:
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, os.path.getsize(path))
    return array


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cache_error(directory: Path, error: OSError) -> UserError:
    reason = error.strerror or str(error)
    hint = "free space or pass --cache-dir" if error.errno == errno.ENOSPC else "pass another --cache-dir"
    return UserError(f"cannot write feature cache to {directory}: {reason} ({hint})")
