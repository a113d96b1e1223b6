"""Text from a language model: the prompt runs once, then each new token is fed alone with the cached recurrent state."""

from __future__ import annotations

from pathlib import Path

import torch

from rnnlab.encoders.lm import LanguageModel
from rnnlab.encoders.lm_vocab import EOS, PAD, UNK, LMVocab
from rnnlab.errors import UserError


def check_sampling(temperature: float, top_k: int, length: int) -> None:
    if temperature < 0:
        raise UserError(f"--temperature must be 0 (greedy) or more, got {temperature}")
    if top_k < 0 or length < 0:
        raise UserError(f"--top-k and --length must be 0 or more, got {top_k} and {length}")


def pick(logits: torch.Tensor, *, temperature: float, top_k: int, generator: torch.Generator | None) -> int:
    """One token from logits `[V]`: the argmax at temperature 0, else a draw from softmax(logits / T) restricted to the
    `top_k` largest (0: all). PAD and UNK are never drawn."""
    logits = logits.float().clone()
    logits[[PAD, UNK]] = float("-inf")
    if top_k:
        kth = logits.topk(min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / temperature, dim=-1)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))  # the generator lives on the CPU


@torch.inference_mode()
def sample_ids(model: LanguageModel, prompt: list[int], *, length: int, temperature: float, top_k: int,
               generator: torch.Generator | None = None) -> list[int]:  # fmt: skip
    """`length` token ids following `prompt` (which should start with EOS, as documents do in training)."""
    model.eval()
    device = next(model.parameters()).device
    logits, state = model(torch.tensor([prompt], device=device))  # [1, P, V]; the prompt runs once
    out = []
    for _ in range(length):
        out.append(pick(logits[0, -1], temperature=temperature, top_k=top_k, generator=generator))
        logits, state = model(torch.tensor([[out[-1]]], device=device), state)  # [1, 1, V]
    return out


def continue_text(model: LanguageModel, vocab: LMVocab, prompt: str, *, length: int, temperature: float = 1.0,
                  top_k: int = 0, seed: int = 0) -> str:  # fmt: skip
    """The prompt's continuation (`length` tokens) as text."""
    check_sampling(temperature, top_k, length)
    unknown = vocab.unknown(prompt)
    if unknown:
        raise UserError(f"--prompt: {len(unknown)} character(s) not in the language model's vocabulary: "
                        + " ".join(repr(c) for c in unknown[:10]))  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    ids = sample_ids(model, [EOS, *vocab.encode([prompt])[0]], length=length, temperature=temperature, top_k=top_k,
                     generator=generator)  # fmt: skip
    return vocab.decode(ids)


def generate(run: str | Path, prompt: str = "", *, length: int = 200, temperature: float = 1.0, top_k: int = 0,
             seed: int = 0, device: str = "cpu") -> str:  # fmt: skip
    """The continuation of `prompt` by the language model of `run` (`rnnlab lm train`); `temperature` 0 is greedy,
    `top_k` > 0 samples among the k likeliest tokens only, `seed` makes the draw repeatable."""
    from rnnlab.lm.evaluate import load_lm

    check_sampling(temperature, top_k, length)
    model, vocab, _ = load_lm(Path(run), device)
    return continue_text(model, vocab, prompt, length=length, temperature=temperature, top_k=top_k, seed=seed)
