"""`rnnlab evaluate RUN [--data FILE]`: score a finished run on its test split or on another labelled file.

The texts and labels it scores come from `run_split` and `labelled_file`, which `rnnlab analyze` reads through too.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnnlab import runs
from rnnlab.config import RunConfig
from rnnlab.errors import UserError
from rnnlab.metrics import per_class, scores


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: np.ndarray
    """Class ids into the run's label names."""
    source: str


def evaluate_run(
    run: Path,
    data_file: str | None = None,
    device: str = "auto",
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    label_map: str | None = None,
) -> dict[str, Any]:
    """Score `run` on its test split, or on `data_file` (whose columns default to the run's own)."""
    from rnnlab.serve.predict import Predictor

    runs.require_finished(run)
    predictor = Predictor.load(run, device=device)
    if data_file is None:
        data = run_split(run, "test")
    else:
        data = labelled_file(run, data_file, text_column=text_column, label_column=label_column, label_map=label_map)
    probs = predictor.predict_proba(data.texts)
    c = len(predictor.label_names)
    confusion = np.zeros((c, c), dtype=np.int64)
    np.add.at(confusion, (data.labels, probs.argmax(1)), 1)
    recall = dict(zip(predictor.label_names, per_class(confusion)["recall"]))
    return {"data": data.source, "examples": len(data.texts), **scores(confusion), "recall": recall,
            "confusion_matrix": confusion.tolist(), "label_names": predictor.label_names}  # fmt: skip


def run_split(run: Path, split: str) -> LabelledTexts:
    """The run's own `split` ("val" or "test"), refused if its data has changed since training."""
    from rnnlab.data.readers import PACKAGED, PACKAGED_LABELS
    from rnnlab.data.split import prepare

    cfg = runs.read_config(run)
    names = json.loads((run / runs.LABELS).read_text())
    data = prepare(cfg.dataset)
    if cfg.dataset.data.lower() in PACKAGED and names == list(PACKAGED_LABELS):
        # A run made before the packaged data carried label names: same classes in the same order.
        data = dataclasses.replace(data, label_names=names)
    saved = json.loads((run / runs.SPLIT).read_text())
    if saved["hash"] != data.manifest()["hash"]:
        raise UserError(f"{cfg.dataset.data}: the data differs from what {run} was trained on (split hash)")
    idx = data.split[split]  # same data and hash, so the same label ids as the run's
    return LabelledTexts([data.texts[i] for i in idx], data.labels[idx], f"{cfg.dataset.data} ({split} split)")


def labelled_file(
    run: Path, data_file: str, *, text_column: str | None, label_column: str | None, label_map: str | None
) -> LabelledTexts:
    """Another labelled file (or packaged dataset); its columns default to the run's, and `label_map`
    ("negative=0,positive=1") renames its labels to the run's."""
    from rnnlab.data.readers import read_examples

    cfg: RunConfig = runs.read_config(run)
    names = json.loads((run / runs.LABELS).read_text())
    mapping = parse_label_map(label_map, names) if label_map else {}
    examples = read_examples(data_file, text_column or cfg.dataset.text_column, label_column or cfg.dataset.label_column)
    index = {name: i for i, name in enumerate(names)}
    first = 1 if str(data_file).endswith((".jsonl", ".parquet")) else 2  # a CSV/TSV header is row 1, as in data/readers.py
    labels = []
    for row, label in enumerate(examples.labels, start=first):
        label = mapping.get(label, label)
        if label not in index:
            hint = "; map it with --label-map FILE_LABEL=RUN_LABEL" if not mapping else " (nor does --label-map map it)"
            raise UserError(f"{data_file}: row {row} has label {label!r}, which the run never saw "
                            f"(labels: {', '.join(names)}){hint}")  # fmt: skip
        labels.append(index[label])
    return LabelledTexts(examples.texts, np.asarray(labels, dtype=np.int64), data_file)


def parse_label_map(text: str, names: list[str]) -> dict[str, str]:
    """"negative=0,positive=1" → {"negative": "0", "positive": "1"}; every target must be one of the run's labels."""
    mapping = {}
    for pair in text.split(","):
        source, sep, target = (part.strip() for part in pair.partition("="))
        if not sep or not source or not target:
            raise UserError(f"--label-map: {pair.strip()!r} is not FILE_LABEL=RUN_LABEL (e.g. negative=0,positive=1)")
        if target not in names:
            raise UserError(f"--label-map: {source}={target} maps to {target!r}, which is not a label of the run "
                            f"(labels: {', '.join(names)})")  # fmt: skip
        mapping[source] = target
    return mapping
