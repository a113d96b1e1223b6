"""Load a finished run and label new texts: the Python API behind `rnnlab predict` and `rnnlab.load`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnlab import runs
from rnnlab.encoders.base import Encoder
from rnnlab.model import TextClassifier, load_trained
from rnnlab.runtime import Precision, autocast_dtype, configure_math, inputs_for, predict_probs, resolve_device
from rnnlab.serve.labeller import Labeller


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
        inputs = inputs_for(self.model.encoder, token_ids)
        return predict_probs(self.model, inputs, list(range(len(token_ids))), self.prec, self.batch_size)
