"""`rnnlab lm`: the AWD-LSTM language model, its token streams, generation, and classification with its stack (ULMFiT)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import rnnlab, write_data
from safetensors.torch import load_file

from rnnlab import cli, runs
from rnnlab.config import HeadConfig, RunConfig, TrainConfig
from rnnlab.data.batching import collate
from rnnlab.encoders.lm import LanguageModel, LMEncoder
from rnnlab.encoders.lm_vocab import EOS, LMVocab
from rnnlab.errors import UserError
from rnnlab.lm.evaluate import perplexity
from rnnlab.lm.sampling import pick, sample_ids
from rnnlab.lm.stream import count_words, join, rows, windows
from rnnlab.model import build_model
from rnnlab.presets import LM_PRESETS, expand
from rnnlab.runtime import Precision
from rnnlab.training.optim import DISCRIMINATIVE_FACTOR, make_optimizer, unfreeze, unfreezing_groups

NET = {"emb_dim": 8, "hidden_size": 12, "layers": 2, "embed_p": 0.1, "input_p": 0.2, "weight_p": 0.3, "hidden_p": 0.2,
       "output_p": 0.1}  # fmt: skip
NO_DROPOUT = {**NET, "embed_p": 0.0, "input_p": 0.0, "weight_p": 0.0, "hidden_p": 0.0, "output_p": 0.0}
CPU = Precision(torch.device("cpu"), None)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on shared cores: a second thread only waits for the first (0.1 s a step instead of 5 ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def lm_args(data: Path, run: Path, *extra: str) -> list[str]:
    return ["lm", "train", "--data", str(data), "--vocab", "chars", "--emb-dim", "8", "--hidden-size", "12",
            "--epochs", "2", "--batch-size", "4", "--bptt", "16", "--checkpoint-every", "5", "--no-progress", "--no-bf16",
            "--run-dir", str(run), *extra]  # fmt: skip


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> tuple[Path, Path]:
    """A finished tiny character LM on the tiny reviews (and the data it read)."""
    folder = tmp_path_factory.mktemp("lm")
    data, _ = write_data(folder)
    assert cli.main(lm_args(data, folder / "lm")) == 0
    return data, folder / "lm"


def test_output_layer_shares_the_embeddings_storage():
    model = LanguageModel(31, **NET)
    assert model.decoder.weight is model.stack.embedding.weight
    assert model.decoder.weight.data_ptr() == model.stack.embedding.weight.data_ptr()
    assert "decoder.weight" not in model.saved_state()  # stored once, as the embedding


def test_first_loss_is_about_ln_vocab_size():
    torch.manual_seed(0)
    model = LanguageModel(97, **NET).eval()
    ids = torch.randint(3, 97, (4, 20))
    logits, _ = model(ids[:, :-1])
    loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()).item()
    assert abs(loss - math.log(97)) < 0.05


def test_a_tiny_corpus_is_overfitted():
    vocab = LMVocab.learn(["the cat sat on the mat."], "chars", 0)
    docs = vocab.encode(["the cat sat on the mat."] * 8)
    torch.manual_seed(0)
    model = LanguageModel(vocab.size, **{**NO_DROPOUT, "emb_dim": 24, "hidden_size": 48})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = rows(join(docs), 2)
    for _ in range(40):
        state = None
        for _, x, y in windows(data, 12):
            logits, state = model(x, None if state is None else [(h.detach(), c.detach()) for h, c in state])
            F.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
            optimizer.step()
            optimizer.zero_grad()
    result = perplexity(model, docs, count_words(["the cat sat on the mat."] * 8), bptt=12, batch_size=2, prec=CPU)
    assert result["ppl_token"] < 2, result


def test_stateful_batches_rebuild_the_token_stream():
    docs = [list(range(3, 3 + n)) for n in (5, 17, 2, 40, 9)]
    stream = join(docs)
    data = rows(stream, 3)  # [3, L]
    rebuilt = [[] for _ in range(3)]
    for _, x, y in windows(data, 7):
        assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
        for r in range(3):
            rebuilt[r] += x[r].tolist()
    for r in range(3):
        rebuilt[r].append(int(data[r, -1]))  # a row's last token is only ever a target
    assert sum(rebuilt, []) == stream[: 3 * data.size(1)].tolist()
    assert stream.tolist().count(EOS) == len(docs)


def test_per_word_perplexity_counts_each_chinese_character_as_a_word():
    # Spaces delimit English words; Chinese has none, and a review counted as one word gave perplexities of 1e81.
    assert count_words(["the cat  sat, on the mat."]) == 6 + 1
    assert count_words(["这本书很好，我喜欢 it!"]) == 5 + 1 + 3 + 1 + 1  # 这本书很好 ， 我喜欢 it! and the EOS


def test_chunked_reading_equals_one_pass_in_eval_mode():
    torch.manual_seed(0)
    model = LanguageModel(41, **NET).eval()
    ids = torch.randint(3, 41, (3, 23))
    whole, _ = model(ids)
    pieces, state = [], None
    for start in range(0, 23, 5):
        logits, state = model(ids[:, start : start + 5], state)
        pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, rtol=1e-5, atol=1e-6)


def encoder_for(texts: list[str], **options) -> LMEncoder:
    vocab = LMVocab.learn(texts, "chars", 0)
    return LMEncoder(vocab, NET, source="test", finetune=True, max_length=64, truncation="head", fingerprint="", **options)


@pytest.mark.parametrize("head", ["fnn", "bilstm", "gru", "textcnn", "transformer"])
def test_logits_do_not_change_with_padding(head):
    torch.manual_seed(0)
    texts = ["a good film", "a bad, dull film with a plot", "ok"]
    model = build_model(RunConfig(model=HeadConfig(head=head, hidden_size=8, pooling="concat")), encoder_for(texts), 2).eval()
    ids, mask = collate(model.encoder.tokenize(texts), 0)  # [B, T]
    padded = torch.cat([ids, torch.zeros(3, 9, dtype=ids.dtype)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(3, 9, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded, padded_mask), model(ids, mask), rtol=1e-5, atol=1e-6)


def test_weight_drop_draws_a_new_mask_per_forward_in_training_and_none_in_eval():
    torch.manual_seed(0)
    model = LanguageModel(41, **NET)
    layer = model.stack.layers[0]
    ids = torch.randint(3, 41, (2, 6))
    seen = []
    for _ in range(2):
        model(ids)
        seen.append(layer.lstm.weight_hh_l0.detach().clone())  # the weights the fused kernel ran with
    assert not torch.equal(seen[0], seen[1])
    for dropped in seen:
        kept = dropped != 0
        assert 0.5 < kept.float().mean() < 0.9  # weight_p = 0.3
        torch.testing.assert_close(dropped[kept], layer.weight_hh_raw[kept] / 0.7)
    logits, _ = model(ids)
    logits.sum().backward()
    assert layer.weight_hh_raw.grad is not None and layer.weight_hh_raw.grad.abs().sum() > 0
    model.eval()
    first, _ = model(ids)
    assert torch.equal(layer.lstm.weight_hh_l0, layer.weight_hh_raw)
    assert torch.equal(model(ids)[0], first)


def test_gradual_unfreezing_trains_exactly_the_groups_of_each_stage():
    torch.manual_seed(0)
    texts = ["a good film", "a bad, dull film with a plot", "ok", "fine fine"]
    cfg = RunConfig(model=HeadConfig(head="fnn", hidden_size=8, pooling="concat"), train=TrainConfig(lr=1e-2))
    model = build_model(cfg, encoder_for(texts), 2)
    optimizer = make_optimizer(cfg, model)
    groups = unfreezing_groups(cfg, model)
    assert len(groups) == NET["layers"] + 1  # each LSTM layer from the top, then the embedding
    rates = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    for depth, params in enumerate(groups, 1):
        assert all(rates[id(p)] == pytest.approx(1e-2 / DISCRIMINATIVE_FACTOR**depth) for p in params)
    ids, mask = collate(model.encoder.tokenize(texts), 0)
    for stage in range(len(groups) + 1):
        unfreeze(groups, stage)
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        model.train()
        with torch.no_grad():  # frozen layers run without dropout: features are noisy only once something trains
            same = torch.equal(model.encoder(ids, mask), model.encoder(ids, mask))
        assert same == (stage == 0), stage
        F.cross_entropy(model(ids, mask), torch.tensor([1, 0, 1, 0])).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        trained = {id(p) for params in groups[:stage] for p in params}
        for name, p in model.named_parameters():
            frozen = name.startswith("encoder.") and id(p) not in trained
            if frozen:
                assert torch.equal(p, before[name]), (stage, name)
            elif name != "encoder.stack.embedding.weight":  # the embedding's PAD row never moves
                assert not torch.equal(p, before[name]), (stage, name)


def test_temperature_zero_is_argmax_and_top_k_stays_in_the_top_k():
    torch.manual_seed(0)
    logits = torch.randn(50)
    best = int(logits[3:].argmax()) + 3  # PAD, UNK are never drawn (EOS may be)
    assert pick(logits, temperature=0, top_k=0, generator=None) == best
    generator = torch.Generator().manual_seed(0)
    assert {pick(logits, temperature=1e-4, top_k=0, generator=generator) for _ in range(20)} == {best}
    top = set(logits[3:].topk(4).indices.add(3).tolist())
    draws = {pick(logits, temperature=5.0, top_k=4, generator=generator) for _ in range(300)}
    assert draws <= top and len(draws) > 1


def test_cached_state_generation_equals_refeeding_the_prefix():
    torch.manual_seed(0)
    model = LanguageModel(41, **NET).eval()
    prompt = [EOS, 7, 9, 11]
    out = sample_ids(model, prompt, length=12, temperature=1.0, top_k=0, generator=torch.Generator().manual_seed(1))
    replay = torch.Generator().manual_seed(1)
    for i in range(len(out)):
        with torch.no_grad():
            logits, _ = model(torch.tensor([prompt + out[:i]]))  # the whole prefix from a zero state
        assert pick(logits[0, -1], temperature=1.0, top_k=0, generator=replay) == out[i]


def test_lm_documents_never_include_validation_or_test_texts(tmp_path):
    from rnnlab.data.split import prepare
    from rnnlab.lm.config import LMConfig
    from rnnlab.lm.train import _setup

    data, _ = write_data(tmp_path)
    cfg = cli._parse(cli.LMTrainArgs, lm_args(data, tmp_path / "lm")[2:], "rnnlab lm train").run
    setup = _setup(cfg, resume=False)
    prepared = prepare(cfg.dataset)
    split = {name: [prepared.texts[i] for i in idx] for name, idx in prepared.split.items()}
    assert setup.train_docs == setup.vocab.encode(split["train"])
    held_out = {tuple(doc) for doc in setup.vocab.encode(split["val"] + split["test"])}
    assert held_out and not held_out & {tuple(doc) for doc in setup.train_docs}
    saved = json.loads((tmp_path / "lm" / runs.SPLIT).read_text())
    assert saved["hash"] == prepared.manifest()["hash"] and isinstance(LMConfig.load(tmp_path / "lm" / runs.CONFIG), LMConfig)


def test_a_killed_lm_run_resumes_exactly(lm_run, tmp_path, capsys):
    data, uninterrupted = lm_run
    run = tmp_path / "lm"
    assert rnnlab(lm_args(data, run), kill_at=7).returncode == -signal.SIGKILL
    assert (run / runs.CHECKPOINT).is_file() and not (run / runs.RESULTS).exists()
    assert cli.main(lm_args(data, run)) == 2  # a plain restart refuses to clobber it, and says how to continue
    assert f"rnnlab lm train --resume {run}" in one_error_line(capsys)
    resumed = rnnlab(["lm", "train", "--resume", str(run)])
    assert resumed.returncode == 0, resumed.stderr
    timing = {"seconds", "tokens_per_s"}
    metrics = [{k: v for k, v in json.loads(line).items() if k not in timing} for line in (run / runs.METRICS).open()]
    reference = [{k: v for k, v in json.loads(line).items() if k not in timing} for line in (uninterrupted / runs.METRICS).open()]
    assert metrics == reference and len(metrics) == 2
    assert (run / "samples.md").read_text() == (uninterrupted / "samples.md").read_text()
    weights, expected = load_file(run / runs.WEIGHTS), load_file(uninterrupted / runs.WEIGHTS)
    for name in expected:
        torch.testing.assert_close(weights[name], expected[name], rtol=0, atol=1e-6)


def test_lm_eval_and_generate(lm_run, capsys):
    data, run = lm_run
    assert cli.main(["lm", "eval", str(run), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["texts"] == 16 and 1 < result["ppl_token"] < result["ppl_word"]
    assert cli.main(["lm", "eval", str(run), "--data", str(data), "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["texts"] == 80  # every text of the file
    args = ["lm", "generate", str(run), "--prompt", "the film", "--length", "30", "--top-k", "5", "--seed", "3"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert cli.main(args) == 0
    assert first == capsys.readouterr().out and first.startswith("the film") and len(first) > len("the film") + 10


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("rnnlab: error:"), err
    return err


def test_bad_lm_inputs_are_one_line_each(lm_run, tmp_path, capsys):
    data, run = lm_run
    assert cli.main(["lm", "generate", str(run), "--prompt", "жж film"]) == 2
    assert "'ж'" in one_error_line(capsys)
    assert cli.main(["lm", "generate", str(run), "--temperature", "-1"]) == 2
    assert "--temperature" in one_error_line(capsys)
    mismatched = tmp_path / "mismatched"
    shutil.copytree(run, mismatched)
    vocab = json.loads((mismatched / "lm_vocab.json").read_text())
    vocab["chars"] = vocab["chars"][:-3]
    vocab["size"] -= 3
    (mismatched / "lm_vocab.json").write_text(json.dumps(vocab))
    args = ["train", "--data", str(data), "--encoder", f"lm:{mismatched}", "--no-progress", "--run-dir", str(tmp_path / "c")]
    assert cli.main(args) == 2
    assert "does not match" in one_error_line(capsys)
    other_split = ["train", "--data", str(data), "--encoder", f"lm:{run}", "--split-seed", "1", "--no-progress",
                   "--run-dir", str(tmp_path / "d")]  # fmt: skip
    assert cli.main(other_split) == 2
    assert "validation and test texts" in one_error_line(capsys)


def test_classifier_on_the_pretrained_stack_trains_and_exports(lm_run, tmp_path):
    from rnnlab.model import load_trained
    from rnnlab.serve.hf import export_hf
    from rnnlab.serve.onnx import export_onnx

    data, run = lm_run
    clf = tmp_path / "clf"
    args = ["train", "--data", str(data), "--encoder", f"lm:{run}", "--head", "fnn", "--pooling", "concat",
            "--pool-norm", "--hidden-size", "8", "--epochs", "3", "--batch-size", "8", "--max-length", "64", "--no-progress",
            "--no-bf16", "--run-dir", str(clf)]  # fmt: skip
    assert cli.main(args) == 0
    model, _ = load_trained(clf)
    best = json.loads((clf / runs.RESULTS).read_text())["best_epoch"]
    pretrained = load_file(run / runs.WEIGHTS)
    # Epoch e trains the top e - 1 groups: layer 1 from epoch 2, layer 0 from epoch 3, the embedding from epoch 4.
    for name, p in model.encoder.stack.named_parameters():
        unfrozen_from = 4 if name.startswith("embedding") else 3 - int(name.split(".")[1])
        assert torch.equal(p, pretrained[f"stack.{name}"]) == (best < unfrozen_from), (name, best)
    assert export_onnx(clf).is_file()  # checked against PyTorch on the way, the head's batch norm included
    with pytest.raises(UserError, match="language model's LSTM stack.*ONNX"):
        export_hf(clf)


@pytest.mark.parametrize("name", sorted(LM_PRESETS))
def test_every_lm_preset_parses_builds_and_yields_to_later_flags(name):
    args = cli._parse(cli.LMTrainArgs, expand(["--preset", name, "--epochs", "7"], LM_PRESETS), "rnnlab lm train")
    model = LanguageModel(args.run.vocab_size, **dataclasses.asdict(args.run.net))
    assert args.run.epochs == 7 and model.decoder.out_features == args.run.vocab_size
