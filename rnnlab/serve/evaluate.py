"""`rnnlab evaluate RUN [--data FILE]`: score a finished run on its test split or on another labelled file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from rnnlab import runs
from rnnlab.errors import UserError
from rnnlab.metrics import scores


def evaluate_run(
    run: Path,
    data_file: str | None = None,
    device: str = "auto",
    *,
    text_column: str | None = None,
    label_column: str | None = None,
) -> dict[str, Any]:
    """Score `run` on its test split, or on `data_file` (whose columns default to the run's own)."""
    from rnnlab.serve.predict import Predictor

    runs.require_finished(run)
    cfg = runs.read_config(run)
    predictor = Predictor.load(run, device=device)
    dataset = cfg.dataset
    cfg = dataclasses.replace(cfg, dataset=dataclasses.replace(dataset, text_column=text_column or dataset.text_column,
                                                               label_column=label_column or dataset.label_column))  # fmt: skip
    texts, labels, source = _labelled_texts(run, cfg, data_file, predictor.label_names)
    probs = predictor.predict_proba(texts)
    c = len(predictor.label_names)
    confusion = np.zeros((c, c), dtype=np.int64)
    np.add.at(confusion, (labels, probs.argmax(1)), 1)
    return {"data": source, "examples": len(texts), **scores(confusion), "confusion_matrix": confusion.tolist(),
            "label_names": predictor.label_names}  # fmt: skip


def _labelled_texts(run: Path, cfg, data_file: str | None, names: list[str]) -> tuple[list[str], np.ndarray, str]:
    from rnnlab.data.readers import PACKAGED, PACKAGED_LABELS, read_examples
    from rnnlab.data.split import prepare

    if data_file is None:
        data = prepare(cfg.dataset)
        if cfg.dataset.data.lower() in PACKAGED and names == list(PACKAGED_LABELS):
            # A run made before the packaged data carried label names: same classes in the same order.
            data = dataclasses.replace(data, label_names=names)
        saved = json.loads((run / runs.SPLIT).read_text())
        if saved["hash"] != data.manifest()["hash"]:
            raise UserError(f"{cfg.dataset.data}: the data differs from what {run} was trained on (split hash)")
        test = data.split["test"]  # same data and hash, so the same label ids as the run's
        return [data.texts[i] for i in test], data.labels[test], f"{cfg.dataset.data} (test split)"
    examples = read_examples(data_file, cfg.dataset.text_column, cfg.dataset.label_column)
    index = {name: i for i, name in enumerate(names)}
    first = 1 if str(data_file).endswith(".jsonl") else 2  # a CSV/TSV header is row 1, as in data/readers.py
    for row, label in enumerate(examples.labels, start=first):
        if label not in index:
            raise UserError(f"{data_file}: row {row} has label {label!r}, which the run never saw (labels: {', '.join(names)})")
    return examples.texts, np.asarray([index[label] for label in examples.labels]), data_file
