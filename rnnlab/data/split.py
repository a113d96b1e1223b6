"""Deduplicate, map labels to class ids, and split into train/val/test.

The split depends only on the data and `DataConfig.split_seed`, so every run on the same data is compared on the
same test set whatever its training seed. Indices are stored sorted; the batch sampler does the shuffling.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnlab.config import DataConfig
from rnnlab.data.readers import Examples, read_examples
from rnnlab.errors import UserError

SPLITS = ("train", "val", "test")
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass
class Prepared:
    texts: list[str]
    labels: np.ndarray
    """int64 class ids, one per text: index into `label_names`."""
    label_names: list[str]
    split: dict[str, np.ndarray]
    """"train", "val", "test" -> sorted int64 indices into `texts`."""
    source: str = ""
    """The dataset (`DataConfig.data`) the texts came from."""
    ids: np.ndarray | None = None
    """Dataset ids of `texts` after `compact()`; None while texts are the whole deduplicated dataset."""

    def dataset_ids(self, indices: np.ndarray) -> np.ndarray:
        """Ids in the deduplicated dataset: what manifests and prediction files name, compacted or not."""
        return np.asarray(indices) if self.ids is None else self.ids[indices]

    def compact(self) -> Prepared:
        """Only the texts that some split uses, renumbered, so a --fraction run tokenizes and encodes no more."""
        used = np.unique(np.concatenate([self.split[name] for name in SPLITS]))
        position = np.full(len(self.texts), -1, dtype=np.int64)
        position[used] = np.arange(len(used))
        return Prepared([self.texts[i] for i in used], self.labels[used], self.label_names,
                        {name: position[self.split[name]] for name in SPLITS}, self.source, self.dataset_ids(used))  # fmt: skip

    def manifest(self) -> dict[str, Any]:
        """A JSON-serialisable record of the split, with a hash that changes if any text, label or index does."""
        return {
            "dataset": self.source,
            "label_names": list(self.label_names),
            "sizes": {name: len(self.split[name]) for name in SPLITS},
            "hash": split_hash(self),
            **{name: self.dataset_ids(self.split[name]).tolist() for name in SPLITS},
        }


def split_hash(prepared: Prepared) -> str:
    """sha256 over the label names and, split by split, each index with its label and text."""
    digest = hashlib.sha256(json.dumps(prepared.label_names).encode())
    for name in SPLITS:
        digest.update(f"\n{name}\n".encode())
        for i, dataset_id in zip(prepared.split[name].tolist(), prepared.dataset_ids(prepared.split[name]).tolist()):
            text = prepared.texts[i].encode()
            digest.update(f"{dataset_id}\t{prepared.label_names[prepared.labels[i]]}\t{len(text)}\t".encode())
            digest.update(text)
    return digest.hexdigest()


def prepare(cfg: DataConfig) -> Prepared:
    """Read `cfg.data` (and `cfg.test_file`), deduplicate, and split as the config says."""
    train = _deduplicate(read_examples(cfg.data, cfg.text_column, cfg.label_column))
    test = None
    if cfg.test_file:
        test = _deduplicate(read_examples(cfg.test_file, cfg.text_column, cfg.label_column))
        train = _drop_texts(train, {text.strip() for text in test.texts})
    label_names = _label_names(train, test)
    texts = train.texts + (test.texts if test else [])
    ids = {name: i for i, name in enumerate(label_names)}
    labels = np.array([ids[label] for label in train.labels + (test.labels if test else [])], dtype=np.int64)
    if test is None:
        rest, held_out = _stratified_split(np.arange(len(texts)), labels, label_names, cfg.test_size, "--test-size", cfg)
    else:
        rest, held_out = np.arange(len(train)), np.arange(len(train), len(texts))
    fit, val = _stratified_split(rest, labels, label_names, cfg.val_size, "--val-size", cfg)
    split = {"train": fit, "val": val, "test": held_out}
    if cfg.fraction < 1:
        split = {name: _subset(idx, labels, cfg.fraction, cfg.split_seed, salt) for salt, (name, idx) in enumerate(split.items())}
    return Prepared(texts, labels, label_names, {name: np.sort(split[name]) for name in SPLITS}, train.source)


def _deduplicate(examples: Examples) -> Examples:
    """Keep the first of texts that are equal after stripping surrounding whitespace."""
    return _drop_texts(examples, set())


def _drop_texts(examples: Examples, drop: set[str]) -> Examples:
    """Drop texts whose stripped form is in `drop` or already seen (keeping the first occurrence)."""
    seen = set(drop)
    texts, labels = [], []
    for text, label in zip(examples.texts, examples.labels, strict=True):
        key = text.strip()
        if key not in seen:
            seen.add(key)
            texts.append(text)
            labels.append(label)
    if not texts:
        raise UserError(f"{examples.source}: no rows left after removing texts that are also in the test file")
    return Examples(texts, labels, examples.source)


def _label_names(train: Examples, test: Examples | None) -> list[str]:
    """Sorted label names of the training data (numerically when all are integers, so "2" < "10")."""
    names = set(train.labels)
    if len(names) < 2:
        raise UserError(f"needs at least 2 classes, found only '{next(iter(names))}' in {train.source}")
    unseen = sorted(set(test.labels) - names) if test else []
    if unseen:
        raise UserError(
            f"{test.source}: label '{unseen[0]}' does not occur in the training data {train.source} "
            f"(its labels: {', '.join(sorted(names))})"
        )
    if all(_INTEGER.fullmatch(name) for name in names):
        return sorted(names, key=int)
    return sorted(names)


def _stratified_split(
    idx: np.ndarray, labels: np.ndarray, names: list[str], size: float, option: str, cfg: DataConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Split `idx` into (rest, held_out) with `size` of it held out, keeping the class ratio."""
    from sklearn.model_selection import train_test_split  # imported here: loading a run never needs sklearn

    try:
        rest, held_out = train_test_split(idx, test_size=size, stratify=labels[idx], random_state=cfg.split_seed)
    except ValueError:
        counts = Counter(labels[idx].tolist())
        rarest, smallest = min(counts.items(), key=lambda item: (item[1], item[0]))
        raise UserError(
            f"{cfg.data}: {option} {size} of {len(idx)} texts leaves a split empty or a class in only one split "
            f"(class '{names[rarest]}' has {smallest} text{'s' if smallest != 1 else ''}); change {option} or add data"
        ) from None
    return np.asarray(rest, dtype=np.int64), np.asarray(held_out, dtype=np.int64)


def _subset(idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int, salt: int) -> np.ndarray:
    """A seeded stratified `fraction` of `idx`, at least one text per class; a smaller fraction gives a subset."""
    rng = np.random.default_rng([seed, salt])
    keep = []
    for cls in np.unique(labels[idx]):
        members = idx[labels[idx] == cls]
        count = max(1, round(fraction * len(members)))
        keep.append(rng.permutation(members)[:count])
    return np.concatenate(keep).astype(np.int64) if keep else idx
