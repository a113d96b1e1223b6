"""Heads: token vectors `[B, T, D]` + mask `[B, T]` → one vector per text `[B, out_dim]`.

`build_head(cfg, input_dim)` is the one place that maps a head name to a module:

| head           | module                              | out_dim    |
|----------------|-------------------------------------|------------|
| fnn            | pooling, then Linear + GELU + Dropout | hidden   |
| rnn, gru, lstm | RecurrentHead, one direction        | hidden     |
| bilstm, bigru  | RecurrentHead, both directions      | 2 * hidden |
| textcnn        | Conv1d k=3,4,5 + ReLU, pooling      | 3 * hidden |
| transformer    | pre-norm TransformerEncoder, pooling | hidden    |

With `chunks` (--chunks > 1), the head named runs over window vectors instead of tokens, inside a `HierarchicalHead`
that pools each window by `chunk_pooling` first (out_dim is the inner head's).

Pooling defaults to `default_pooling(name)`; `pool_norm` batch-normalises the pooled vector in every head. `impl`
only applies to recurrent heads (`RunConfig.check_combinations` refuses it for the others). Padding never changes a
head's output.

ONNX (torch 2.13): recurrent heads with impl=torch export with `dynamo=False` and dynamic batch/time axes
(torch.export pins the time axis of nn.LSTM/GRU outputs); the transformer head exports with `dynamo=True`
(the TorchScript exporter bakes the example batch size into attention reshapes). impl=scratch cells loop
over time in Python, so a traced export would fix the sequence length: export with impl=torch (same weights).
"""

from __future__ import annotations

from typing import get_args

from rnnlab.cells import reverse_padded
from rnnlab.config import RECURRENT_HEADS, HeadConfig, HeadName, Pooling
from rnnlab.errors import UserError
from rnnlab.heads.base import Head, valid_lengths
from rnnlab.heads.fnn import FNNHead
from rnnlab.heads.hierarchical import HierarchicalHead
from rnnlab.heads.pooling import Pool
from rnnlab.heads.recurrent import RecurrentHead, recurrent_class
from rnnlab.heads.textcnn import TextCNNHead
from rnnlab.heads.transformer import TransformerHead

__all__ = ["HEADS", "RECURRENT", "Head", "HierarchicalHead", "Pool", "build_head", "default_pooling", "reverse_padded",
           "valid_lengths"]  # fmt: skip

HEADS: tuple[str, ...] = get_args(HeadName)
RECURRENT = RECURRENT_HEADS

# Bidirectional presets: the same recurrent head with both directions, not copied classes.
_PRESETS = {"bilstm": ("lstm", True), "bigru": ("gru", True)}


def default_pooling(head: str) -> Pooling:
    """`last` for recurrent heads (their final states), `max` for textcnn (over n-gram features), else `mean`."""
    if head in RECURRENT:
        return "last"
    return "max" if head == "textcnn" else "mean"


def build_head(cfg: HeadConfig, input_dim: int, *, chunks: bool = False) -> Head:
    """Build the head named by `cfg.head` over `input_dim`-wide token vectors (with `chunks`, over window vectors)."""
    if not chunks:
        return _build(cfg, input_dim)
    pool = Pool(cfg.chunk_pooling, input_dim)
    return HierarchicalHead(pool, _build(cfg, pool.out_dim))


def _build(cfg: HeadConfig, input_dim: int) -> Head:
    pooling = cfg.pooling or default_pooling(cfg.head)
    if pooling not in ("last", "mean", "max", "attention", "concat"):
        raise UserError(f"unknown pooling {pooling!r}; choose last, mean, max, attention or concat")
    if cfg.impl not in ("torch", "scratch"):
        raise UserError(f"unknown impl {cfg.impl!r}; choose torch or scratch")
    if cfg.head in RECURRENT:
        cell, bidirectional = _PRESETS.get(cfg.head, (cfg.head, False))
        cls = recurrent_class(cell, cfg.impl)
        return RecurrentHead(cls, input_dim, hidden_size=cfg.hidden_size, layers=cfg.layers, bidirectional=bidirectional,
                             dropout=cfg.dropout, pooling=pooling, norm=cfg.pool_norm)  # fmt: skip
    if cfg.head == "fnn":
        return FNNHead(input_dim, cfg.hidden_size, cfg.dropout, pooling, norm=cfg.pool_norm)
    if cfg.head == "textcnn":
        return TextCNNHead(input_dim, cfg.hidden_size, pooling, norm=cfg.pool_norm)
    if cfg.head == "transformer":
        return TransformerHead(input_dim, cfg.hidden_size, cfg.layers, cfg.dropout, pooling, norm=cfg.pool_norm)
    raise UserError(f"unknown head {cfg.head!r}; choose one of {', '.join(HEADS)}")
