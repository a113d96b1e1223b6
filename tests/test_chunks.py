"""Long texts read in windows (--chunks): windowing, the hierarchical head's padding invariance, the model end to end."""

from __future__ import annotations

import json
import time

import pytest
import torch
from conftest import CLS, SEP, rnnlab, train_args, write_data

from rnnlab.config import EncoderConfig, HeadConfig, RunConfig
from rnnlab.encoders import build_encoder
from rnnlab.heads import build_head
from rnnlab.model import build_model
from rnnlab.runtime import WindowInputs, inputs_for
from rnnlab.subword import windows
from rnnlab.training.features import encode_cached

LONG = " ".join(["a good film but the plot was dull and boring"] * 4)
TEXTS = ["fine", LONG, "bad acting, lovely story", LONG[:60]]


def test_windows_overlap_and_truncate_first():
    assert windows(list(range(10)), 4, chunks=3, overlap=1, strategy="head") == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert windows(list(range(4)), 4, chunks=3, overlap=1, strategy="head") == [[0, 1, 2, 3]]  # no window of overlap alone
    # 3 windows hold 4 + 3 + 3 = 10 tokens: a text of 20 keeps its first quarter and its last three quarters first.
    assert windows(list(range(20)), 4, chunks=3, overlap=1, strategy="head_tail") == [[0, 1, 12, 13], [13, 14, 15, 16],
                                                                                     [16, 17, 18, 19]]  # fmt: skip
    assert windows([], 4, chunks=2, overlap=0, strategy="head") == [[]]


def _encoder(folder, finetune=True, truncation="head_tail"):
    cfg = EncoderConfig(encoder=str(folder), max_length=10, finetune=finetune, chunks=3, chunk_overlap=2, truncation=truncation)
    return build_encoder(cfg)


def test_each_window_has_its_own_special_tokens(tiny_bert):
    encoder = _encoder(tiny_bert, truncation="head")
    plain = build_encoder(EncoderConfig(encoder=str(tiny_bert), max_length=64, finetune=True, truncation="head"))
    texts = ["fine", "bad film", *TEXTS]
    windowed, counts = encoder.tokenize_counted(texts)
    # 8 content tokens a window, 6 new ones in each next window: "fine" fits one, "bad film" (7 letters + a space
    # between words, as word pieces) one, LONG needs more than the 3 it may have.
    assert [len(w) for w in windowed][:4] == [1, 1, 1, 3]
    assert counts == plain.tokenize_counted(texts)[1]  # lengths before truncation, as without windows
    for text_windows, full in zip(windowed, plain.tokenize(texts)):
        assert all(w[0] == CLS and w[-1] == SEP and len(w) <= 10 for w in text_windows)
        content = text_windows[0][1:-1] + [t for w in text_windows[1:] for t in w[3:-1]]  # drop the 2 shared tokens
        assert content == full[1 : 1 + len(content)]


@pytest.mark.parametrize("head", ["bigru", "fnn", "transformer"])
def test_hierarchical_head_ignores_padding_at_both_levels(head):
    torch.manual_seed(0)
    model = build_head(HeadConfig(head=head, hidden_size=8, chunk_pooling="attention"), 6, chunks=True).eval()
    x, mask = torch.randn(2, 3, 5, 6), torch.zeros(2, 3, 5, dtype=torch.bool)
    mask[0, 0, :5], mask[0, 1, :2], mask[1, 0, :3] = True, True, True  # text 0: 2 windows; text 1: 1 window
    wider = torch.randn(2, 4, 7, 6) * 100  # garbage wherever the mask is False
    wider[:, :3, :5] = torch.where(mask[..., None], x, wider[:, :3, :5])
    wider_mask = torch.zeros(2, 4, 7, dtype=torch.bool)
    wider_mask[:, :3, :5] = mask
    with torch.no_grad():
        torch.testing.assert_close(model(wider, wider_mask), model(x.masked_fill(~mask[..., None], 0), mask))


def _model(encoder):
    torch.manual_seed(0)
    return build_model(RunConfig(model=HeadConfig(head="bigru", hidden_size=8)), encoder, num_classes=2).eval()


def test_windows_are_encoded_alone_and_pooled(tiny_bert):
    model = _model(_encoder(tiny_bert))
    inputs = inputs_for(model.encoder, model.encoder.tokenize(TEXTS))
    assert isinstance(inputs, WindowInputs)
    ids, mask = inputs.batch([0, 1, 2, 3])
    assert ids.shape[:2] == mask.shape[:2] == (4, 3)
    assert mask.any(-1).sum(1).tolist() == [len(w) for w in inputs.windows] and min(map(len, inputs.windows)) == 1
    with torch.no_grad():
        logits = model(ids, mask)
        # By hand: every window through the encoder as a batch of one, mean-pooled, then the head over windows.
        expected = []
        for text_windows in model.encoder.tokenize(TEXTS):
            vectors = [model.encoder(torch.tensor([w]), torch.ones(1, len(w), dtype=torch.bool)).mean(1) for w in text_windows]
            chunk = torch.cat(vectors).unsqueeze(0)  # [1, N, D]
            expected.append(model.classifier(model.head.over(chunk, torch.ones(1, len(vectors), dtype=torch.bool))))
    torch.testing.assert_close(logits, torch.cat(expected), atol=1e-5, rtol=1e-4)


def test_cached_windows_equal_encoding_them(tiny_bert, tmp_path):
    model = _model(_encoder(tiny_bert, finetune=False))
    inputs = inputs_for(model.encoder, model.encoder.tokenize(TEXTS))
    store = encode_cached(model.encoder, inputs.flat(), tmp_path, progress=False)
    assert len(store) == sum(len(w) for w in inputs.windows) > len(TEXTS)  # one row per window
    cached = inputs_for(model.encoder, inputs.windows, store)
    with torch.no_grad():
        x, mask = cached.batch([3, 1, 0])
        assert x.shape[:3] == mask.shape and x.shape[-1] == 32
        ids, id_mask = inputs.batch([3, 1, 0])
        torch.testing.assert_close(model(x, mask, cached=True), model(ids, id_mask), atol=2e-3, rtol=1e-3)  # fp16 store


@pytest.mark.parametrize("tuning", [[], ["--no-finetune"]])
def test_windowed_run_trains_predicts_and_refuses_export(tiny_bert, tmp_path, tuning):
    data, _ = write_data(tmp_path)
    run = tmp_path / "run"
    args = [*train_args(data, tiny_bert, run), "--max-length", "8", "--chunks", "3", "--chunk-overlap", "2",
            "--cache-dir", str(tmp_path / "cache"), *tuning]  # fmt: skip
    assert rnnlab(args).returncode == 0
    assert json.loads((run / "encoder.json").read_text())["chunks"] == 3
    (tmp_path / "in.txt").write_text(f"a good film\n{LONG}\n")
    out = rnnlab(["predict", str(run), "--file", str(tmp_path / "in.txt")])
    assert out.returncode == 0 and len(out.stdout.strip().splitlines()) == 2, out.stderr
    refused = rnnlab(["export", str(run)])
    assert refused.returncode == 2 and "--chunks" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    _serves_without_highlights(run)


def _serves_without_highlights(run):
    from fastapi.testclient import TestClient

    from rnnlab.serve.http import create_app, load_run

    with TestClient(create_app(lambda: load_run(run, bf16=False)), raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 30
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        asked = client.post("/v1/classify", json={"inputs": [LONG], "explain": True})
        assert asked.status_code == 422 and "--chunks" in asked.json()["error"]["message"]
        served = client.post("/v1/classify", json={"inputs": [LONG, "fine"]})
        assert served.status_code == 200 and len(served.json()["results"]) == 2


@pytest.mark.parametrize(("extra", "message"), [
    (["--encoder", "glove", "--chunks", "2"], "--chunks splits texts a transformer cannot read at once"),
    (["--chunks", "2", "--chunk-overlap", "8"], "--chunk-overlap must be in [0, 8) for --max-length 16, got 8"),
])  # fmt: skip
def test_bad_window_options_are_one_line_errors(tmp_path, tiny_bert, extra, message):
    data, glove = write_data(tmp_path)
    args = [*train_args(data, tiny_bert, tmp_path / "run"), *extra]
    if "glove" in extra:
        args[args.index("glove")] = str(glove)
    result = rnnlab(args)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
