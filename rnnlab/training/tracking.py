"""Experiment trackers behind `--report-to`: one small interface, one adapter per backend.

A tracker receives exactly what the run folder records: the config, each metrics.jsonl row, a step loss every
`--log-every` steps and the final results. Each backend is an optional extra, imported only when chosen, and only
rank 0 reports under torchrun.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from rnnlab.errors import UserError

TENSORBOARD_DIR = "tensorboard"
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlruns"
RUN_TAG = "rnnlab.run_dir"
"""MLflow tag naming the run folder, so that a resumed run reports into the MLflow run it started."""

# The modules each backend needs (MLflow's SQLite store needs SQLAlchemy and Alembic besides mlflow-skinny).
_NEEDS = {"tensorboard": ("tensorboard",), "mlflow": ("mlflow", "sqlalchemy", "alembic")}


class Tracker(ABC):
    """Where a run reports besides its own folder; a context manager that closes it, marking a failed run."""

    reports = True
    """False for `NoTracker`: the training loop then skips computing step losses."""

    @abstractmethod
    def log_params(self, config: dict[str, Any]) -> None:
        """The run's config (`RunConfig.to_dict()`, nested), as hyperparameters."""

    @abstractmethod
    def log_metrics(self, row: dict[str, Any], step: int) -> None:
        """The numbers of one row (a metrics.jsonl row, or {"step_loss": …}) at optimizer step `step`."""

    @abstractmethod
    def log_results(self, results: dict[str, Any]) -> None:
        """The final results (results.json)."""

    @abstractmethod
    def close(self, failed: bool = False) -> None: ...

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(failed=kind is not None)


class NoTracker(Tracker):
    """`--report-to none`, and every rank but 0."""

    reports = False

    def log_params(self, config: dict[str, Any]) -> None:
        pass

    def log_metrics(self, row: dict[str, Any], step: int) -> None:
        pass

    def log_results(self, results: dict[str, Any]) -> None:
        pass

    def close(self, failed: bool = False) -> None:
        pass


def require(report_to: str) -> None:
    """Refuse a backend whose packages are missing, in one line, before any work is done."""
    missing = [m for m in _NEEDS.get(report_to, ()) if _find(m) is None]
    if missing:
        raise UserError(f"--report-to {report_to} needs the {missing[0]} package: pip install 'rnnlab[{report_to}]'")


def _find(module: str):
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a broken install, or a module set to None in sys.modules
        return None


def open_tracker(report_to: str, run: Path, *, enabled: bool = True, resume: bool = False) -> Tracker:
    """The tracker `--report-to` names for the run folder `run` (`NoTracker` where `enabled` is False: other ranks)."""
    require(report_to)
    if report_to == "none" or not enabled:
        return NoTracker()
    if report_to == "tensorboard":
        return TensorBoardTracker(run, resume=resume)
    return MlflowTracker(run, resume=resume)


def numbers(row: dict[str, Any]) -> dict[str, float]:
    """The int and float entries of `row` (booleans, strings, lists and None are not metrics)."""
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1e-3}} → {"train.lr": 1e-3}: hyperparameter names as both backends list them."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _code_block(value: Any) -> str:
    """JSON as a Markdown code block, which TensorBoard's text tab shows verbatim."""
    return "    " + json.dumps(value, indent=2).replace("\n", "\n    ")


class TensorBoardTracker(Tracker):
    """Event files in RUN/tensorboard/: scalars named as in metrics.jsonl, the config as text and as hparams."""

    def __init__(self, run: Path, *, resume: bool = False) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder, self.resume, self.writer_class = run / TENSORBOARD_DIR, resume, SummaryWriter
        if not resume:  # a new run starts clean: runs.claim removes only the files of its own contract
            shutil.rmtree(self.folder, ignore_errors=True)
        self.writer = None
        self.config: dict[str, Any] = {}
        self.step = 0

    def _writer(self, step: int):
        """Opened at the first report: a resumed run then hides what it reported past its checkpoint before it
        stopped (purge_step), as it is about to report those steps again."""
        if self.writer is None:
            self.writer = self.writer_class(log_dir=str(self.folder), purge_step=step if self.resume else None)
            if not self.resume:
                self.writer.add_text("config", _code_block(self.config))
        return self.writer

    def log_params(self, config: dict[str, Any]) -> None:
        self.config = config

    def log_metrics(self, row: dict[str, Any], step: int) -> None:
        writer = self._writer(step)
        for key, value in numbers(row).items():
            if key != "step":
                writer.add_scalar(key, value, step)
        self.step = step

    def log_results(self, results: dict[str, Any]) -> None:
        writer = self._writer(self.step)
        writer.add_text("results", _code_block(results), self.step)
        # The hparams plugin takes numbers, strings and booleans; run_name "." writes its session into this run's
        # own folder rather than a timestamped one below it.
        hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flatten(self.config).items()}
        writer.add_hparams(hparams, numbers(results), run_name=".", global_step=self.step)

    def close(self, failed: bool = False) -> None:
        if self.writer is not None:
            self.writer.close()


class MlflowTracker(Tracker):
    """One MLflow run in RUN/mlflow.db (artifacts in RUN/mlruns/), or in $MLFLOW_TRACKING_URI's store when set;
    the experiment is $MLFLOW_EXPERIMENT_NAME or `rnnlab`. A resumed run reports into the MLflow run it started."""

    def __init__(self, run: Path, *, resume: bool = False) -> None:
        from mlflow.tracking import MlflowClient

        folder = run.resolve()
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        self.client = MlflowClient(tracking_uri=uri or f"sqlite:///{folder / MLFLOW_DB}")
        experiment_id = self._experiment(None if uri else (folder / MLFLOW_ARTIFACTS).as_uri())
        self.logged: dict[str, int] = {}  # the last step of each metric reported before a resume
        self.run_id = (resume and self._reopen(experiment_id, folder)) or self.client.create_run(
            experiment_id, run_name=run.name, tags={RUN_TAG: str(folder)}
        ).info.run_id
        self.step = 0

    def _reopen(self, experiment_id: str, folder: Path) -> str | None:
        """The MLflow run this run folder started, marked running again; None if there is none."""
        found = self.client.search_runs([experiment_id], f"tags.`{RUN_TAG}` = '{folder}'", max_results=1,
                                        order_by=["attributes.start_time DESC"])  # fmt: skip
        if not found:
            return None
        run_id = found[0].info.run_id
        self.client.update_run(run_id, status="RUNNING")
        history = self.client.get_metric_history
        self.logged = {key: max(m.step for m in history(run_id, key)) for key in found[0].data.metrics}
        return run_id

    def _experiment(self, artifacts: str | None) -> str:
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "rnnlab")
        experiment = self.client.get_experiment_by_name(name)
        return experiment.experiment_id if experiment else self.client.create_experiment(name, artifact_location=artifacts)

    def log_params(self, config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)) for k, v in flatten(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def log_metrics(self, row: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        # Steps trained again after a resume were reported before it stopped: each is kept once.
        metrics = [Metric(k, v, now, step) for k, v in numbers(row).items() if k != "step" and step > self.logged.get(k, -1)]
        self.client.log_batch(self.run_id, metrics=metrics)
        self.step = step

    def log_results(self, results: dict[str, Any]) -> None:
        self.log_metrics(numbers(results), self.step)
        self.client.log_dict(self.run_id, results, "results.json")

    def close(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")
