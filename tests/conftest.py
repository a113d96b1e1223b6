"""Shared tiny fixtures and helpers: tests import nothing from each other, only from here."""

from __future__ import annotations

import csv
import os
import random
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

LETTERS = list(string.ascii_lowercase)
CLS, SEP = 2, 3  # the tiny BERT's special-token ids


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A BERT folder as `save_pretrained` writes it: vocab 99, hidden 32, 2 layers."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *LETTERS, *("##" + c for c in LETTERS), *".,!?'"]
    vocab += [f"[unused{i}]" for i in range(99 - len(vocab))]
    tokenizer = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", CLS), ("[SEP]", SEP)]
    )
    specials = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=64, **specials).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    BertModel(config).save_pretrained(folder)
    return folder


CUES = {"pos": "good great fine lovely superb".split(), "neg": "bad awful poor boring dull".split()}
FILLER = "the movie was a film plot actor story and it".split()


def write_reviews(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` short reviews alternating neg/pos, each with one cue word among filler words and a unique number."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 12))] + [rng.choice(CUES[label])]
        rng.shuffle(words)
        rows.append((" ".join(words) + f" {i}", label))
    return rows


def write_data(folder: Path) -> tuple[Path, Path]:
    """80 short reviews (two classes, one cue word each) and a 6-dimensional GloVe file covering their words."""
    data = folder / "reviews.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *write_reviews(80)])
    vectors = np.random.default_rng(0).normal(size=(len(FILLER) + 10, 6))
    glove = folder / "glove.txt"
    words = [*FILLER, *CUES["pos"], *CUES["neg"]]
    glove.write_text("".join(w + " " + " ".join(f"{x:.4f}" for x in v) + "\n" for w, v in zip(words, vectors)))
    return data, glove


def train_args(data: Path, encoder: str | Path, run: Path) -> list[str]:
    return ["train", "--data", str(data), "--encoder", str(encoder), "--head", "gru", "--hidden-size", "8",
            "--embedding-dim", "8", "--vocab-size", "100", "--max-length", "16", "--epochs", "2", "--batch-size", "8",
            "--dropout", "0.3", "--checkpoint-every", "3", "--no-progress", "--no-bf16", "--run-dir", str(run)]  # fmt: skip


def rnnlab(args: list[str], kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("RNNLAB_TEST_KILL_AT_STEP", None)
    if kill_at is not None:
        env["RNNLAB_TEST_KILL_AT_STEP"] = str(kill_at)
    return subprocess.run([sys.executable, "-m", "rnnlab", *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def served_run(tmp_path_factory, tiny_bert) -> Path:
    """A finished tiny run (tiny BERT fine-tuned + GRU, 12 tokens kept, head + tail) for the server's tests."""
    from rnnlab.cli import main

    folder = tmp_path_factory.mktemp("served")
    data, _ = write_data(folder)
    run = folder / "run"
    assert main([*train_args(data, tiny_bert, run), "--max-length", "12"]) == 0
    return run


@pytest.fixture(scope="session")
def accurate_run(tmp_path_factory) -> Path:
    """A finished tiny run that has learnt its task (GloVe-6d + BiLSTM on 400 cue-word reviews): for analyses
    that need a model whose probabilities mean something."""
    from rnnlab.cli import main

    folder = tmp_path_factory.mktemp("accurate")
    _, glove = write_data(folder)
    data = folder / "train.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *write_reviews(400, seed=3)])
    run = folder / "run"
    args = ["train", "--data", str(data), "--encoder", str(glove), "--head", "bilstm", "--hidden-size", "16",
            "--max-length", "16", "--epochs", "6", "--batch-size", "16", "--lr", "0.01", "--no-progress", "--no-bf16",
            "--run-dir", str(run)]  # fmt: skip
    assert main(args) == 0
    return run


class ServerThread:
    """uvicorn serving `app` on a free loopback port in a thread, as `rnnlab serve` does in its process."""

    def __init__(self, app) -> None:
        import threading

        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        import time

        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True  # what uvicorn's SIGTERM handler sets
        self.thread.join(timeout=30)
