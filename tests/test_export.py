"""ONNX export end to end on tiny runs trained here (scratch encoder, 60 texts, one epoch, seconds)."""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from rnnlab import runs  # noqa: E402
from rnnlab.cli import main  # noqa: E402
from rnnlab.config import DataConfig, EncoderConfig, HeadConfig, RunConfig, TrainConfig  # noqa: E402
from rnnlab.serve.onnx import _batch, export_onnx  # noqa: E402
from rnnlab.serve.onnx_engine import INT8_NAME, ONNX_NAME, OnnxPredictor  # noqa: E402
from rnnlab.serve.predict import Predictor  # noqa: E402
from rnnlab.subword import SubwordTokenizer  # noqa: E402

GOOD = "great wonderful superb moving brilliant fine".split()
BAD = "awful boring dull terrible poor weak".split()
FILLER = "the film plot actor scene story and it was a with".split()
# Different lengths and a different batch size than the export example, so a baked-in shape shows.
PROBES = ["great film", "an awful , boring and dull story with a weak plot that went on and on and on",
          "superb", "it was fine", "the scene was terrible", "brilliant moving story and a fine actor"]  # fmt: skip


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    rng = random.Random(0)
    rows = []
    for i in range(60):
        words, label = (GOOD, "pos") if i % 2 else (BAD, "neg")
        text = " ".join(rng.choice(words + FILLER) for _ in range(rng.randint(3, 25)))
        rows.append({"text": text, "label": label})
    path = tmp_path_factory.mktemp("data") / "tiny.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _train(data_file, run_dir, head: str, impl: str = "torch", encoder: EncoderConfig | None = None):
    from rnnlab.training.fit import fit

    cfg = RunConfig(
        dataset=DataConfig(data=str(data_file)),
        encoder=dataclasses.replace(encoder or EncoderConfig(encoder="scratch", embedding_dim=12, vocab_size=120), max_length=32),
        model=HeadConfig(head=head, hidden_size=8, impl=impl),
        train=TrainConfig(epochs=1, batch_size=8, lr=1e-2, device="cpu", bf16=False, progress=False),
        run_dir=str(run_dir),
    )
    fit(cfg)
    return run_dir


@pytest.fixture(scope="module")
def bilstm_run(data_file, tmp_path_factory):
    """BiLSTM on from-scratch cells: the export must swap in fused cells and keep the weights."""
    run = _train(data_file, tmp_path_factory.mktemp("runs") / "bilstm", "bilstm", impl="scratch")
    export_onnx(run, quantize=True)
    return run


def _logits(run, quantized: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(onnxruntime logits, PyTorch fp32 logits) on PROBES."""
    predictor = Predictor.load(run, device="cpu", bf16=False)
    session = OnnxPredictor(run, quantized=quantized).session
    ids, mask = _batch(predictor, PROBES)
    (onnx_logits,) = session.run(None, {"ids": ids.numpy(), "mask": mask.numpy()})
    with torch.no_grad():
        torch_logits = predictor.model(ids, mask.bool()).numpy()
    return onnx_logits, torch_logits


def test_recurrent_scratch_cells_export_matches_pytorch(bilstm_run):
    assert runs.read_config(bilstm_run).model.impl == "scratch"
    onnx_logits, torch_logits = _logits(bilstm_run)
    assert onnx_logits.shape == (len(PROBES), 2)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)


@pytest.mark.parametrize("head", ["transformer", "gru", "textcnn", "fnn"])
def test_other_heads_export_matches_pytorch(data_file, tmp_path, head):
    run = _train(data_file, tmp_path / head, head)
    assert export_onnx(run) == run / ONNX_NAME
    onnx_logits, torch_logits = _logits(run)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)


@pytest.fixture(scope="module")
def bert_run(data_file, tmp_path_factory, tiny_bert):
    encoder = EncoderConfig(encoder=str(tiny_bert), finetune=True)
    run = _train(data_file, tmp_path_factory.mktemp("runs") / "bert", "bilstm", encoder=encoder)
    export_onnx(run, quantize=True)
    return run


def test_bert_encoder_exports_with_fused_attention_and_matches_pytorch(bert_run):
    import onnx

    run = bert_run
    ops = {node.op_type for node in onnx.load(str(run / ONNX_NAME)).graph.node}
    assert {"Attention", "SkipLayerNormalization"} <= ops  # onnxruntime's fused transformer ops
    onnx_logits, torch_logits = _logits(run)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)
    int8_logits, _ = _logits(run, quantized=True)
    np.testing.assert_allclose(int8_logits, torch_logits, atol=0.1)


def test_onnx_engine_tokenizes_with_the_saved_tokenizer_and_no_torch(bert_run):
    engine = OnnxPredictor(bert_run)
    assert isinstance(engine.encoder, SubwordTokenizer)
    reference = Predictor.load(bert_run, device="cpu", bf16=False)
    assert engine.encoder.tokenize(PROBES) == reference.encoder.tokenize(PROBES)
    np.testing.assert_allclose(engine.predict_proba(PROBES), reference.predict_proba(PROBES), atol=1e-4)
    probe = ("import sys, rnnlab; p = rnnlab.load(sys.argv[1], engine='onnx'); print(p.predict(['great film'])[0]['label']);"
             "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe, str(bert_run)], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [reference.predict(["great film"])[0]["label"], "[]"]


def test_int8_graph_keeps_most_predictions(bilstm_run):
    assert (bilstm_run / INT8_NAME).is_file()
    int8_logits, torch_logits = _logits(bilstm_run, quantized=True)
    agree = (int8_logits.argmax(1) == torch_logits.argmax(1)).mean()
    assert agree >= 0.8, agree


def test_predict_cli_onnx_engine_matches_torch_labels(bilstm_run, capsys, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(PROBES) + "\n")

    def labels(*extra: str) -> list[str]:
        assert main(["predict", str(bilstm_run), "--file", str(texts), "--device", "cpu", *extra]) == 0
        return [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]

    torch_labels = labels()
    assert len(torch_labels) == len(PROBES)
    assert labels("--engine", "onnx") == torch_labels


def test_export_of_unfinished_run_is_one_line_exit_2(bilstm_run, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / runs.CONFIG).write_text((bilstm_run / runs.CONFIG).read_text())
    assert main(["export", str(unfinished), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has not finished" in err
