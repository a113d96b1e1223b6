"""The encoder contract shared by every kind: token ids → token vectors `[B, T, D]`."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnlab import runs
from rnnlab.errors import UserError

SPEC_FILE = runs.ENCODER


class Encoder(nn.Module):
    """Base of all encoders; subclasses set the attributes below in `__init__`."""

    dim: int
    """Width D of the token vectors."""
    pad_id: int
    """Id used to pad `[B, T]` batches."""
    trainable: bool
    """True when the weights train (fine-tuned or scratch): the single truth for fine-tuning, recorded in results.json."""
    pretrained: bool = False
    """True for a pretrained transformer: when it trains, it trains at --encoder-lr."""
    max_length: int
    """Tokens kept per text, special tokens included."""
    truncation: str
    """`head` or `head_tail` (see `rnnlab.subword.truncate`)."""
    chunks: int = 1
    """Windows per text (see `rnnlab.subword.windows`): with more than 1, `tokenize` gives each text a list of them."""

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """The token ids kept for each text, truncated to `max_length`."""
        return self.tokenize_counted(texts)[0]

    def tokenize_counted(self, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        """The ids kept, and each text's length in tokens before truncation (special tokens included), so that a
        caller can say how much of a text the model read."""
        raise NotImplementedError

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids `[B, T]` long, mask `[B, T]` bool → `[B, T, D]` float."""
        raise NotImplementedError

    @property
    def trunk_dim(self) -> int:
        """Width of a token's row in the feature cache (see `trunk`)."""
        return self.dim

    def trunk(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The frozen part's output, which the feature cache stores: `[B, T, trunk_dim]`; `from_trunk` finishes it,
        so that `forward(ids) == from_trunk(trunk(ids))`. The whole encoder unless a subclass splits it."""
        return self(ids, mask)

    def from_trunk(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cached trunk rows `[B, T, trunk_dim]` → token vectors `[B, T, D]`: what runs, and trains, every step."""
        return h

    def rebuilt_from_source(self, key: str) -> bool:
        """True for a state_dict key (relative to the encoder) that `load_encoder` re-reads from the encoder's
        source, so that a run folder does not store it: every key of a frozen encoder, none of a trained one."""
        return not self.trainable

    def token_strings(self, ids: list[int]) -> list[str]:
        """The tokens behind `ids`, for plots that label time steps."""
        raise NotImplementedError

    def special_tokens(self) -> tuple[int, int]:
        """How many special tokens open and close every tokenized text ([CLS] … [SEP] is (1, 1))."""
        return 0, 0

    def spec(self) -> dict[str, Any]:
        """JSON description from which `load_encoder` rebuilds this encoder."""
        raise NotImplementedError

    @property
    def cacheable(self) -> bool:
        """A frozen pretrained transformer's trunk runs once per text into the feature cache; word-vector lookups
        are cheaper than reading a cache, and a wholly trainable encoder must run every step."""
        return self.pretrained and not self.trainable

    def cache_key(self) -> str:
        """Changes whenever the features of the same token ids would change."""
        return json.dumps(self.spec(), sort_keys=True)

    def train(self, mode: bool = True) -> Encoder:
        # A frozen encoder stays in eval mode even inside model.train(), so its dropout never
        # perturbs features (and cached features equal the ones computed on the fly).
        return super().train(mode and self.trainable)

    def save(self, run_dir: Path) -> None:
        """Write what `load_encoder` needs beyond the model's state_dict."""
        Path(run_dir, SPEC_FILE).write_text(json.dumps(self.spec(), indent=2) + "\n", encoding="utf-8")


def fingerprint(paths: list[Path]) -> str:
    """sha256 over the content of the given files (weights, vocabularies, configs)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p).resolve() for p in paths):
        stat = path.stat()
        digest.update(path.name.encode() + b"\0" + _file_sha256(str(path), stat.st_size, stat.st_mtime_ns).encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime too, so a file replaced in place is hashed again, while repeated
    # cache_key() calls in one process hash a 400 MB weights file only once.
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def check_fingerprint(spec: dict[str, Any], current: str, what: str) -> None:
    """A frozen encoder's weights are not in the run folder: refuse to load different ones silently."""
    saved = spec.get("fingerprint")
    if saved and saved != current:
        raise UserError(f"{what} has changed since this run was trained (its files hash differently); restore it")


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ).lower() in ("1", "true", "yes", "on")
