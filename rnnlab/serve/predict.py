"""Load a finished run and label new texts: the Python API behind `rnnlab predict` and `rnnlab.load`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rnnlab import runs
from rnnlab.calibration import scale
from rnnlab.encoders.base import Encoder
from rnnlab.model import TextClassifier, load_trained
from rnnlab.runtime import Inputs, Precision, autocast_dtype, configure_math, predict_probs, resolve_device


class Labeller:
    """Labels from class probabilities; subclasses provide `label_names`, `encoder` and `probs_of_ids`."""

    label_names: list[str]
    encoder: Encoder
    temperature: float = 1.0
    """Divides the logits (temperature scaling, fitted by `rnnlab analyze` on validation data); 1.0 leaves them."""

    def probs_of_ids(self, token_ids: list[list[int]]) -> np.ndarray:
        """Class probabilities [N, C] of tokenized texts, in their order, scaled by `temperature`."""
        return scale(self.raw_probs_of_ids(token_ids), self.temperature)

    def raw_probs_of_ids(self, token_ids: list[list[int]]) -> np.ndarray:
        """The model's own probabilities [N, C], never scaled."""
        raise NotImplementedError

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities [N, C], in the order of `texts`."""
        return self.probs_of_ids(self.encoder.tokenize(list(texts)))

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        """One {"label", "probs"} per text."""
        return [self._row(p) for p in self.predict_proba(texts)]

    def stream(self, texts: Iterable[str], chunk: int = 1024) -> Iterator[dict[str, Any]]:
        """Label a long stream chunk by chunk, so a large file never sits in memory whole."""
        buffer: list[str] = []
        for text in texts:
            buffer.append(text)
            if len(buffer) == chunk:
                yield from self.predict(buffer)
                buffer = []
        if buffer:
            yield from self.predict(buffer)

    def _row(self, probs: np.ndarray) -> dict[str, Any]:
        best = int(probs.argmax())
        return {"label": self.label_names[best], "probs": {n: round(float(p), 6) for n, p in zip(self.label_names, probs)}}


class Predictor(Labeller):
    """A trained PyTorch classifier loaded from a run folder."""

    def __init__(self, model: TextClassifier, label_names: list[str], prec: Precision, batch_size: int = 64) -> None:
        self.model, self.label_names, self.prec, self.batch_size = model.eval(), label_names, prec, batch_size

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", bf16: bool = True, calibrated: bool = True) -> Predictor:
        configure_math()
        model, label_names = load_trained(Path(run_dir))
        dev = resolve_device(device)
        predictor = cls(model.to(dev), label_names, Precision(dev, autocast_dtype(dev, bf16)))
        predictor.temperature = runs.read_temperature(Path(run_dir)) if calibrated else 1.0
        return predictor

    @property
    def encoder(self) -> Encoder:
        return self.model.encoder

    def raw_probs_of_ids(self, token_ids: list[list[int]]) -> np.ndarray:
        inputs = Inputs(token_ids, self.model.encoder.pad_id)
        return predict_probs(self.model, inputs, list(range(len(token_ids))), self.prec, self.batch_size)
