"""A language model's vocabulary: byte-level BPE learned by `tokenizers`, or the characters of the training texts.

Ids: 0 = PAD, 1 = UNK, 2 = EOS (closes every document of a token stream), then the learned tokens. A run folder keeps
it as `lm_vocab.json` (kind and characters) plus, for subwords, `tokenizer.json`.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from rnnlab import runs
from rnnlab.errors import UserError

PAD, UNK, EOS = 0, 1, 2
SPECIALS = ["<pad>", "<unk>", "<eos>"]
VOCAB_FILE = "lm_vocab.json"


class LMVocab:
    """Texts ↔ token ids for a language model; `kind` is `subword` (a `tokenizers.Tokenizer`) or `chars`."""

    def __init__(self, kind: str, *, tokenizer=None, chars: list[str] | None = None) -> None:
        self.kind, self.tokenizer, self.chars = kind, tokenizer, chars or []
        self.char_ids = {c: i + len(SPECIALS) for i, c in enumerate(self.chars)}
        self.size = tokenizer.get_vocab_size() if kind == "subword" else len(SPECIALS) + len(self.chars)

    @classmethod
    def learn(cls, texts: list[str], kind: str, size: int) -> LMVocab:
        """Learn the vocabulary of `texts` (the training split's): deterministic for the same texts and size."""
        if kind == "chars":
            counts = Counter(c for text in texts for c in text)
            return cls("chars", chars=sorted(counts, key=lambda c: (-counts[c], c)))
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE())
        # Byte level: every text has a spelling, so no token is unknown and decoding gives the text back exactly.
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=SPECIALS, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
        tokenizer.train_from_iterator(texts, trainer, length=len(texts))
        assert [tokenizer.token_to_id(t) for t in SPECIALS] == [PAD, UNK, EOS]
        return cls("subword", tokenizer=tokenizer)

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without EOS; unknown characters become UNK."""
        if self.kind == "chars":
            ids = self.char_ids
            return [[ids.get(c, UNK) for c in text] for text in texts]
        return [e.ids for e in self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        """The text of `ids`; EOS reads as a blank line (a document ends), PAD and UNK as nothing and `�`."""
        if self.kind == "chars":
            table = {EOS: "\n\n", UNK: "\ufffd", **{i: c for c, i in self.char_ids.items()}}
            return "".join(table.get(i, "") for i in ids)
        pieces, run = [], []
        for i in [*ids, EOS]:
            if i in (PAD, UNK, EOS):
                pieces.append(self.tokenizer.decode(run) + {PAD: "", UNK: "\ufffd", EOS: "\n\n"}[i])
                run = []
            else:
                run.append(i)
        return "".join(pieces)[:-2]

    def token_strings(self, ids: list[int]) -> list[str]:
        if self.kind == "chars":
            return [SPECIALS[i] if i < len(SPECIALS) else self.chars[i - len(SPECIALS)] for i in ids]
        return [self.tokenizer.id_to_token(i) or "?" for i in ids]

    def unknown(self, text: str) -> list[str]:
        """Characters of `text` the vocabulary cannot spell (never any for byte-level subwords)."""
        return sorted({c for c in text if c not in self.char_ids}) if self.kind == "chars" else []

    def save(self, folder: Path) -> None:
        runs.atomic_write_json(Path(folder, VOCAB_FILE), {"kind": self.kind, "size": self.size, "chars": self.chars})
        if self.kind == "subword":
            self.tokenizer.save(str(Path(folder, runs.TOKENIZER)))

    @classmethod
    def load(cls, folder: Path) -> LMVocab:
        path = Path(folder, VOCAB_FILE)
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path}: vocabulary missing; not an `rnnlab lm train` run folder") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: not valid JSON ({e})") from None
        if saved.get("kind") == "chars":
            vocab = cls("chars", chars=list(saved["chars"]))
        else:
            from tokenizers import Tokenizer

            tokenizer_path = Path(folder, runs.TOKENIZER)
            if not tokenizer_path.is_file():
                raise UserError(f"{tokenizer_path}: tokenizer missing from the LM run folder")
            vocab = cls("subword", tokenizer=Tokenizer.from_file(str(tokenizer_path)))
        if vocab.size != saved.get("size"):
            raise UserError(f"{path}: says {saved.get('size')} tokens but the vocabulary holds {vocab.size}")
        return vocab
