"""Labels from class probabilities: what the torch and ONNX engines share, with no torch of its own."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import numpy as np

from rnnlab.calibration import scale


class TextTokenizer(Protocol):
    """The tokenization an engine needs (an `Encoder` or a `SubwordTokenizer`)."""

    max_length: int
    truncation: str
    pad_id: int

    def tokenize(self, texts: list[str]) -> list[list[int]]: ...

    def tokenize_counted(self, texts: list[str]) -> tuple[list[list[int]], list[int]]: ...

    def special_tokens(self) -> tuple[int, int]: ...


class Labeller:
    """Labels from class probabilities; subclasses provide `label_names`, `encoder` and `probs_of_ids`."""

    label_names: list[str]
    encoder: TextTokenizer
    """What turns texts into the model's token ids: the model's encoder, or for the ONNX engine its tokenizer alone."""
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
