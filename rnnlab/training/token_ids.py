"""Token-id cache: every text is tokenized once per (tokenizer, max length, truncation, windows) and read back as ids.

A store is a folder beside the feature cache's, holding `ids.npy` (every kept token id of every row, one flat int32
array), `offsets.npy` (`[R + 1]` int64: row r owns ids offsets[r]:offsets[r+1]), `texts.npy` (`[N + 1]` int64: text i
owns rows texts[i]:texts[i+1]; one row a text, or one a window with --chunks) and `done.json`, written last, with the
sha256 of the other three. A folder without `done.json` is never read, and one whose files do not hash as recorded
(truncated, corrupted) is rebuilt. Folders are named after a hash of the encoder's `cache_key()` (model, tokenizer,
vocabulary, max length, truncation, windows) and of every text, so a changed tokenizer is a new store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rnnlab.encoders import Encoder
from rnnlab.training.features import DONE, _fsync, write_atomically

IDS, OFFSETS, TEXTS = "ids.npy", "offsets.npy", "texts.npy"
_FILES = (IDS, OFFSETS, TEXTS)
log = logging.getLogger(__name__)


def default_ids_dir() -> Path:
    """`$RNNLAB_CACHE/token-ids`, else `~/.cache/rnnlab/token-ids`."""
    root = os.environ.get("RNNLAB_CACHE")
    return Path(root).expanduser() / "token-ids" if root else Path.home() / ".cache" / "rnnlab" / "token-ids"


class IdRows(Sequence):
    """Read-only, memory-mapped rows of token ids: `rows[r]` is row r's ids (int32); `padded` builds a batch."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.offsets = np.load(self.folder / OFFSETS)
        self.text_rows = np.load(self.folder / TEXTS)
        self.ids = np.load(self.folder / IDS, mmap_mode="r")  # [N_tokens] int32
        self.lengths = np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, r: int) -> np.ndarray:  # type: ignore[override]
        return self.ids[self.offsets[r] : self.offsets[r + 1]]

    def padded(self, rows: Sequence[int], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows right-padded with `pad_id` in one gather: ids [B, T] int64 and lengths [B] int64."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        width = max(int(lengths.max(initial=0)), 1)
        positions = np.arange(width)
        real = positions[None, :] < lengths[:, None]  # [B, T]
        flat = np.where(real, self.offsets[rows][:, None] + positions[None, :], 0)  # [B, T] positions in `ids`
        return np.where(real, self.ids[flat], pad_id).astype(np.int64), lengths

    def by_text(self) -> list | IdRows:
        """What `encoder.tokenize` returns for the same texts: these rows, or each text's list of windows."""
        if len(self.text_rows) - 1 == len(self) and np.array_equal(self.text_rows, np.arange(len(self) + 1)):
            return self
        return [[self[r] for r in range(a, b)] for a, b in zip(self.text_rows[:-1], self.text_rows[1:])]

    def __getstate__(self) -> dict:
        return {"folder": self.folder}  # data-loader workers map the file themselves

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["folder"])


def ids_key(encoder: Encoder, texts: Sequence[str]) -> str:
    digest = hashlib.sha256(("token-ids-v1" + encoder.cache_key()).encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    return digest.hexdigest()


def cached_token_ids(
    encoder: Encoder, texts: Sequence[str], cache_dir: Path | None = None, *, rank: int = 0,
    barrier: Callable[[], None] | None = None,
) -> list | IdRows:  # fmt: skip
    """`encoder.tokenize(texts)`, from the store when one exists, else tokenized once and stored. With several
    processes, rank 0 tokenizes while the others wait in `barrier()` (every rank calls this exactly once)."""
    folder = Path(cache_dir or default_ids_dir()) / ids_key(encoder, texts)[:32]
    if rank == 0 and not _valid(folder):
        _build(folder, encoder, texts)
    if barrier is not None:
        barrier()
    return IdRows(folder).by_text()


def _valid(folder: Path) -> bool:
    """True for a finished store whose files hash as recorded; a damaged one is removed (and then rebuilt)."""
    done = folder / DONE
    if not done.is_file():
        return False
    try:
        recorded = json.loads(done.read_text(encoding="utf-8"))["sha256"]
        intact = all(_sha256(folder / name) == recorded[name] for name in _FILES)
    except (OSError, ValueError, KeyError, TypeError):
        intact = False
    if not intact:
        log.warning("token-id cache %s is damaged (its files do not hash as recorded); rebuilding it", folder)
        shutil.rmtree(folder, ignore_errors=True)
    return intact


def _build(folder: Path, encoder: Encoder, texts: Sequence[str]) -> None:
    token_ids = encoder.tokenize(list(texts))
    write_atomically(folder, lambda tmp: _write(tmp, token_ids, windows=encoder.chunks > 1))


def _write(tmp: Path, token_ids: list, *, windows: bool) -> None:
    rows = [ids for text in token_ids for ids in text] if windows else token_ids
    per_text = [len(text) for text in token_ids] if windows else [1] * len(token_ids)
    lengths = np.fromiter((len(ids) for ids in rows), dtype=np.int64, count=len(rows))
    flat = np.concatenate([np.asarray(ids, dtype=np.int32) for ids in rows]) if rows else np.zeros(0, np.int32)
    arrays = {IDS: flat, OFFSETS: np.concatenate([[0], np.cumsum(lengths)]), TEXTS: np.concatenate([[0], np.cumsum(per_text)])}
    for name, array in arrays.items():
        np.save(tmp / name, array)
        _fsync(tmp / name)
    hashes = {name: _sha256(tmp / name) for name in _FILES}
    meta = {"texts": len(token_ids), "rows": len(rows), "tokens": int(lengths.sum()), "sha256": hashes}
    (tmp / DONE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    _fsync(tmp / DONE)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()
