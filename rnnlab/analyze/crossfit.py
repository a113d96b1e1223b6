"""Out-of-sample probabilities for a run's own training split, by K-fold cross-fitting.

Confident learning needs probabilities from a model that never saw the row. For the training split, K models are
trained with the run's own configuration, each on K−1 stratified folds (its validation split drawn from them, as
the run's was), and each labels the fold it left out. The fold runs are ordinary run folders under
RUN/analysis-folds/, so an interrupted cross-fit resumes where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np

from rnnlab import runs
from rnnlab.errors import UserError
from rnnlab.serve.evaluate import LabelledTexts, run_split
from rnnlab.serve.predict import Predictor

FOLDS_DIR = "analysis-folds"


def crossfit(run: Path, folds: int, *, device: str = "auto", seed: int = 0) -> tuple[LabelledTexts, np.ndarray]:
    """The run's training split and a [N, C] matrix of probabilities, each row from the model that left it out."""
    from rnnlab.training.fit import fit

    if folds < 2:
        raise UserError(f"--folds must be at least 2, got {folds}")
    cfg = runs.read_config(run)
    names = json.loads((run / runs.LABELS).read_text())
    train = run_split(run, "train")
    fold_of = _stratified_folds(train.labels, folds, seed)
    probs = np.zeros((len(train.labels), len(names)))
    for k in range(folds):
        folder = run / FOLDS_DIR / f"fold{k}"
        held = np.flatnonzero(fold_of == k)
        if not runs.is_finished(folder):
            data, test = _write_fold(folder.parent, k, train, names, held)
            dataset = dataclasses.replace(cfg.dataset, data=str(data), test_file=str(test), text_column="text",
                                          label_column="label", fraction=1.0)  # fmt: skip
            fit(dataclasses.replace(cfg, dataset=dataset, run_dir=str(folder), overwrite=True,
                                    train=dataclasses.replace(cfg.train, progress=False, device=device)))  # fmt: skip
        predictor = Predictor.load(folder, device=device, calibrated=False)
        if predictor.label_names != names:
            raise UserError(f"{folder}: fold {k} learnt labels {predictor.label_names}, the run has {names}")
        probs[held] = predictor.predict_proba([train.texts[i] for i in held])
    return train, probs


def _stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number per row, each class spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        fold_of[rows] = np.arange(len(rows)) % folds
    return fold_of


def _write_fold(folder: Path, k: int, train: LabelledTexts, names: list[str], held: np.ndarray) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    left_out = set(held.tolist())
    paths = folder / f"fold{k}-train.csv", folder / f"fold{k}-held-out.csv"
    for path, keep in zip(paths, (lambda i: i not in left_out, lambda i: i in left_out)):
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows([train.texts[i], names[train.labels[i]]] for i in range(len(train.labels)) if keep(i))
    return paths
