"""A pretrained transformer's tokenization without torch or transformers: what its encoder and the ONNX engine share.

The tokenizer is the encoder's fast (Rust) tokenizer, stripped of any stored padding and truncation: whole texts are
tokenized, then cut here, so that `head_tail` sees each text's real tail. A run folder keeps it (`runs.TOKENIZER`), so
that `rnnlab predict --engine onnx` starts without importing torch or transformers.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer


def truncate(ids: list[int], budget: int, strategy: str) -> list[int]:
    """Keep `budget` content tokens: the first ones (`head`), the last ones (`tail`), or the first quarter + the last
    three quarters (`head_tail`, which Sun et al. 2019 found best for BERT on IMDB).

    Reviews often end with the verdict, so `head_tail` keeps the end that `head` would cut.
    """
    if len(ids) <= budget:
        return ids
    if strategy == "head":
        return ids[:budget]
    if strategy == "tail":
        return ids[len(ids) - budget :]
    assert strategy == "head_tail", strategy
    head = budget // 4
    return ids[:head] + ids[len(ids) - (budget - head) :]


def windows(ids: list[int], budget: int, *, chunks: int, overlap: int, strategy: str) -> list[list[int]]:
    """Up to `chunks` windows of at most `budget` tokens, each sharing `overlap` tokens with the one before (a text
    longer than they cover is first truncated by `strategy`, to the tokens they can hold)."""
    step = budget - overlap
    ids = truncate(ids, budget + (chunks - 1) * step, strategy)
    return [ids[start : start + budget] for start in range(0, max(len(ids) - overlap, 1), step)]


class SubwordTokenizer:
    """Texts → token ids with the model's special tokens, at most `max_length` of them; with `chunks` > 1, each text
    becomes up to that many windows of `max_length` tokens (see `windows`), each with its own special tokens."""

    def __init__(self, backend: Tokenizer, *, max_length: int, truncation: str, pad_id: int, chunks: int = 1,
                 overlap: int = 0) -> None:  # fmt: skip
        self.backend = Tokenizer.from_str(backend.to_str())  # a copy: the caller's tokenizer keeps its settings
        self.backend.no_padding()
        self.backend.no_truncation()
        self.max_length, self.truncation, self.pad_id = max_length, truncation, pad_id
        self.chunks, self.overlap = chunks, overlap
        self.prefix, self.suffix = _special_tokens(self.backend)

    @classmethod
    def load(cls, path: Path, spec: dict) -> SubwordTokenizer:
        """The tokenizer `save` wrote, cut as the encoder description `spec` says."""
        return cls(Tokenizer.from_file(str(path)), max_length=spec["max_length"], truncation=spec["truncation"],
                   pad_id=spec["pad_id"], chunks=spec.get("chunks", 1), overlap=spec.get("chunk_overlap", 0))  # fmt: skip

    def save(self, path: Path) -> None:
        self.backend.save(str(path))

    def tokenize(self, texts: list[str]) -> list:
        return self.tokenize_counted(texts)[0]

    def tokenize_counted(self, texts: list[str]) -> tuple[list, list[int]]:
        """The ids kept (per text a list of ids, or with chunks a list of windows), and each text's length in tokens
        before truncation (special tokens included once)."""
        special = len(self.prefix) + len(self.suffix)
        budget = self.max_length - special
        encodings = self.backend.encode_batch_fast(list(texts), add_special_tokens=False)
        if self.chunks == 1:
            ids = [self.prefix + truncate(e.ids, budget, self.truncation) + self.suffix for e in encodings]
        else:
            cut = {"chunks": self.chunks, "overlap": self.overlap, "strategy": self.truncation}
            ids = [[self.prefix + w + self.suffix for w in windows(e.ids, budget, **cut)] for e in encodings]
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
