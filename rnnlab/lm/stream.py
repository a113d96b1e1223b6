"""Token streams for stateful truncated BPTT: documents joined (each closed by EOS) into one stream, cut into rows that
run side by side, read in windows of `bptt` tokens whose recurrent state carries over to the next window.

Row r of a `[B, L]` batch is the stream's r-th slice of L tokens; window w of it is tokens `w*bptt … (w+1)*bptt` as
input and the same shifted by one as target, so the windows of a row, read in order, are that slice exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from rnnlab.encoders.lm_vocab import EOS, PAD
from rnnlab.encoders.words import WORD


def join(docs: Sequence[Sequence[int]], order: Sequence[int] | None = None) -> np.ndarray:
    """One stream of the documents' ids (in `order`), each followed by EOS: `[N]` int64."""
    order = range(len(docs)) if order is None else order
    pieces = [np.asarray([*docs[i], EOS], dtype=np.int64) for i in order]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)


def rows(stream: np.ndarray, batch_size: int, *, pad: bool = False) -> torch.Tensor:
    """`[N]` → `[B, L]`: B contiguous slices. Training drops the last N mod B tokens; evaluation (`pad`) fills the last
    row with PAD instead, which the loss ignores, so that every token but each row's first is scored."""
    length = -(-len(stream) // batch_size) if pad else len(stream) // batch_size
    out = np.full(batch_size * length, PAD, dtype=np.int64)
    used = min(len(stream), out.size)
    out[:used] = stream[:used]
    return torch.from_numpy(out.reshape(batch_size, length))


def windows(data: torch.Tensor, bptt: int, start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(position, input `[B, n]`, target `[B, n]`) for the windows of `data` `[B, L]` from window `start` on."""
    for position in range(start, count_windows(data.size(1), bptt)):
        i = position * bptt
        n = min(bptt, data.size(1) - 1 - i)
        yield position, data[:, i : i + n], data[:, i + 1 : i + 1 + n]


def count_windows(length: int, bptt: int) -> int:
    """Windows in a row of `length` tokens (its last token is only ever a target)."""
    return max(0, -(-(length - 1) // bptt))


def count_words(texts: Sequence[str]) -> int:
    """Words as perplexity per word counts them: whitespace-separated, each CJK ideograph a word (else a Chinese review
    would be one word), plus one EOS per document (it is predicted too)."""
    return sum(len(WORD.findall(text)) + 1 for text in texts)
