"""Split encoders: --finetune-layers K (frozen trunk cached, top K layers trained) and --layer-mix N."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import rnnlab, train_args, write_data

from rnnlab.config import EncoderConfig, HeadConfig, RunConfig
from rnnlab.encoders import build_encoder
from rnnlab.errors import UserError
from rnnlab.model import build_model, saved_state
from rnnlab.training.features import encode_cached
from rnnlab.training.optim import make_optimizer

TEXTS = ["a good film", "bad, dull and boring plot?", "it was fine", "superb! the actor was lovely and the story too"]


def _encoder(folder, **split):
    cfg = EncoderConfig(encoder=str(folder), max_length=32, finetune=not split.get("layer_mix"), **split)
    return build_encoder(cfg)


def _batch(encoder, texts=TEXTS):
    ids = encoder.tokenize(texts)
    lengths = torch.tensor([len(i) for i in ids])
    padded = torch.full((len(ids), int(lengths.max())), encoder.pad_id)
    for row, seq in enumerate(ids):
        padded[row, : len(seq)] = torch.tensor(seq)
    return padded, torch.arange(padded.shape[1]) < lengths[:, None]


def _model(encoder):
    cfg = RunConfig(model=HeadConfig(head="bilstm", hidden_size=8, dropout=0.3))
    torch.manual_seed(1)
    return build_model(cfg, encoder, num_classes=2)


def test_trunk_then_top_is_the_whole_model(tiny_bert):
    encoder = _encoder(tiny_bert, finetune_layers=1).eval()
    ids, mask = _batch(encoder)
    with torch.no_grad():
        whole = encoder.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        split = encoder.from_trunk(encoder.trunk(ids, mask), mask)
    assert split.shape == whole.shape == (4, ids.shape[1], 32)
    torch.testing.assert_close(split[mask], whole[mask], atol=1e-5, rtol=1e-5)


def _step(model, inputs, mask, *, cached):
    """One training-mode forward + backward (dropout on) from a fixed seed; the top layer's gradients."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    logits = model(inputs, mask, cached=cached)
    torch.nn.functional.cross_entropy(logits, torch.tensor([1, 0, 1, 1])).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


def test_cached_trunk_equals_running_it_inside_every_step(tiny_bert):
    model = _model(_encoder(tiny_bert, finetune_layers=1))
    ids, mask = _batch(model.encoder)
    inline_logits, inline_grads = _step(model, ids, mask, cached=False)
    with torch.no_grad():
        rows = model.encoder.trunk(ids, mask).masked_fill(~mask[..., None], 0.0)  # the cache pads with zeros
    cached_logits, cached_grads = _step(model, rows, mask, cached=True)
    torch.testing.assert_close(cached_logits, inline_logits, atol=1e-5, rtol=1e-5)
    assert set(cached_grads) == set(inline_grads)
    trained = {n.split(".")[4] for n in inline_grads if n.startswith("encoder.model.encoder.layer.")}
    assert trained == {"1"}, "only the top layer trains"
    assert not any(n.startswith("encoder.model.embeddings.") for n in inline_grads)
    for name in inline_grads:
        torch.testing.assert_close(cached_grads[name], inline_grads[name], atol=1e-5, rtol=1e-4)


def test_the_feature_store_feeds_the_top_layers(tiny_bert, tmp_path):
    model = _model(_encoder(tiny_bert, finetune_layers=1)).eval()
    ids, mask = _batch(model.encoder)
    store = encode_cached(model.encoder, model.encoder.tokenize(TEXTS), tmp_path, progress=False)
    rows, store_mask = store.get([0, 1, 2, 3])
    assert rows.shape == (4, ids.shape[1], 32) and torch.equal(store_mask, mask)
    with torch.no_grad():
        torch.testing.assert_close(model(rows, mask, cached=True), model(ids, mask), atol=2e-3, rtol=1e-3)  # fp16 store


def test_partial_run_stores_only_what_trains(tiny_bert):
    model = _model(_encoder(tiny_bert, finetune_layers=1))
    encoder_keys = {k for k in saved_state(model) if k.startswith("encoder.")}
    assert encoder_keys and all(k.startswith("encoder.model.encoder.layer.1.") for k in encoder_keys)
    optimizer = make_optimizer(RunConfig(), model)
    counted = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    assert counted == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_layer_mix_weighs_hidden_states(tiny_bert):
    encoder = _encoder(tiny_bert, layer_mix=3).eval()
    ids, mask = _batch(encoder)
    rows = encoder.trunk(ids, mask)
    assert rows.shape[-1] == encoder.trunk_dim == 3 * 32
    hidden = encoder.model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True).hidden_states
    with torch.no_grad():
        torch.testing.assert_close(encoder.from_trunk(rows, mask), sum(hidden) / 3, atol=1e-5, rtol=1e-5)  # starts as the mean
        encoder.mix.scores.copy_(torch.tensor([-30.0, -30.0, 30.0]))
        torch.testing.assert_close(encoder.from_trunk(rows, mask), hidden[-1], atol=1e-5, rtol=1e-5)
    model = _model(encoder)
    assert {k for k in saved_state(model) if k.startswith("encoder.")} == {"encoder.mix.scores", "encoder.mix.gamma"}
    lr_of = {id(p): g["lr"] for g in make_optimizer(RunConfig(), model).param_groups for p in g["params"]}
    assert lr_of[id(encoder.mix.scores)] == RunConfig().train.lr, "the mix is new: it trains at the head's rate"


@pytest.mark.parametrize(("extra", "message"), [
    (["--finetune-layers", "2"], "--finetune-layers 2: this encoder has 2 layers; choose 1 to 1"),
    (["--no-finetune", "--finetune-layers", "1"], "cannot be combined with --no-finetune"),
    (["--layer-mix", "2"], "--layer-mix 2 mixes a frozen encoder's layers; add --no-finetune"),
    (["--no-finetune", "--layer-mix", "4"], "--layer-mix 4: this encoder has 2 layers and the embeddings; choose 2 to 3"),
])  # fmt: skip
def test_bad_splits_are_one_line_errors(tiny_bert, tmp_path, extra, message):
    data, _ = write_data(tmp_path)
    result = rnnlab([*train_args(data, tiny_bert, tmp_path / "run"), *extra])
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_word_vectors_have_no_layers_to_split(tmp_path):
    _, glove = write_data(tmp_path)
    with pytest.raises(UserError, match="--encoder .*glove.txt has none"):
        build_encoder(EncoderConfig(encoder=str(glove), finetune_layers=1))


@pytest.mark.parametrize("extra", [["--finetune-layers", "1"], ["--no-finetune", "--layer-mix", "3"]])
def test_split_runs_train_save_and_predict(tiny_bert, tmp_path, extra):
    data, _ = write_data(tmp_path)
    run = tmp_path / "run"
    assert rnnlab([*train_args(data, tiny_bert, run), "--cache-dir", str(tmp_path / "cache"), *extra]).returncode == 0
    results = json.loads((run / "results.json").read_text())
    assert results["finished"] and results["finetune"] == (extra[0] == "--finetune-layers")
    cache_line = next(line for line in (run / "log.txt").read_text().splitlines() if "feature cache" in line)
    assert f"{32 * (3 if extra[-1] == '3' else 1)} wide" in cache_line and "MB" in cache_line  # 3 mixed layers side by side
    spec = json.loads((run / "encoder.json").read_text())
    assert (spec["finetune_layers"], spec["layer_mix"]) == ((1, 0) if results["finetune"] else (0, 3))
    (tmp_path / "in.txt").write_text("a good film\nbad and dull\n")
    out = rnnlab(["predict", str(run), "--file", str(tmp_path / "in.txt")])
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == 2
