"""The CLI surface through the installed console script: every --help, and the flags a user carries over."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rnnlab.cli import COMMANDS

LEGACY = Path(__file__).parent / "resources" / "legacy"
RUN = LEGACY / "glove-frozen-gru"  # a tiny finished run


def rnnlab(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("rnnlab")
    assert exe, "the rnnlab console script is not installed (pip install -e .)"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([exe, *args], input=stdin, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [*COMMANDS, "demo char", "demo memory", "demo gradients", "demo gates"])
def test_every_command_has_help(command):
    done = rnnlab(*command.split(), "--help")
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower() and "--" in done.stdout


def test_predict_accepts_no_progress_as_train_does(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("a wonderful moving film\na dull boring mess\n")
    done = rnnlab("predict", str(RUN), "--file", str(texts), "--no-progress", "--jsonl", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 2 and set(rows[0]["probs"]) == {"neg", "pos"}


def test_compare_refuses_run_dir_in_one_line(tmp_path):
    done = rnnlab("compare", "--run-dir", str(tmp_path / "x"), "--grid", str(tmp_path / "g"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--run-dir" in done.stderr and "--grid" in done.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "g").exists()


def test_evaluate_reads_a_file_with_other_column_names(tmp_path):
    rows = list(csv.reader((LEGACY / "reviews.csv").open(encoding="utf-8")))[1:]
    data = tmp_path / "other.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("review", "sentiment"), *rows])
    done = rnnlab("evaluate", str(RUN), "--data", str(data), "--text-column", "review", "--label-column", "sentiment",
                  "--device", "cpu")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["examples"] == len(rows) and 0 <= result["accuracy"] <= 1


def test_evaluate_names_the_spreadsheet_row_of_an_unknown_label(tmp_path):
    data = tmp_path / "bad.csv"
    data.write_text("text,label\na fine film,pos\na film,maybe\n")
    done = rnnlab("evaluate", str(RUN), "--data", str(data), "--device", "cpu")
    assert done.returncode == 2 and "row 3" in done.stderr and "'maybe'" in done.stderr


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--encoder", "scratch", "--head", "textcnn", "--impl", "scratch"], "--head textcnn has no recurrent cells"),
        (["--encoder", "scratch", "--no-finetune"], "--no-finetune would leave them random"),
    ],
)
def test_options_that_clash_are_refused_in_one_line_before_any_work(tmp_path, flags, words):
    done = rnnlab("train", "--data", str(tmp_path / "never-read.csv"), *flags, "--run-dir", str(tmp_path / "run"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and words in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()


def test_dry_run_trains_one_step_and_finishes_the_run(tmp_path):
    from conftest import write_data

    data, glove = write_data(tmp_path)
    run = tmp_path / "run"
    done = rnnlab("train", "--data", str(data), "--encoder", str(glove), "--head", "gru", "--hidden-size", "8",
                  "--dry-run", "--no-progress", "--no-bf16", "--run-dir", str(run))  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["step"] == 1 and json.loads((run / "results.json").read_text())["finished"]
