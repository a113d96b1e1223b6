"""The run folder: one place per run for its config, split, metrics, weights, predictions and log.

Only rank 0 writes; every write is atomic, so a killed run leaves a folder that resumes or is
replaced cleanly, never one that breaks a later run.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rnnlab.config import RunConfig
from rnnlab.errors import UserError

CONFIG, SPLIT, LABELS, METRICS, RESULTS = "config.json", "split.json", "labels.json", "metrics.jsonl", "results.json"
WEIGHTS, CHECKPOINT, PREDICTIONS, LOG = "model.safetensors", "checkpoint.safetensors", "predictions.jsonl", "log.txt"
CURVES, CALIBRATION, ANALYSIS, CHECKS = "curves.png", "calibration.json", "analysis", "checks.json"
ENCODER, TOKENIZER = "encoder.json", "tokenizer.json"  # how to rebuild the encoder; a subword encoder's tokenizer


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def default_run_dir(cfg: RunConfig) -> Path:
    name = Path(cfg.encoder.encoder).name or "encoder"
    return Path("runs") / f"{name}-{cfg.model.head}-{time.strftime('%Y%m%d-%H%M%S')}"


def is_finished(path: Path) -> bool:
    try:
        return bool(json.loads((path / RESULTS).read_text()).get("finished"))
    except (OSError, ValueError):
        return False


def check_claim(path: Path, overwrite: bool, resume: bool, *, verb: str = "train") -> None:
    """Refuse to clobber finished or resumable work, or to resume what cannot be; changes nothing on disk.

    Called before any data is read, so a refused run costs nothing and leaves no trace.
    """
    if resume:
        if is_finished(path):
            raise UserError(f"{path}: the run has already finished; nothing to resume (see {path / RESULTS})")
        if not (path / CHECKPOINT).is_file():
            raise UserError(f"{path}: nothing to resume (no {CHECKPOINT}); start a new run instead")
        return
    if is_finished(path) and not overwrite:
        raise UserError(f"{path} holds a finished run: pass --overwrite to replace it, or choose another --run-dir")
    if (path / CHECKPOINT).exists() and not overwrite:
        raise UserError(f"{path} holds an unfinished run: continue it with `rnnlab {verb} --resume {path}`, or pass --overwrite")


def claim(path: Path, overwrite: bool, resume: bool, *, verb: str = "train") -> None:
    """Take `path` for this run (rank 0 only), once its input has been read and its encoder built."""
    check_claim(path, overwrite, resume, verb=verb)
    if not resume:  # a new run starts clean: drop what a replaced run, or an earlier failed attempt, left behind
        for name in (RESULTS, CHECKPOINT, WEIGHTS, METRICS, PREDICTIONS, LOG, CURVES):
            (path / name).unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl from the checkpointed history, so a resumed run never repeats a line."""
    atomic_write_bytes(path / METRICS, "".join(json.dumps(row) + "\n" for row in history).encode())


def write_config(path: Path, cfg: RunConfig) -> None:
    atomic_write_json(path / CONFIG, cfg.to_dict())


def read_config(path: Path) -> RunConfig:
    if not (path / CONFIG).is_file():
        raise UserError(f"{path}: not a run folder (no {CONFIG})")
    return RunConfig.load(path / CONFIG)


def read_temperature(path: Path) -> float:
    """The temperature `rnnlab analyze` fitted on the run's validation split, or 1.0 (no scaling) if none."""
    file = path / CALIBRATION
    if not file.is_file():
        return 1.0
    try:
        temperature = float(json.loads(file.read_text())["temperature"])
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{file}: unreadable calibration ({e}); delete it or rerun `rnnlab analyze {path}`") from None
    if not 0 < temperature < float("inf"):
        raise UserError(f"{file}: temperature must be positive, got {temperature}")
    return temperature


def require_finished(path: Path) -> None:
    if not path.is_dir():
        raise UserError(f"{path}: run folder not found")
    if not is_finished(path) or not (path / WEIGHTS).is_file():
        raise UserError(f"{path}: the run has not finished (no {RESULTS}); resume it with `rnnlab train --resume {path}`")


def open_log(path: Path | None) -> logging.Logger:
    """Log to the run's log.txt (rank 0 only; other ranks pass None and log nowhere)."""
    log = logging.getLogger("rnnlab.run")
    log.setLevel(logging.INFO)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    if path is not None:
        handler = logging.FileHandler(path / LOG, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
    return log


def write_predictions(folder: Path, ids, labels, probs, label_names: list[str]) -> None:
    """predictions.jsonl: one {"index" (dataset id), "label", "pred", "probs"} per test text, for runs and the
    baseline alike (the report pairs runs through it)."""
    lines = []
    for i, y, p in zip(ids, labels, [[float(x) for x in row] for row in probs], strict=True):
        best = max(range(len(p)), key=p.__getitem__)
        lines.append(json.dumps({"index": int(i), "label": label_names[int(y)], "pred": label_names[best],
                                 "probs": [round(x, 6) for x in p]}))  # fmt: skip
    atomic_write_bytes(folder / PREDICTIONS, "".join(line + "\n" for line in lines).encode())


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Training curves: train/val loss and val accuracy per epoch."""
    from matplotlib.figure import Figure  # not pyplot: no global backend switch for whoever trains in-process

    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(9, 3.5))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in history], "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [r["val_accuracy"] for r in history], "o-", color="C2")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
