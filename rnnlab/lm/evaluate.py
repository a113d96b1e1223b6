"""Perplexity of a language model on a token stream, read in BPTT windows with the state carried over."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rnnlab import runs
from rnnlab.encoders.lm import LanguageModel, read_lm_run
from rnnlab.encoders.lm_vocab import PAD, LMVocab
from rnnlab.errors import UserError
from rnnlab.lm.config import LMConfig
from rnnlab.lm.stream import count_words, join, rows, windows
from rnnlab.runtime import Precision, resolve_device


def load_lm(run: Path, device: str = "cpu") -> tuple[LanguageModel, LMVocab, LMConfig]:
    """The language model of an `rnnlab lm train` run (its last saved epoch), in eval mode, with vocabulary and config."""
    net, vocab, weights = read_lm_run(Path(run))
    model = LanguageModel(vocab.size, **net)
    model.load_saved(weights, Path(run, runs.WEIGHTS))
    return model.to(resolve_device(device)).eval(), vocab, LMConfig.load(Path(run, runs.CONFIG))


@torch.inference_mode()
def perplexity(model: LanguageModel, docs: list[list[int]], words: int, *, bptt: int, batch_size: int,
               prec: Precision) -> dict[str, Any]:  # fmt: skip
    """Mean loss per token, perplexity per token and per word (`words` as `count_words` counts them) of the documents
    joined into one stream; every token but the first of each of the `batch_size` rows is scored."""
    model.eval()
    data = rows(join(docs), batch_size, pad=True).to(prec.device)  # [B, L]
    nll, scored, state = 0.0, 0, None
    for _, x, y in windows(data, bptt):
        with prec.autocast():
            logits, state = model(x, state)  # [B, n, V]
        nll += F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=PAD, reduction="sum").item()
        scored += int((y != PAD).sum())
    loss = nll / max(scored, 1)
    tokens = sum(len(d) + 1 for d in docs)
    # Per word: the stream's total loss spread over its words, so runs with different vocabularies compare.
    return {"loss": loss, "ppl_token": math.exp(loss), "ppl_word": math.exp(loss * tokens / max(words, 1)),
            "tokens": tokens, "words": words}  # fmt: skip


def eval_run(run: Path, data: str | None = None, *, text_column: str | None = None, device: str = "auto") -> dict:
    """Perplexity of an LM run on its test split (rebuilt from the run's data options and checked against split.json),
    or on every text of `data`."""
    from rnnlab.data.readers import read_examples
    from rnnlab.data.split import prepare

    model, vocab, cfg = load_lm(run, device)
    if data is None:
        prepared = prepare(cfg.dataset)
        saved = json.loads(Path(run, runs.SPLIT).read_text()) if Path(run, runs.SPLIT).is_file() else {}
        if saved.get("hash") != prepared.manifest()["hash"]:
            raise UserError(f"{run}: its data changed since the LM was trained (split hash differs); pass --data")
        texts = [prepared.texts[i] for i in prepared.split["test"]]
    else:
        texts = read_examples(data, text_column or cfg.dataset.text_column, cfg.dataset.label_column).texts
    prec = Precision(next(model.parameters()).device, None)
    result = perplexity(model, vocab.encode(texts), count_words(texts), bptt=cfg.bptt, batch_size=16, prec=prec)
    return {"data": data or f"{cfg.dataset.data} (test split)", "texts": len(texts), **result}
