"""Encoders: token ids → token vectors `[B, T, D]`, chosen by name and built by `build_encoder`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rnnlab.config import EncoderConfig
from rnnlab.encoders.base import SPEC_FILE, Encoder
from rnnlab.encoders.lm import LMEncoder
from rnnlab.encoders.transformer import TransformerEncoder
from rnnlab.encoders.words import ScratchEncoder, WordVectorEncoder
from rnnlab.errors import UserError

__all__ = ["LM_PREFIX", "Encoder", "LMEncoder", "build_encoder", "load_encoder"]

# Suffixes that mark a word-vector text file, so a mistyped path is reported as a missing file
# rather than as an unknown Hugging Face model.
_VECTOR_SUFFIXES = (".txt", ".vec", ".gz")
LM_PREFIX = "lm:"
"""`--encoder lm:RUN` reads texts with the LSTM stack of the language model trained in RUN (`rnnlab lm train`)."""


def build_encoder(cfg: EncoderConfig, train_texts: list[str] | None = None, transfer_texts: Sequence[str] = ()) -> Encoder:
    """`minilm`, `glove`, `scratch` (trained on `train_texts`), a word-vector file (pruned with --prune-vocab to the
    words of `train_texts` and a distillation's `transfer_texts`; a fine-tuned one by default), `lm:RUN` (the LSTM
    stack of an `rnnlab lm train` run), or a Hugging Face name/folder."""
    name, cut = cfg.encoder, {"max_length": cfg.max_length, "truncation": cfg.truncation}
    split = {"finetune_layers": cfg.finetune_layers, "layer_mix": cfg.layer_mix}
    is_words = name in ("scratch", "glove") or Path(name).is_file() or name.endswith(_VECTOR_SUFFIXES)
    is_lm = name.startswith(LM_PREFIX)
    if cfg.prune_vocab and (name == "scratch" or not is_words):
        raise UserError(f"--prune-vocab prunes a word-vector table (--encoder glove or a vectors file), not --encoder {name}")
    if (is_words or is_lm) and any(split.values()):
        raise UserError(f"--finetune-layers and --layer-mix split a transformer's layers; --encoder {name} has none")
    if (is_words or is_lm) and cfg.chunks > 1:
        raise UserError(f"--chunks splits texts a transformer cannot read at once; --encoder {name} reads any length")
    if is_lm:
        return LMEncoder.pretrained(Path(name.removeprefix(LM_PREFIX)), finetune=cfg.finetune, **cut)
    if name == "scratch":
        if train_texts is None:
            raise ValueError("the scratch encoder learns its vocabulary from train_texts")
        return ScratchEncoder.train_on(train_texts, vocab_size=cfg.vocab_size, embedding_dim=cfg.embedding_dim, **cut)
    if name == "glove" or Path(name).is_file() or name.endswith(_VECTOR_SUFFIXES):
        encoder = WordVectorEncoder(name, finetune=cfg.finetune, **cut)
        min_count = int(cfg.finetune and train_texts is not None) if cfg.prune_vocab is None else cfg.prune_vocab
        if min_count:
            if train_texts is None:
                raise ValueError("--prune-vocab keeps the words of train_texts")
            # A count above 1 counts the training split alone: a transfer set repeats, and with class swaps scatters,
            # every training word many times over. At 1, the words only the transfer set brings are kept too.
            encoder.prune([*train_texts, *transfer_texts] if min_count == 1 else train_texts, min_count)
        return encoder
    return TransformerEncoder(name, finetune=cfg.finetune, chunks=cfg.chunks, **cut, **split,
                              chunk_overlap=cfg.max_length // 8 if cfg.chunk_overlap is None else cfg.chunk_overlap)  # fmt: skip


def load_encoder(run_dir: Path) -> Encoder:
    """Rebuild a run's encoder; frozen pretrained weights are re-read from their source, the rest come
    from the model's state_dict afterwards."""
    path = Path(run_dir, SPEC_FILE)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: encoder description missing from the run folder") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    kind = spec.get("kind")
    if kind == "transformer":
        return TransformerEncoder.from_spec(spec)
    if kind == "word_vectors":
        return WordVectorEncoder.from_spec(spec, Path(run_dir))
    if kind == "scratch":
        return ScratchEncoder.from_spec(spec, Path(run_dir))
    if kind == "lm":
        return LMEncoder.from_spec(spec, Path(run_dir))
    raise UserError(f"{path}: unknown encoder kind {kind!r}")
