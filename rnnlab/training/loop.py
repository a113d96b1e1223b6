"""The training loop's inner parts: batches streamed to each rank, optimizer steps, sharded evaluation."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

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
        # backward, so such a rank runs one stand-in item whose loss counts zero.
        return position, batch, idx, *self.inputs.batch(idx or batch[:1])


def batch_stream(inputs: Inputs, batches: list[list[int]], start: int, dist: Dist, workers: int) -> DataLoader:
    """Batches `start`, `start + 1`, … of an epoch, prepared by `workers` background processes (0: inline)."""
    shards = _Shards(inputs, batches, dist.rank, dist.world_size)
    # Its own generator: a DataLoader otherwise draws its workers' seed from the global RNG, which would shift
    # the dropout stream of a resumed epoch against an uninterrupted one.
    return DataLoader(shards, batch_size=None, sampler=range(start, len(batches)), num_workers=workers,
                      generator=torch.Generator())  # fmt: skip


def train_steps(
    model: nn.Module,
    labels: torch.Tensor,
    stream: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    prec: Precision,
    dist: Dist,
    clip_norm: float | None,
    after_step: Callable[[int, float, int], bool],
    vectors: bool,
) -> None:
    """Run optimizer steps over `batch_stream` items until `after_step(position, local loss, local n)` says stop.

    The loss is the local sum divided by the global batch size, times world size because DDP averages
    gradients over ranks: the step then equals one process on the whole batch. `vectors`: the stream carries a
    frozen encoder's cached token vectors instead of token ids.
    """
    scaler = torch.amp.GradScaler(enabled=prec.dtype == torch.float16)
    model.train()
    for position, batch, idx, x, mask in stream:
        weight = dist.world_size / len(batch) if idx else 0.0
        with prec.autocast():
            logits = model(x.to(prec.device), mask.to(prec.device), vectors=vectors)  # [B, C]
        targets = labels[list(idx or batch[:1])].to(prec.device)
        loss_sum = F.cross_entropy(logits.float(), targets, reduction="sum")  # logits in, never probabilities
        scaler.scale(loss_sum * weight).backward()
        if clip_norm:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if after_step(position, loss_sum.item() if idx else 0.0, len(idx)):
            break


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
