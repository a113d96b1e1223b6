"""The token-id cache: cached ids equal fresh tokenization, a step from them equals a step from text, a changed
tokenizer is a new store, a damaged store is rebuilt; and the batches prepared ahead in a thread."""

import json
import threading

import numpy as np
import pytest
import torch
from conftest import write_data, write_reviews

from rnnlab.config import EncoderConfig, RunConfig
from rnnlab.data.batching import ahead, collate
from rnnlab.encoders import build_encoder
from rnnlab.encoders.words import WordVectorEncoder
from rnnlab.model import build_model
from rnnlab.runtime import inputs_for
from rnnlab.training.token_ids import DONE, IDS, OFFSETS, IdRows, cached_token_ids

TEXTS = [text for text, _ in write_reviews(40)] + ["", "x " * 300, "Don't panic: it's 3.5 stars, u.s. style!"]


def encoders(tiny_bert):
    train = TEXTS[:30]
    return {
        "transformer": build_encoder(EncoderConfig(encoder=str(tiny_bert), finetune=True, max_length=24)),
        "windows": build_encoder(EncoderConfig(encoder=str(tiny_bert), finetune=False, max_length=16, chunks=3)),
        "glove": build_encoder(EncoderConfig(encoder="glove", finetune=True, max_length=40)),
        "scratch": build_encoder(EncoderConfig(encoder="scratch", vocab_size=60, embedding_dim=8, max_length=40), train),
    }


@pytest.mark.parametrize("kind", ["transformer", "windows", "glove", "scratch"])
def test_cached_ids_equal_fresh_tokenization(tiny_bert, tmp_path, kind):
    encoder = encoders(tiny_bert)[kind]
    fresh = encoder.tokenize(TEXTS)
    for _ in range(2):  # built, then read back
        cached = cached_token_ids(encoder, TEXTS, tmp_path)
        assert len(cached) == len(fresh)
        for got, want in zip(cached, fresh):
            if kind == "windows":
                assert [list(w) for w in got] == [list(w) for w in want]
            else:
                assert list(got) == list(want)
    assert len(list(tmp_path.iterdir())) == 1


def test_padded_batch_equals_collate(tiny_bert, tmp_path):
    encoder = encoders(tiny_bert)["glove"]
    rows = cached_token_ids(encoder, TEXTS, tmp_path)
    batch = [5, 41, 0, 42, 3]
    ids, lengths = rows.padded(batch, encoder.pad_id)
    want_ids, want_mask = collate([encoder.tokenize(TEXTS)[i] for i in batch], encoder.pad_id)
    assert torch.equal(torch.from_numpy(ids), want_ids) and torch.equal(torch.from_numpy(lengths), want_mask.sum(1))


def test_a_step_from_cached_ids_equals_a_step_from_text(tiny_bert, tmp_path):
    encoder_cfg = {"encoder": str(tiny_bert), "max_length": 24}
    cfg = RunConfig.from_dict({"encoder": encoder_cfg, "model": {"head": "bilstm", "hidden_size": 6}})
    results = []
    for source in ("text", "cache"):
        torch.manual_seed(0)
        encoder = build_encoder(cfg.encoder)
        model = build_model(cfg, encoder, 2).train()
        ids = encoder.tokenize(TEXTS) if source == "text" else cached_token_ids(encoder, TEXTS, tmp_path)
        x, mask = inputs_for(encoder, ids).batch([0, 7, 41, 42])
        torch.manual_seed(1)  # the same dropout masks
        logits = model(x, mask)
        logits.sum().backward()
        results.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (a, grads_a), (b, grads_b) = results
    assert torch.equal(a, b) and grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name in grads_a:
        assert torch.equal(grads_a[name], grads_b[name]), name


def test_a_changed_tokenizer_or_max_length_is_a_new_store(tiny_bert, tmp_path):
    short = build_encoder(EncoderConfig(encoder=str(tiny_bert), finetune=False, max_length=12))
    long = build_encoder(EncoderConfig(encoder=str(tiny_bert), finetune=False, max_length=24))
    tail = build_encoder(EncoderConfig(encoder=str(tiny_bert), finetune=False, max_length=12, truncation="tail"))
    scratch_a = build_encoder(EncoderConfig(encoder="scratch", vocab_size=60, max_length=12), TEXTS[:30])
    scratch_b = build_encoder(EncoderConfig(encoder="scratch", vocab_size=80, max_length=12), TEXTS[:30])
    for encoder in (short, long, tail, scratch_a, scratch_b):
        assert [list(r) for r in cached_token_ids(encoder, TEXTS, tmp_path)] == encoder.tokenize(TEXTS)
    assert len(list(tmp_path.iterdir())) == 5
    cached_token_ids(short, TEXTS[:-1], tmp_path)  # other texts: another store too
    assert len(list(tmp_path.iterdir())) == 6


def test_two_prunings_to_as_many_words_are_two_stores(tmp_path):
    _, glove = write_data(tmp_path)
    a, b = (WordVectorEncoder(str(glove), max_length=12, truncation="head") for _ in range(2))
    a.prune(["the good movie"])
    b.prune(["the bad movie"])
    assert len(a.vocab) == len(b.vocab) and a.tokenize(["bad"]) != b.tokenize(["bad"])
    for encoder in (a, b):
        rows = cached_token_ids(encoder, ["bad", "good"], tmp_path / "ids")
        assert [list(r) for r in rows] == encoder.tokenize(["bad", "good"])
    assert len(list((tmp_path / "ids").iterdir())) == 2


@pytest.mark.parametrize("damage", ["truncate", "corrupt", "no-done"])
def test_a_damaged_store_is_rebuilt_never_read(tiny_bert, tmp_path, damage):
    encoder = encoders(tiny_bert)["glove"]
    cached_token_ids(encoder, TEXTS, tmp_path)
    (folder,) = tmp_path.iterdir()
    ids = folder / IDS
    if damage == "truncate":
        ids.write_bytes(ids.read_bytes()[:-8])
    elif damage == "corrupt":
        data = bytearray(ids.read_bytes())
        data[-3] ^= 0xFF  # a different token id, same size
        ids.write_bytes(bytes(data))
    else:
        (folder / DONE).unlink()
        (folder / OFFSETS).write_bytes(b"junk")
    rows = cached_token_ids(encoder, TEXTS, tmp_path)
    assert [list(r) for r in rows] == encoder.tokenize(TEXTS)
    recorded = json.loads((folder / DONE).read_text())
    assert recorded["texts"] == len(TEXTS)


def test_rows_pickle_by_folder(tiny_bert, tmp_path):
    import pickle

    rows = cached_token_ids(encoders(tiny_bert)["glove"], TEXTS, tmp_path)
    copy = pickle.loads(pickle.dumps(rows))
    assert isinstance(copy, IdRows) and copy.folder == rows.folder and np.array_equal(copy[3], rows[3])


def test_ahead_yields_in_order_and_raises_the_producers_error():
    assert list(ahead(iter(range(100)), depth=3)) == list(range(100))

    def broken():
        yield 1
        raise ValueError("bad row 2")

    stream = ahead(broken())
    assert next(stream) == 1
    with pytest.raises(ValueError, match="bad row 2"):
        next(stream)


def test_leaving_ahead_early_stops_its_thread():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    before = threading.active_count()
    for item in ahead(endless(), depth=2):
        if item == 5:
            break
    for _ in range(100):
        if threading.active_count() == before:
            break
        threading.Event().wait(0.02)
    assert threading.active_count() == before and len(produced) <= 10
