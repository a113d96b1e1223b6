"""A pretrained transformer's tokenization without torch or transformers: what its encoder and the ONNX engine share.

The tokenizer is the encoder's fast (Rust) tokenizer, stripped of any stored padding and truncation: whole texts are
tokenized, then cut here, so that `head_tail` sees each text's real tail. A run folder keeps it (`runs.TOKENIZER`), so
that `rnnlab predict --engine onnx` starts without importing torch or transformers.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer


def truncate(ids: list[int], budget: int, strategy: str) -> list[int]:
    """Keep `budget` content tokens: the first ones (`head`) or the first quarter + last three quarters.

    Reviews often end with the verdict, so `head_tail` keeps the end that `head` would cut.
    """
    if len(ids) <= budget:
        return ids
    if strategy == "head":
        return ids[:budget]
    assert strategy == "head_tail", strategy
    head = budget // 4
    return ids[:head] + ids[len(ids) - (budget - head) :]


class SubwordTokenizer:
    """Texts → token ids with the model's special tokens, at most `max_length` of them."""

    def __init__(self, backend: Tokenizer, *, max_length: int, truncation: str, pad_id: int) -> None:
        self.backend = Tokenizer.from_str(backend.to_str())  # a copy: the caller's tokenizer keeps its settings
        self.backend.no_padding()
        self.backend.no_truncation()
        self.max_length, self.truncation, self.pad_id = max_length, truncation, pad_id
        self.prefix, self.suffix = _special_tokens(self.backend)

    @classmethod
    def load(cls, path: Path, spec: dict) -> SubwordTokenizer:
        """The tokenizer `save` wrote, cut as the encoder description `spec` says."""
        return cls(Tokenizer.from_file(str(path)), max_length=spec["max_length"], truncation=spec["truncation"],
                   pad_id=spec["pad_id"])  # fmt: skip

    def save(self, path: Path) -> None:
        self.backend.save(str(path))

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.tokenize_counted(texts)[0]

    def tokenize_counted(self, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        """The ids kept, and each text's length in tokens before truncation (special tokens included)."""
        special = len(self.prefix) + len(self.suffix)
        encodings = self.backend.encode_batch_fast(list(texts), add_special_tokens=False)
        ids = [self.prefix + truncate(e.ids, self.max_length - special, self.truncation) + self.suffix for e in encodings]
        return ids, [len(e.ids) + special for e in encodings]

    def token_strings(self, ids: list[int]) -> list[str]:
        return [self.backend.id_to_token(i) or "?" for i in ids]

    def special_tokens(self) -> tuple[int, int]:
        return len(self.prefix), len(self.suffix)


def _special_tokens(backend: Tokenizer) -> tuple[list[int], list[int]]:
    """Ids the post-processor puts before and after the content ([CLS] … [SEP], <s> … </s>, or none)."""
    encoding = backend.encode("a", add_special_tokens=True)
    content = [i for i, special in enumerate(encoding.special_tokens_mask) if not special]
    assert content, "the probe text produced only special tokens"
    return encoding.ids[: content[0]], encoding.ids[content[-1] + 1 :]
