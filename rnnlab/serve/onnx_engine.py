"""The exported graph under onnxruntime, imported without torch or transformers, so that it starts in about a second.

A run folder written since tokenizers were saved beside the encoder (`runs.TOKENIZER`) needs nothing else; an older
one, or a word-vector run, tokenizes with its encoder, which loads torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rnnlab import runs
from rnnlab.errors import UserError
from rnnlab.padding import by_length, pad_ids
from rnnlab.serve.labeller import Labeller, TextTokenizer
from rnnlab.subword import SubwordTokenizer

ONNX_NAME, INT8_NAME = "model.onnx", "model.int8.onnx"


class OnnxPredictor(Labeller):
    """The exported graph under onnxruntime, with the same interface as Predictor."""

    def __init__(self, run: Path, quantized: bool = False, threads: int | None = None, calibrated: bool = True) -> None:
        import onnxruntime as ort

        run = Path(run)
        path = run / (INT8_NAME if quantized else ONNX_NAME)
        if not path.is_file():
            flag = " --quantize" if quantized else ""
            raise UserError(f"{path}: not exported yet; run `rnnlab export {run} --format onnx{flag}`")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.encoder = run_tokenizer(run)
        self.label_names = json.loads((run / runs.LABELS).read_text())
        self.temperature = runs.read_temperature(run) if calibrated else 1.0
        self.batch_size = 64

    def raw_probs_of_ids(self, token_ids: list[list[int]]) -> np.ndarray:
        def probs_of(chunk: np.ndarray) -> np.ndarray:
            ids, lengths = pad_ids([token_ids[i] for i in chunk], self.encoder.pad_id)
            mask = (np.arange(ids.shape[1]) < lengths[:, None]).astype(np.int64)  # [B, T]
            (logits,) = self.session.run(None, {"ids": ids, "mask": mask})
            return _softmax(logits)

        return by_length(np.array([len(t) for t in token_ids]), self.batch_size, probs_of)


def run_tokenizer(run: Path) -> TextTokenizer:
    """The run's saved subword tokenizer when it has one, else its encoder (which brings torch)."""
    spec_path, saved = run / runs.ENCODER, run / runs.TOKENIZER
    if spec_path.is_file() and saved.is_file():
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        if spec.get("kind") == "transformer":
            return SubwordTokenizer.load(saved, spec)
    from rnnlab.encoders import load_encoder

    return load_encoder(run)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
