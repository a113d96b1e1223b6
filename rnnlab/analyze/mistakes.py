"""The errors a user should read first: the most confident ones, each with the span that drove it."""

from __future__ import annotations

import numpy as np

from rnnlab.serve.explain import Attribution

SPAN = 8
"""Tokens in the most influential span shown beside each mistake."""


def confident_errors(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rows the model got wrong, the most confident first."""
    wrong = np.flatnonzero(probs.argmax(1) != labels)
    return wrong[np.argsort(-probs[wrong].max(1), kind="stable")]


def most_confused(confusion: np.ndarray, label_names: list[str], top: int = 10) -> list[dict]:
    """The largest off-diagonal cells: which gold label is most often taken for which."""
    pairs = [(int(confusion[i, j]), i, j) for i in range(len(confusion)) for j in range(len(confusion)) if i != j]
    return [
        {"gold": label_names[i], "predicted": label_names[j], "count": n} for n, i, j in sorted(pairs, reverse=True)[:top] if n
    ]


def influential_span(attribution: Attribution, special: tuple[int, int]) -> str:
    """The `SPAN`-token window (special tokens excluded) whose scores towards the prediction sum highest, as text."""
    head, tail = special
    tokens = attribution.tokens[head : len(attribution.tokens) - tail]
    scores = np.asarray(attribution.scores[head : len(attribution.scores) - tail])
    if len(tokens) == 0:
        return ""
    width = min(SPAN, len(tokens))
    sums = np.convolve(scores, np.ones(width), mode="valid")
    start = int(sums.argmax())
    return detokenize(tokens[start : start + width])


def detokenize(tokens: list[str]) -> str:
    """WordPiece pieces back into words (##-continuations glued, SentencePiece/BPE word marks turned into spaces)."""
    out = ""
    for token in tokens:
        if token.startswith("##"):
            out += token[2:]
        elif token[:1] in ("\u2581", "\u0120"):
            out += " " + token[1:]
        else:
            glued = not out or token in ".,!?;:')" or out.endswith("'") and token.isalpha() and len(token) <= 2
            out += ("" if glued else " ") + token
    return out.strip()
