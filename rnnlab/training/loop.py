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

from rnnlab.data.batching import ahead, shard
from rnnlab.metrics import scores
from rnnlab.runtime import Inputs, Precision, inference_batch_size, predict_probs
from rnnlab.training.distributed import Dist


class _Shards(torch.utils.data.Dataset):
    """Item p: (p, global batch p, this rank's share of it, its inputs, its rows as a tensor); built in worker
    processes with --workers."""

    def __init__(self, inputs: Inputs, batches: list[list[int]], rank: int, world_size: int) -> None:
        self.inputs, self.batches, self.rank, self.world_size = inputs, batches, rank, world_size

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, position: int):
        batch = self.batches[position]
        idx = shard(batch, self.rank, self.world_size)
        # A batch smaller than the world leaves some ranks without items; DDP still needs every rank's
        # backward, so such a rank runs one stand-in item whose loss counts zero (see _step).
        rows = idx or batch[:1]
        return position, batch, idx, *self.inputs.batch(rows), torch.tensor(rows, dtype=torch.long)


def batch_stream(
    inputs: Inputs, batches: list[list[int]], start: int, dist: Dist, workers: int, *, pin: bool = False
) -> Iterable:
    """Batches `start`, `start + 1`, … of an epoch, prepared ahead by a background thread (and `workers` processes;
    0: in that thread), in pinned memory when `pin` (for non-blocking copies to a GPU)."""
    shards = _Shards(inputs, batches, dist.rank, dist.world_size)
    # Its own generator: a DataLoader otherwise draws its workers' seed from the global RNG, which would shift
    # the dropout stream of a resumed epoch against an uninterrupted one.
    loader = DataLoader(shards, batch_size=None, sampler=range(start, len(batches)), num_workers=workers,
                        generator=torch.Generator(), pin_memory=pin)  # fmt: skip
    return ahead(loader)


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(logits [B, C], the batch's row indices [B] on the logits' device) → the batch's summed loss; distillation passes
its own."""

LOG_EVERY = 50
"""Steps between reads of the running loss from the device: each read waits for the device to finish."""


def on_device(table: torch.Tensor) -> Callable[[torch.device], torch.Tensor]:
    """`table` (labels, teacher logits) copied to a device once, so that indexing it by a batch's rows needs no
    copy and no host synchronization inside a step."""
    copies: dict[torch.device, torch.Tensor] = {}
    return lambda device: copies.setdefault(device, table.to(device))


def cross_entropy(labels: torch.Tensor, weights: torch.Tensor | None = None) -> LossFn:
    """The classification loss: summed cross-entropy of logits (never probabilities) against `labels`, each text
    weighted by its class's entry of `weights` [C] when given (--class-weights)."""
    labels_on = on_device(labels)
    weights_on = on_device(weights) if weights is not None else lambda device: None

    def loss(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        device = logits.device
        return F.cross_entropy(logits.float(), labels_on(device)[rows], weight=weights_on(device), reduction="sum")

    return loss


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
        """One step whose loss the caller has already read (the language model's loop: rnnlab.lm.train)."""
        self.position, self.step, self.loop_seconds = position + 1, self.step + 1, self.loop_seconds + seconds
        self.loss_sum, self.seen, self.total_seen = self.loss_sum + loss, self.seen + n, self.total_seen + n


class _Running:
    """The loss summed on the device since the last read, and the examples behind it; `read` folds both into the
    state (one host synchronization) and returns the mean loss per example of the steps it covers."""

    def __init__(self) -> None:
        self.loss: torch.Tensor | None = None
        self.seen = 0

    def add(self, loss: torch.Tensor, n: int) -> None:
        self.loss = loss if self.loss is None else self.loss + loss
        self.seen += n

    def read(self, state: TrainState) -> float:
        loss = self.loss.item() if self.loss is not None else 0.0
        state.loss_sum, state.seen, state.total_seen = state.loss_sum + loss, state.seen + self.seen, state.total_seen + self.seen
        mean = loss / max(self.seen, 1)
        self.loss, self.seen = None, 0
        return mean


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
    on_log: Callable[[int, float], None] | None = None,
    log_every: int = 0,
) -> None:
    """Train on `stream` (from `batch_stream`) to the end of the epoch or `max_steps`. `cached`: the stream carries
    rows of the encoder's frozen trunk from the feature cache instead of token ids. The loss stays on the device
    and is read every `LOG_EVERY` steps, before a checkpoint and at the end: the host never waits inside a step.
    `on_log(step, loss)` is called every `log_every` steps with the mean loss since its last call (or the epoch's
    start)."""
    scaler = torch.amp.GradScaler(enabled=opt.prec.dtype == torch.float16)
    model.train()
    running, clock = _Running(), time.perf_counter()
    logged = (state.loss_sum, state.seen)
    for position, batch, idx, x, mask, rows in stream:
        loss, n = _step(model, (batch, idx, x, mask, rows), opt, scaler=scaler, cached=cached)
        running.add(loss, n)
        state.position, state.step = position + 1, state.step + 1
        if progress is not None:
            progress.update(1)
        due = checkpoint is not None and state.step % checkpoint_every == 0
        stop = max_steps is not None and state.step >= max_steps
        report = on_log is not None and state.step % log_every == 0
        if due or stop or report or state.step % LOG_EVERY == 0:
            clock = _read(state, running, clock, progress)
        if report:
            on_log(state.step, (state.loss_sum - logged[0]) / max(state.seen - logged[1], 1))
            logged, clock = (state.loss_sum, state.seen), time.perf_counter()  # reporting is not training time
        if due:
            checkpoint()
            clock = time.perf_counter()  # checkpoint I/O is not training time
        kill_hook_for_tests(state.step)
        if stop:
            break
    _read(state, running, clock, progress)


def _read(state: TrainState, running: _Running, clock: float, progress: tqdm | None) -> float:
    """Fold the running loss into the state and count the time since `clock` as training; returns the new clock."""
    mean = running.read(state)
    now = time.perf_counter()
    state.loop_seconds += now - clock
    if progress is not None:
        progress.set_postfix(loss=f"{mean:.4f}")
    return now


def _step(model: nn.Module, item: tuple, opt: Optimization, *, scaler, cached: bool) -> tuple[torch.Tensor, int]:
    """One optimizer step; returns this rank's summed loss (on the device, detached) and its example count.

    The loss is the local sum divided by the global batch size, times world size because DDP averages
    gradients over ranks: the step then equals one process on the whole batch. A batch smaller than the world
    leaves some ranks without items; such a rank runs one stand-in item whose loss counts zero.
    """
    batch, idx, x, mask, rows = item  # the global batch, this rank's share of it, that share's inputs and rows
    weight = opt.dist.world_size / len(batch) if idx else 0.0
    device = opt.prec.device
    with opt.prec.autocast():
        logits = model(x.to(device, non_blocking=True), mask.to(device, non_blocking=True), cached=cached)  # [B, C]
    loss_sum = opt.loss_fn(logits, rows.to(device, non_blocking=True))
    scaler.scale(loss_sum * weight).backward()
    if opt.clip_norm:
        scaler.unscale_(opt.optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), opt.clip_norm)
    scaler.step(opt.optimizer)
    scaler.update()
    opt.optimizer.zero_grad(set_to_none=True)
    opt.scheduler.step()
    return loss_sum.detach() * (1.0 if idx else 0.0), len(idx)


_KILL_AT_STEP = os.environ.get("RNNLAB_TEST_KILL_AT_STEP")  # read once: the tests set it before the process starts


def kill_hook_for_tests(step: int) -> None:
    """For tests/test_resume.py only: RNNLAB_TEST_KILL_AT_STEP=k kills this process (SIGKILL) right after step k."""
    if _KILL_AT_STEP == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


def evaluate(model, inputs: Inputs, indices, labels: torch.Tensor, num_classes: int, prec: Precision, dist: Dist) -> dict:
    """Loss, accuracy, macro-F1 and confusion on `indices`, sharded over ranks and all-reduced."""
    local = list(indices)[dist.rank :: dist.world_size]
    probs = predict_probs(model, inputs, local, prec, batch_size=inference_batch_size(prec.device))
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
