"""Feature cache on a tiny frozen encoder whose output depends on context, so padding mistakes show."""

from __future__ import annotations

import errno
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from rnnlab.encoders import Encoder
from rnnlab.errors import UserError
from rnnlab.training import features
from rnnlab.training.features import FeatureStore, default_cache_dir, encode_cached


class CountingEncoder(Encoder):
    """Token vector = embedding + mean of the text's embeddings, through a linear layer; counts forward calls."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embedding, self.linear = nn.Embedding(20, 6, padding_idx=0), nn.Linear(6, 6)
        self.dim, self.pad_id, self.trainable, self.max_length, self.truncation = 6, 0, False, 64, "head"
        self.seed, self.calls = seed, 0
        self.requires_grad_(False)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return [[1 + (ord(c) % 19) for c in text] or [1] for text in texts]

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        x = self.embedding(ids) * mask[..., None]  # [B, T, D]
        context = x.sum(1, keepdim=True) / mask.sum(1)[:, None, None]  # [B, 1, D]
        return self.linear(x + context)  # [B, T, D]

    def spec(self) -> dict:
        return {"kind": "counting", "seed": self.seed}


TEXTS = ["a", "hello world", "the movie was great", "bad", "x" * 30, "so-so film", "meh."]


def run(encoder: Encoder, texts: list[str], cache_dir, **kwargs) -> FeatureStore:
    return encode_cached(encoder, encoder.tokenize(texts), cache_dir, batch_size=3, progress=False, **kwargs)


def test_cached_features_equal_direct_output(tmp_path):
    encoder = CountingEncoder()
    store = run(encoder, TEXTS, tmp_path)
    assert len(store) == len(TEXTS) and store.dim == 6
    assert list(store.lengths) == [len(t) for t in TEXTS]
    for i, ids in enumerate(encoder.tokenize(TEXTS)):
        expected = encoder(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.bool))[0]  # [T, D]
        x, mask = store.get([i])
        assert mask.all() and x.dtype == torch.float32
        torch.testing.assert_close(x[0], expected, atol=2e-3, rtol=2e-3)  # stored as float16


def test_bf16_autocast_stays_close(tmp_path):
    encoder = CountingEncoder()
    store = run(encoder, TEXTS, tmp_path, autocast_dtype=torch.bfloat16)
    ids = encoder.tokenize(TEXTS[2:3])[0]
    expected = encoder(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.bool))[0]
    torch.testing.assert_close(store.get([2])[0][0], expected, atol=3e-2, rtol=3e-2)


def test_second_call_reads_the_cache(tmp_path):
    encoder = CountingEncoder()
    first = run(encoder, TEXTS, tmp_path)
    calls = encoder.calls
    assert calls == 3  # 7 texts in batches of 3
    second = run(encoder, TEXTS, tmp_path)
    assert encoder.calls == calls and second.folder == first.folder
    assert [p.name for p in tmp_path.iterdir()] == [first.folder.name]  # no temporary folder left


def test_changed_text_or_encoder_changes_the_key(tmp_path):
    base = run(CountingEncoder(), TEXTS, tmp_path).folder
    assert run(CountingEncoder(), [*TEXTS[:-1], "meh!"], tmp_path).folder != base
    assert run(CountingEncoder(seed=1), TEXTS, tmp_path).folder != base


def test_store_get_pads_right(tmp_path):
    store = run(CountingEncoder(), TEXTS, tmp_path)
    x, mask = store.get([3, 1, 0])  # lengths 3, 11, 1
    assert x.shape == (3, 11, 6) and mask.shape == (3, 11)
    assert mask.sum(1).tolist() == [3, 11, 1]
    assert not x[~mask].any() and x[mask].abs().sum(-1).gt(0).all()
    torch.testing.assert_close(x[0, :3], store.get([3])[0][0])


def test_disk_full_before_writing_leaves_nothing(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(features, "_create_array", full)
    with pytest.raises(UserError, match=r"cannot write feature cache to .*: No space left on device \(free space"):
        run(CountingEncoder(), TEXTS, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_disk_full_midway_leaves_nothing(tmp_path, monkeypatch):
    real, calls = features._encode_batch, []

    def fails_second_time(*args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args)

    monkeypatch.setattr(features, "_encode_batch", fails_second_time)
    with pytest.raises(UserError, match="--cache-dir"):
        run(CountingEncoder(), TEXTS, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_other_ranks_wait_then_open(tmp_path):
    waits = []
    encoder = CountingEncoder()
    kwargs = {"world_size": 2, "barrier": lambda: waits.append(1)}
    rank0 = run(encoder, TEXTS, tmp_path, rank=0, **kwargs)
    rank1 = run(encoder, TEXTS, tmp_path, rank=1, **kwargs)
    assert waits == [1, 1] and rank1.folder == rank0.folder and encoder.calls == 3


def test_store_pickles_by_folder(tmp_path):
    store = run(CountingEncoder(), TEXTS, tmp_path)
    copy = pickle.loads(pickle.dumps(store))
    assert len(pickle.dumps(store)) < 1000
    np.testing.assert_array_equal(copy.get([4])[0].numpy(), store.get([4])[0].numpy())


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "features"
    monkeypatch.delenv("RNNLAB_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "rnnlab", "features")
