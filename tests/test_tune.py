"""`rnnlab tune` on tiny data: it prunes, best.json reproduces the best trial, the test split is read once at the end,
a killed study resumes without repeating a trial, and a bad space is one line."""

from __future__ import annotations

import csv
import json
import signal
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from conftest import rnnlab, train_args, write_data, write_reviews

from rnnlab import cli, runs
from rnnlab.config import DataConfig
from rnnlab.data.split import prepare
from rnnlab.training import fit as fit_module

TIMING = {"seconds", "train_seconds", "reviews_per_s", "peak_memory_mb"}
# One learning rate that learns and one that cannot: the second falls below the median and is pruned.
SPACE = {"lr": {"choices": [0.05, 1e-6]}, "hidden_size": {"low": 4, "high": 12}}


def tune_args(data: Path, glove: Path, study: Path, space: Path, trials: int) -> list[str]:
    base = train_args(data, glove, study)[1:-2]  # the tiny training options, without `train` and --run-dir
    # --finetune: the tiny word vectors are random, so the trials must train them (tune defaults to frozen encoders)
    return ["tune", *base, "--finetune", "--epochs", "3", "--study", str(study), "--space", str(space), "--trials", str(trials)]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("tune")
    _, glove = write_data(folder)
    data = folder / "reviews200.csv"  # enough to learn the cue words in 3 epochs at the higher rate
    with data.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *write_reviews(200, seed=3)])
    space = folder / "space.json"
    space.write_text(json.dumps(SPACE))
    return data, glove, space


@pytest.fixture(scope="module")
def tuned(tiny) -> tuple[Path, list[bool]]:
    """An 8-trial study, with every evaluation recorded: True where it ran on exactly the test split."""
    data, glove, space = tiny
    test_idx = prepare(DataConfig(data=str(data))).compact().split["test"]
    on_test: list[bool] = []
    evaluate = fit_module.evaluate

    def spy(model, inputs, indices, *args):
        on_test.append(np.array_equal(np.sort(np.asarray(indices)), test_idx))
        return evaluate(model, inputs, indices, *args)

    study = space.parent / "study"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fit_module, "evaluate", spy)
        assert cli.main(tune_args(data, glove, study, space, trials=8)) == 0
    return study, on_test


def test_tune_prunes_and_best_json_reproduces_the_best_trial(tuned, tmp_path):
    study, _ = tuned
    states = [row.split(",")[1] for row in (study / "trials.csv").read_text().splitlines()[1:]]
    assert len(states) == 8 and "PRUNED" in states and "COMPLETE" in states
    assert all((study / name).stat().st_size > 0 for name in ("trials.md", "history.png", "importance.png"))
    summary = json.loads((study / "summary.json").read_text())
    assert summary["params"]["lr"] == 0.05  # the rate that learns wins

    again = tmp_path / "again"
    assert cli.main(["train", "--config", str(study / "best.json"), "--run-dir", str(again)]) == 0
    best = Path(summary["final_run"])
    strip = lambda path: {k: v for k, v in json.loads(path.read_text()).items() if k not in TIMING}  # noqa: E731
    assert strip(again / runs.RESULTS) == strip(best / runs.RESULTS)
    assert strip(again / runs.RESULTS)["test_accuracy"] == summary["test_accuracy"]


def test_the_test_split_is_read_once_by_the_final_run_alone(tuned):
    study, on_test = tuned
    trial = json.loads(next((study / "trials").glob(f"*/{runs.RESULTS}")).read_text())
    assert trial["test_accuracy"] is None and not list((study / "trials").rglob(runs.PREDICTIONS))
    assert len(on_test) > 8  # every trial validated at least once
    assert on_test.count(True) == 1 and on_test[-1]  # the final run's test evaluation, and nothing before it


def test_a_killed_tune_resumes_without_repeating_finished_trials(tiny, tmp_path):
    data, glove, space = tiny
    study = tmp_path / "study"
    assert cli.main(tune_args(data, glove, study, space, trials=1)) == 0
    before = {p: p.stat().st_mtime_ns for p in (study / "trials").rglob("*") if p.is_file()}

    # 144 training texts in batches of 8: step 5 is inside the first epoch of trial 1
    killed = rnnlab(tune_args(data, glove, study, space, trials=2), kill_at=5)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert cli.main(tune_args(data, glove, study, space, trials=2)) == 0

    trials = optuna.load_study(study_name="rnnlab-tune", storage=f"sqlite:///{study / 'study.db'}").trials
    states = [t.state.name for t in trials]
    assert states[:2] == ["COMPLETE", "FAIL"] and states[2] in ("COMPLETE", "PRUNED") and len(states) == 3
    assert trials[2].params == trials[1].params and trials[2].user_attrs["retry_of"] == 1  # the killed trial, again
    assert before and all(p.stat().st_mtime_ns == t for p, t in before.items())  # trial 0 was not trained again


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"learning_rate": {"low": 1e-4, "high": 1e-2}}, "unknown parameter 'learning_rate'"),
        ({"lr": {"low": 1e-2, "high": 1e-4}}, "lr: empty range"),
        ({"pooling": {"choices": []}}, "pooling: empty range"),
        ({"dropout": {"low": 0.1, "high": 1.5}}, "--dropout must be in [0, 1)"),
        ({"lr": {"low": 0, "high": 1e-2, "log": True}}, "log range needs low > 0"),
    ],
)
def test_a_bad_space_is_one_line_and_exit_2(tiny, tmp_path, capsys, space, message):
    data, glove, _ = tiny
    file = tmp_path / "space.json"
    file.write_text(json.dumps(space))
    assert cli.main(tune_args(data, glove, tmp_path / "study", file, trials=2)) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "study").exists()


def test_without_optuna_tune_says_how_to_install_it(tiny, tmp_path, capsys, monkeypatch):
    data, glove, space = tiny
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    assert cli.main(tune_args(data, glove, tmp_path / "study", space, trials=2)) == 2
    assert "pip install 'rnnlab[tune]'" in one_error_line(capsys)
