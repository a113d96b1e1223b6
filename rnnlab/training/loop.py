"""The training loop: batches streamed to each rank, one epoch of optimizer steps, sharded evaluation."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from rnnlab.data.batching import shard
from rnnlab.metrics import scores
from rnnlab.runtime import Inputs, Precision, predict_probs
from rnnlab.training.distributed import Dist


class _Shards(torch.utils.data.Dataset):
    """Item p: (p, global batch p, this rank's share of it, its inputs); built in worker processes with --workers."""

    def __init__(self, inputs: Inputs, batches: list[list[int]], rank: int, world_size: int) -> None:
        self.inputs, self.batches, self.rank, self.world_size = inputs, batches, rank, world_size

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, position: int):
        batch = self.batches[position]
        idx = shard(batch, self.rank, self.world_size)
        # A batch smaller than the world leaves some ranks without items; DDP still needs every rank's
        # backward, so such a rank runs one stand-in item whose loss counts zero (see _step).
        return position, batch, idx, *self.inputs.batch(idx or batch[:1])


def batch_stream(inputs: Inputs, batches: list[list[int]], start: int, dist: Dist, workers: int) -> DataLoader:
    """Batches `start`, `start + 1`, … of an epoch, prepared by `workers` background processes (0: inline)."""
    shards = _Shards(inputs, batches, dist.rank, dist.world_size)
    # Its own generator: a DataLoader otherwise draws its workers' seed from the global RNG, which would shift
    # the dropout stream of a resumed epoch against an uninterrupted one.
    return DataLoader(shards, batch_size=None, sampler=range(start, len(batches)), num_workers=workers,
                      generator=torch.Generator())  # fmt: skip


LossFn = Callable[[torch.Tensor, list[int]], torch.Tensor]
"""(logits [B, C], the batch's row indices) → the batch's summed loss; distillation passes its own."""


def cross_entropy(labels: torch.Tensor) -> LossFn:
    """The classification loss: summed cross-entropy of logits (never probabilities) against `labels`."""
    return lambda logits, rows: F.cross_entropy(logits.float(), labels[rows].to(logits.device), reduction="sum")


@dataclass
class TrainState:
    """Everything besides tensors that a resumed run needs to continue exactly where it stopped."""

    epoch: int = 0  # epochs completed
    position: int = 0  # batches done within the current epoch
    step: int = 0
    loss_sum: float = 0.0
    seen: int = 0
    total_seen: int = 0  # local examples trained on, over all epochs
    best_accuracy: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    loop_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def record_step(self, position: int, loss: float, n: int, seconds: float) -> None:
        self.position, self.step, self.loop_seconds = position + 1, self.step + 1, self.loop_seconds + seconds
        self.loss_sum, self.seen, self.total_seen = self.loss_sum + loss, self.seen + n, self.total_seen + n


@dataclass
class Optimization:
    """What one optimizer step needs besides the model and the batch."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    prec: Precision
    dist: Dist
    clip_norm: float | None
    loss_fn: LossFn


def train_epoch(
    model: nn.Module,
    stream: Iterable,
    opt: Optimization,
    state: TrainState,
    *,
    cached: bool,
    checkpoint: Callable[[], None] | None = None,
    checkpoint_every: int = 0,
    max_steps: int | None = None,
    progress: tqdm | None = None,
) -> None:
    """Train on `stream` (from `batch_stream`) to the end of the epoch or `max_steps`. `cached`: the stream carries
    rows of the encoder's frozen trunk from the feature cache instead of token ids."""
    scaler = torch.amp.GradScaler(enabled=opt.prec.dtype == torch.float16)
    model.train()
    clock = time.perf_counter()
    for position, batch, idx, x, mask in stream:
        # forward, backward, step
        loss, n = _step(model, (batch, idx, x, mask), opt, scaler=scaler, cached=cached)
        # bookkeeping
        now = time.perf_counter()
        state.record_step(position, loss, n, now - clock)
        clock = now
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss / max(n, 1):.4f}")
        # checkpoint
        if checkpoint is not None and state.step % checkpoint_every == 0:
            checkpoint()
            clock = time.perf_counter()  # checkpoint I/O is not training time
        kill_hook_for_tests(state.step)
        # stop
        if max_steps is not None and state.step >= max_steps:
            break


def _step(model: nn.Module, item: tuple, opt: Optimization, *, scaler, cached: bool) -> tuple[float, int]:
    """One optimizer step; returns this rank's summed loss and its example count.

    The loss is the local sum divided by the global batch size, times world size because DDP averages
    gradients over ranks: the step then equals one process on the whole batch. A batch smaller than the world
    leaves some ranks without items; such a rank runs one stand-in item whose loss counts zero.
    """
    batch, idx, x, mask = item  # the global batch, this rank's share of it, and that share's inputs
    weight = opt.dist.world_size / len(batch) if idx else 0.0
    with opt.prec.autocast():
        logits = model(x.to(opt.prec.device), mask.to(opt.prec.device), cached=cached)  # [B, C]
    loss_sum = opt.loss_fn(logits, list(idx or batch[:1]))
    scaler.scale(loss_sum * weight).backward()
    if opt.clip_norm:
        scaler.unscale_(opt.optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), opt.clip_norm)
    scaler.step(opt.optimizer)
    scaler.update()
    opt.optimizer.zero_grad(set_to_none=True)
    opt.scheduler.step()
    return (loss_sum.item() if idx else 0.0), len(idx)


_KILL_AT_STEP = os.environ.get("RNNLAB_TEST_KILL_AT_STEP")  # read once: the tests set it before the process starts


def kill_hook_for_tests(step: int) -> None:
    """For tests/test_resume.py only: RNNLAB_TEST_KILL_AT_STEP=k kills this process (SIGKILL) right after step k."""
    if _KILL_AT_STEP == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


def evaluate(model, inputs: Inputs, indices, labels: torch.Tensor, num_classes: int, prec: Precision, dist: Dist) -> dict:
    """Loss, accuracy, macro-F1 and confusion on `indices`, sharded over ranks and all-reduced."""
    local = list(indices)[dist.rank :: dist.world_size]
    probs = predict_probs(model, inputs, local, prec, batch_size=64)
    y = labels[local].numpy()
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    loss = 0.0
    if len(local):
        np.add.at(confusion, (y, probs.argmax(1)), 1)
        loss = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).sum())
    totals = dist.all_reduce_sum(torch.tensor(np.append(confusion.ravel(), [loss, len(local)]), dtype=torch.float64))
    confusion = totals[:-2].numpy().reshape(num_classes, num_classes).astype(np.int64)
    n = max(totals[-1].item(), 1.0)
    return {"loss": totals[-2].item() / n, **scores(confusion), "confusion": confusion.tolist(), "probs": probs}
