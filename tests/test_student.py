"""A student worth choosing: several teachers averaged, a pruned word-vector table, a deterministic scratch vocabulary
and a fast, cached, seeded transfer set."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import CUES, FILLER, rnnlab, write_data, write_reviews

from rnnlab import runs
from rnnlab.cli import main
from rnnlab.config import DistillConfig
from rnnlab.encoders.words import UNK, VOCABULARY, WordVectorEncoder
from rnnlab.model import load_trained
from rnnlab.training import distill
from rnnlab.training.distill import augment, ensemble_logits, glove_neighbours


def _data(accurate_run) -> str:
    return json.loads((accurate_run / runs.CONFIG).read_text())["dataset"]["data"]


@pytest.fixture(scope="module")
def other_split_run(accurate_run, tmp_path_factory):
    """A second finished teacher on the accurate run's data, but split with another seed."""
    run = tmp_path_factory.mktemp("other") / "run"
    assert main(["train", "--data", _data(accurate_run), "--encoder", "scratch", "--embedding-dim", "8", "--vocab-size",
                 "100", "--head", "gru", "--hidden-size", "8", "--max-length", "16", "--epochs", "1", "--no-progress",
                 "--no-bf16", "--split-seed", "3", "--run-dir", str(run)]) == 0  # fmt: skip
    return run


def _by_hand(run, texts: list[str]) -> np.ndarray:
    model, _ = load_trained(run)
    with torch.no_grad():
        rows = [model(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.bool)) for ids in model.encoder.tokenize(texts)]
    return torch.cat(rows).numpy()


def test_teacher_logits_are_the_mean_of_each_teacher_s(accurate_run, other_split_run):
    texts = ["the movie was great 1", "a dull boring plot 2", "the story and the actor were superb 3", "awful"]
    one, two = _by_hand(accurate_run, texts), _by_hand(other_split_run, texts)
    mean = ensemble_logits([str(accurate_run), str(other_split_run)], texts, device="cpu")
    assert np.abs(one - two).max() > 0.1  # the two teachers disagree, so the mean is neither of them
    # bf16 autocast on CPUs that have it: a few hundredths on logits of a few units.
    np.testing.assert_allclose(mean, (one + two) / 2, atol=0.05)


def test_an_interrupted_labelling_resumes_where_it_stopped_and_gives_the_same_logits(
    accurate_run, other_split_run, tmp_path, monkeypatch
):
    teachers, texts = [str(accurate_run), str(other_split_run)], [f"the movie was great {i}" for i in range(5)]
    monkeypatch.setattr(distill, "LABEL_CHUNK", 2)  # 3 chunks per teacher
    whole = ensemble_logits(teachers, texts, device="cpu")
    calls, real, cut = [], distill._logits, [True]

    def counted(model, inputs, rows, prec, teacher):
        if cut[0] and len(calls) == 4:  # the second teacher's first chunk is done: the power goes off
            raise OSError("power cut")
        calls.append((teacher, rows.start))
        return real(model, inputs, rows, prec, teacher)

    monkeypatch.setattr(distill, "_logits", counted)
    partial = (tmp_path / distill.PARTIAL_FILE, "key")
    with pytest.raises(OSError, match="power cut"):
        ensemble_logits(teachers, texts, device="cpu", partial=partial)
    calls.clear()
    cut[0] = False
    resumed = ensemble_logits(teachers, texts, device="cpu", partial=partial)
    assert calls == [(teachers[1], 2), (teachers[1], 4)]  # nothing labelled twice
    np.testing.assert_array_equal(resumed, whole)
    calls.clear()
    ensemble_logits(teachers, texts, device="cpu", partial=(partial[0], "another transfer set"))
    assert len(calls) == 6  # another key starts over


def test_a_teacher_of_another_split_among_several_is_refused_before_any_work(accurate_run, other_split_run, tmp_path):
    run = tmp_path / "student"
    done = rnnlab(["train", "--data", _data(accurate_run), "--encoder", "scratch", "--no-progress", "--teacher",
                   str(accurate_run), str(other_split_run), "--augment", "16", "--run-dir", str(run)])  # fmt: skip
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert str(other_split_run) in done.stderr and "split hash differs" in done.stderr
    assert not run.exists()


def test_at_most_16_augmented_copies(accurate_run, tmp_path, capsys):
    assert main(["train", "--teacher", str(accurate_run), "--augment", "17", "--run-dir", str(tmp_path / "run")]) == 2
    assert "--augment in [0, 16]" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_pruning_keeps_every_training_word_and_maps_the_rest_to_unknown(tmp_path):
    _, glove = write_data(tmp_path)
    full = WordVectorEncoder(str(glove), max_length=32, truncation="head")
    pruned = WordVectorEncoder(str(glove), max_length=32, truncation="head")
    texts = ["the movie was good", "a boring plot, and the actor"]
    pruned.prune(texts)
    met = {"the", "movie", "was", "good", "a", "boring", "plot", "and", "actor"}  # "," is not in this GloVe
    assert set(pruned.vocab) == met and pruned.table.shape == (len(met) + 2, 6)
    for word in met:  # same vectors under new ids
        assert torch.equal(pruned.table[pruned.vocab[word]], full.table[full.vocab[word]])
    assert torch.equal(pruned.table[UNK], full.table[UNK])  # the unknown vector is the whole table's mean, as before
    unseen = [w for w in [*FILLER, *CUES["pos"], *CUES["neg"]] if w not in met]
    assert unseen and pruned.tokenize([" ".join(unseen)]) == [[UNK] * len(unseen)]
    assert full.tokenize([" ".join(unseen)])[0].count(UNK) == 0
    rare = WordVectorEncoder(str(glove), max_length=32, truncation="head")
    rare.prune(texts, min_count=2)
    assert set(rare.vocab) == {"the"}


@pytest.mark.parametrize(("flags", "pruned"), [((), True), (("--prune-vocab", "0"), False), (("--no-finetune",), False)])
def test_a_fine_tuned_table_is_pruned_unless_told_otherwise(tmp_path, flags, pruned):
    data, glove = write_data(tmp_path)
    with glove.open("a") as f:
        f.write("unmet 1 2 3 4 5 6\n")  # a word no review holds
    full = WordVectorEncoder(str(glove), max_length=16, truncation="head").table.shape[0]
    _train(data, glove, tmp_path / "run", "--epochs", "1", *flags)
    spec = json.loads((tmp_path / "run" / runs.ENCODER).read_text())
    assert spec["pruned"] is pruned and (spec["vocab_size"] < full) is pruned


def _train(data, glove, run, *extra: str) -> None:
    assert main(["train", "--data", str(data), "--encoder", str(glove), "--head", "bilstm", "--hidden-size", "8",
                 "--max-length", "16", "--epochs", "2", "--batch-size", "16", "--lr", "0.01", "--no-progress",
                 "--no-bf16", "--run-dir", str(run), *extra]) == 0  # fmt: skip


def test_prune_vocab_is_for_word_vectors_only(tmp_path, capsys):
    data, _ = write_data(tmp_path)
    args = ["train", "--data", str(data), "--encoder", "scratch", "--prune-vocab", "1", "--run-dir", str(tmp_path / "run")]
    assert main(args) == 2
    assert "--prune-vocab prunes a word-vector table" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_a_pruned_student_predicts_as_before_on_texts_of_its_vocabulary(tmp_path):
    """Two runs alike but for --prune-vocab: trained rows get the same updates whatever rows sit beside them."""
    _, glove = write_data(tmp_path)
    data = tmp_path / "train.csv"
    rows = [(text.replace("superb", "fine"), label) for text, label in write_reviews(200, seed=5)]  # no "superb"
    with data.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    _train(data, glove, tmp_path / "full", "--prune-vocab", "0")
    _train(data, glove, tmp_path / "pruned", "--prune-vocab", "1")
    words = json.loads((tmp_path / "pruned" / VOCABULARY).read_text())
    assert "superb" not in words and {"fine", "movie", "boring"} <= set(words)
    full, _ = load_trained(tmp_path / "full")
    pruned, _ = load_trained(tmp_path / "pruned")
    assert pruned.encoder.table.shape[0] == len(words) + 2 < full.encoder.table.shape[0]
    known = ["the movie was fine", "a boring plot and the actor", "it was a lovely story"]
    with torch.no_grad():
        for text in known:
            a, b = (torch.tensor(m.encoder.tokenize([text])) for m in (full, pruned))
            mask = torch.ones_like(a, dtype=torch.bool)
            assert torch.allclose(full(a, mask), pruned(b, mask), atol=1e-6)
    assert pruned.encoder.tokenize(["superb"]) == [[UNK]] != full.encoder.tokenize(["superb"])
    weights = lambda run: (run / runs.WEIGHTS).stat().st_size  # noqa: E731
    assert weights(tmp_path / "pruned") < weights(tmp_path / "full")


_TRAIN_VOCAB = """
import hashlib, sys
from rnnlab.data.readers import read_examples
from rnnlab.encoders.words import ScratchEncoder
texts = read_examples("imdb").texts[::50]
encoder = ScratchEncoder.train_on(texts, vocab_size=3000, embedding_dim=8, max_length=16, truncation="head")
print(hashlib.sha256(encoder.tokenizer.to_str().encode()).hexdigest())
"""


def test_the_scratch_vocabulary_is_the_same_in_two_runs():
    """Before the fix the trainer's hash-map order changed the vocabulary from one process to the next."""
    digests = {subprocess.run([sys.executable, "-c", _TRAIN_VOCAB], capture_output=True, text=True, check=True).stdout
               for _ in range(2)}  # fmt: skip
    assert len(digests) == 1 and len(digests.pop().strip()) == 64


def test_glove_augmentation_is_deterministic_per_seed_and_caches_the_neighbours(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path))
    texts = ["The acting was good, the plot boring.", "A terrible film", "What a wonderful story!"] * 5
    labels = np.array([1, 0, 1] * 5)
    cfg = DistillConfig(teacher=["t"], augment=16, swap_p=0.3, swap_with="glove")
    first, first_labels = augment(texts, labels, cfg, seed=0)
    cached = list((tmp_path / "neighbours").glob("*.npy"))
    assert len(cached) == 1 and cached[0].with_suffix(".json").is_file()
    stamp = cached[0].stat().st_mtime_ns
    again, _ = augment(texts, labels, cfg, seed=0)
    assert cached[0].stat().st_mtime_ns == stamp  # read, not recomputed
    assert first == again and first != augment(texts, labels, cfg, seed=1)[0]
    assert len(first) == 16 * len(texts) and first_labels.tolist() == labels.tolist() * 16
    words = {w.strip(",.!").lower() for t in texts for w in t.split()}
    fresh = glove_neighbours(words)  # the cached file's answer is the computed one
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "elsewhere"))
    assert glove_neighbours(words) == fresh and "awful" in fresh["terrible"]
