"""Exact resume: a run killed with SIGKILL at any step and resumed ends exactly like an uninterrupted one.

Runs are subprocesses (`python -m rnnlab train`) on a tiny CSV and a tiny GloVe file; the kill comes from the
RNNLAB_TEST_KILL_AT_STEP hook in rnnlab.training.loop, so the step is deterministic.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from conftest import rnnlab, train_args, write_data
from safetensors.torch import load_file

from rnnlab import cli, runs
from rnnlab.runs import atomic_write_bytes

TIMING = {"seconds", "train_seconds", "reviews_per_s", "peak_memory_mb"}
# 57 training texts in batches of 8: 8 steps per epoch, 16 in all; checkpoints at steps 3, 6, 9, 12, 15 and epoch ends.
KILL_STEPS = (4, 8, 13)  # mid-epoch, the last step of epoch 1 (before validation), and inside epoch 2


def outcome(run: Path) -> tuple[list[dict], dict, dict[str, torch.Tensor], str]:
    """metrics.jsonl and results.json without timing fields, the best weights, and the predictions."""
    metrics = [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in (run / runs.METRICS).open()]
    results = {k: v for k, v in json.loads((run / runs.RESULTS).read_text()).items() if k not in TIMING}
    return metrics, results, load_file(run / runs.WEIGHTS), (run / runs.PREDICTIONS).read_text()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("resume")
    data, glove = write_data(folder)
    done = rnnlab(train_args(data, glove, folder / "uninterrupted"))
    assert done.returncode == 0, done.stderr
    return data, glove, folder / "uninterrupted"


@pytest.mark.parametrize("kill_at", KILL_STEPS)
def test_killed_run_resumes_exactly(reference, tmp_path, kill_at, capsys):
    data, glove, uninterrupted = reference
    run = tmp_path / "run"
    killed = rnnlab(train_args(data, glove, run), kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (run / runs.CHECKPOINT).is_file() and not (run / runs.RESULTS).exists()
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave no partial files

    assert cli.main(train_args(data, glove, run)) == 2  # a plain restart refuses to clobber the unfinished run
    assert "--resume" in one_error_line(capsys)

    resumed = rnnlab(["train", "--resume", str(run)])
    assert resumed.returncode == 0, resumed.stderr
    metrics, results, weights, predictions = outcome(run)
    ref_metrics, ref_results, ref_weights, ref_predictions = outcome(uninterrupted)
    assert metrics == ref_metrics and results == ref_results and predictions == ref_predictions
    assert weights.keys() == ref_weights.keys()
    for name in weights:
        torch.testing.assert_close(weights[name], ref_weights[name], rtol=0, atol=1e-6)
    assert not (run / runs.CHECKPOINT).exists()  # a finished run keeps no resumable state


def test_scratch_resume_keeps_the_runs_vocabulary(tmp_path):
    """The scratch tokenizer is trained once per run: a resume must load it, not train a new (maybe different) one."""
    data, _ = write_data(tmp_path)
    run = tmp_path / "run"
    assert rnnlab(train_args(data, "scratch", run), kill_at=5).returncode == -signal.SIGKILL
    tokenizer = (run / "tokenizer.json").read_bytes()
    resumed = rnnlab(["train", "--resume", str(run)])
    assert resumed.returncode == 0, resumed.stderr
    assert (run / "tokenizer.json").read_bytes() == tokenizer and runs.is_finished(run)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_finished_run_is_never_replaced_or_resumed(reference, capsys):
    data, glove, finished = reference
    before = (finished / runs.RESULTS).read_text(), (finished / runs.WEIGHTS).read_bytes()
    assert cli.main(["train", "--resume", str(finished)]) == 2
    assert "already finished" in one_error_line(capsys)
    assert cli.main(train_args(data, glove, finished)) == 2
    assert "--overwrite" in one_error_line(capsys)
    assert ((finished / runs.RESULTS).read_text(), (finished / runs.WEIGHTS).read_bytes()) == before


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["train", "--resume", str(tmp_path / "missing")]) == 2
    assert "not a run folder" in one_error_line(capsys)
    (tmp_path / "fresh").mkdir()
    runs.write_config(tmp_path / "fresh", cli.RunConfig())
    assert cli.main(["train", "--resume", str(tmp_path / "fresh")]) == 2
    assert "nothing to resume" in one_error_line(capsys)


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.safetensors"
    atomic_write_bytes(path, b"old")

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new and longer")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [path.name]
