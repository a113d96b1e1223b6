"""rnnlab: train, compare, understand and ship recurrent text classifiers.

Importing the package is cheap and torch-free; `load` pulls in torch when called.
"""

from __future__ import annotations

__version__ = "0.1.0"


def load(run_dir, device: str = "auto", bf16: bool = True, calibrated: bool = True, engine: str = "torch",
         quantized: bool = False):  # fmt: skip
    """Load a finished run for inference: `rnnlab.load("runs/x").predict(["a fine film"])`.

    Probabilities are temperature-scaled when `rnnlab analyze` has fitted a temperature (`calibrated=False`: raw).
    `engine="onnx"` runs the graph `rnnlab export` wrote (`quantized`: its int8 version) under onnxruntime, without
    importing torch: ready in about a second instead of five (docs/performance.md)."""
    from pathlib import Path

    if engine == "onnx":
        from rnnlab.serve.onnx_engine import OnnxPredictor

        return OnnxPredictor(Path(run_dir), quantized=quantized, calibrated=calibrated)
    if engine != "torch":
        from rnnlab.errors import UserError

        raise UserError(f"unknown engine {engine!r}; choose torch or onnx")
    from rnnlab.serve.predict import Predictor

    return Predictor.load(run_dir, device=device, bf16=bf16, calibrated=calibrated)
