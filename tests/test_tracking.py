"""`--report-to`: TensorBoard and MLflow, read back with their own readers, hold exactly what metrics.jsonl and
results.json hold; a missing backend is refused in one line before any work is done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import train_args, write_data

from rnnlab import runs
from rnnlab.cli import main
from rnnlab.training import loop


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / runs.METRICS).read_text().splitlines()]


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of RUN/tensorboard/ as (step, value) pairs, read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def interrupt_once_at(monkeypatch, step: int) -> None:
    """Ctrl-C right after optimizer step `step` (through the loop's test hook), once: the resumed run goes on."""
    pressed = []

    def hook(at: int) -> None:
        if at == step and not pressed:
            pressed.append(at)
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "kill_hook_for_tests", hook)


def test_tensorboard_holds_the_metrics_rows_step_losses_and_results_once_after_a_resume(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    data, glove = write_data(tmp_path)
    run = tmp_path / "run"
    # One text per step and a report every step: each epoch's step losses then average to its train loss.
    args = [*train_args(data, glove, run), "--batch-size", "1", "--checkpoint-every", "1000", "--report-to", "tensorboard",
            "--log-every", "1"]  # fmt: skip
    interrupt_once_at(monkeypatch, 70)  # in epoch 2; the last checkpoint is epoch 1's end
    assert main(args) == 130
    assert main(["train", "--resume", str(run)]) == 0
    history, got = rows(run), scalars(run)
    assert len(history) == 2 and history[0]["step"] < 70
    for key in ("val_accuracy", "val_loss", "train_loss", "val_macro_f1", "lr"):
        assert got[key] == [(row["step"], pytest.approx(row[key], rel=1e-6)) for row in history], key
    steps = [step for step, _ in got["step_loss"]]
    assert steps == list(range(1, history[-1]["step"] + 1))  # steps trained twice show once
    start = 0
    for row in history:
        losses = [loss for step, loss in got["step_loss"] if start < step <= row["step"]]
        assert sum(losses) / len(losses) == pytest.approx(row["train_loss"], rel=1e-5)
        start = row["step"]
    results = json.loads((run / runs.RESULTS).read_text())
    assert got["test_accuracy"] == [(history[-1]["step"], pytest.approx(results["test_accuracy"], rel=1e-6))]
    assert got["best_val_accuracy"][0][1] == pytest.approx(results["best_val_accuracy"], rel=1e-6)


def mlflow_run(run: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rnnlab")
    found = client.search_runs([experiment.experiment_id])
    assert len(found) == 1  # a resumed run reports into the MLflow run it started
    return client, found[0]


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_mlflow_run_holds_the_config_metrics_rows_and_results_once_after_a_resume(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    data, glove = write_data(tmp_path)
    run = tmp_path / "run"
    interrupt_once_at(monkeypatch, 10)  # in epoch 2 (8 steps each), after the step-9 checkpoint
    assert main([*train_args(data, glove, run), "--report-to", "mlflow", "--log-every", "2"]) == 130
    assert mlflow_run(run)[1].info.status == "FAILED"
    assert main(["train", "--resume", str(run)]) == 0
    client, found = mlflow_run(run)
    assert found.info.status == "FINISHED" and found.info.run_name == "run"
    config = json.loads((run / runs.CONFIG).read_text())
    assert found.data.params["model.head"] == config["model"]["head"] == "gru"
    assert float(found.data.params["train.lr"]) == config["train"]["lr"]
    assert found.data.params["train.tracking.report_to"] == "mlflow"
    metrics = rows(run)
    for key in ("val_accuracy", "val_loss", "train_loss", "val_macro_f1", "lr", "epoch"):
        assert history(client, found.info.run_id, key) == [(row["step"], row[key]) for row in metrics], key
    steps = [step for step, _ in history(client, found.info.run_id, "step_loss")]
    assert steps == list(range(2, metrics[-1]["step"] + 1, 2))  # step 10, trained twice, is reported once
    results = json.loads((run / runs.RESULTS).read_text())
    for key in ("test_accuracy", "test_macro_f1", "test_loss", "best_epoch"):
        assert found.data.metrics[key] == results[key], key
    stored = next((run / "mlruns").glob("*/artifacts/results.json"))  # artifacts stay in the run folder
    assert json.loads(stored.read_text()) == results


def test_compare_reports_every_trained_row(tmp_path):
    pytest.importorskip("tensorboard")
    data, glove = write_data(tmp_path)
    grid = tmp_path / "grid"
    args = ["compare", "--data", str(data), "--encoders", str(glove), "--heads", "gru,fnn", "--seeds", "1", "--grid",
            str(grid), "--hidden-size", "8", "--max-length", "16", "--epochs", "2", "--batch-size", "8", "--no-baseline",
            "--no-progress", "--no-bf16", "--report-to", "tensorboard"]  # fmt: skip
    assert main(args) == 0
    cells = sorted(p.parent for p in grid.glob("*/config.json"))
    assert len(cells) == 2
    for cell in cells:
        got = scalars(cell)
        assert got["val_accuracy"] == [(row["step"], pytest.approx(row["val_accuracy"], rel=1e-6)) for row in rows(cell)]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_under_torchrun_rank_0_alone_reports(tmp_path):
    pytest.importorskip("tensorboard")
    data, glove = write_data(tmp_path)
    run = tmp_path / "run"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "rnnlab"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    args = [*train_args(data, glove, run), "--report-to", "tensorboard", "--log-every", "1"]
    done = subprocess.run([*launch, *args], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    got, history = scalars(run), rows(run)
    assert got["val_accuracy"] == [(row["step"], pytest.approx(row["val_accuracy"], rel=1e-6)) for row in history]
    assert [step for step, _ in got["step_loss"]] == list(range(1, history[-1]["step"] + 1))  # one report per step


@pytest.mark.parametrize("backend, module", [("tensorboard", "tensorboard"), ("mlflow", "mlflow"), ("mlflow", "sqlalchemy")])
@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_missing_backend_is_one_line_before_any_work(tmp_path, monkeypatch, capsys, backend, module, command):
    if module != backend:
        pytest.importorskip(backend)  # mlflow-skinny alone, without the SQLite store's packages
    monkeypatch.setitem(sys.modules, module, None)  # what `import module` then sees: not installed
    data, glove = write_data(tmp_path)
    out = tmp_path / "out"
    if command == "train":
        args = [*train_args(data, glove, out), "--report-to", backend]
    else:
        args = ["compare", "--data", str(data), "--encoders", str(glove), "--heads", "gru", "--grid", str(out),
                "--report-to", backend]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == f"rnnlab: error: --report-to {backend} needs the {module} package: pip install 'rnnlab[{backend}]'\n"
    assert not out.exists()


def test_the_default_reports_nowhere_and_log_every_is_checked(tmp_path, capsys):
    data, glove = write_data(tmp_path)
    run = tmp_path / "run"
    assert main([*train_args(data, glove, run), "--epochs", "1"]) == 0
    assert json.loads((run / runs.CONFIG).read_text())["train"]["tracking"] == {"report_to": "none", "log_every": 50}
    assert not (run / "tensorboard").exists() and not (run / "mlflow.db").exists()
    assert main([*train_args(data, glove, tmp_path / "other"), "--log-every", "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["rnnlab: error: --log-every must be at least 1, got 0"]
