"""rnnlab: train, compare, understand and ship recurrent text classifiers.

Importing the package is cheap and torch-free; `load` pulls in torch when called.
"""

from __future__ import annotations

__version__ = "0.1.0"


def load(run_dir, device: str = "auto", bf16: bool = True, calibrated: bool = True):
    """Load a finished run for inference: `rnnlab.load("runs/x").predict(["a fine film"])`.

    Probabilities are temperature-scaled when `rnnlab analyze` has fitted a temperature (`calibrated=False`: raw)."""
    from rnnlab.serve.predict import Predictor

    return Predictor.load(run_dir, device=device, bf16=bf16, calibrated=calibrated)
