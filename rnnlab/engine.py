"""The inner loops: device and precision, batches of inputs, one training epoch, evaluation."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from rnnlab.data.batching import collate, shard
from rnnlab.distributed import Dist


def configure_math() -> None:
    """Flush denormal floats to zero. Recurrent states and gradients drift into the denormal range, where x86
    arithmetic is ~100× slower: an fp32 LSTM forward + backward (B=16, T=256) took 7.7 s with denormals, 0.11 s
    without. Values that small carry no signal for a classifier."""
    torch.set_flush_denormal(True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 where the hardware runs it natively, fp16 on older GPUs, else full precision."""
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


@dataclass
class Precision:
    device: torch.device
    dtype: torch.dtype | None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


class Inputs:
    """Texts as the model consumes them: token ids, or the cached token vectors of a frozen encoder."""

    def __init__(self, token_ids: Sequence[Sequence[int]], pad_id: int, store=None) -> None:
        self.token_ids, self.pad_id, self.store = token_ids, pad_id, store
        self.lengths = np.fromiter((len(t) for t in token_ids), dtype=np.int64, count=len(token_ids))

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.store is not None:
            return self.store.get(list(indices))  # [B, T, D] float, [B, T]
        return collate([self.token_ids[i] for i in indices], self.pad_id)  # [B, T] ids, [B, T]


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
    prec: Precision,
    dist: Dist,
    clip_norm: float | None,
    after_step: Callable[[int, float, int], bool],
) -> None:
    """Run optimizer steps over `batch_stream` items until `after_step(position, local loss, local n)` says stop.

    The loss is the local sum divided by the global batch size, times world size because DDP averages
    gradients over ranks: the step then equals one process on the whole batch.
    """
    scaler = torch.amp.GradScaler(enabled=prec.dtype == torch.float16)
    model.train()
    for position, batch, idx, x, mask in stream:
        weight = dist.world_size / len(batch) if idx else 0.0
        with prec.autocast():
            logits = model(x.to(prec.device), mask.to(prec.device))  # [B, C]
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


@torch.inference_mode()
def predict_probs(model: nn.Module, inputs: Inputs, indices: Sequence[int], prec: Precision, batch_size: int) -> np.ndarray:
    """Class probabilities [N, C] in the order of `indices`, batched by length for speed."""
    model.eval()
    order = np.argsort(inputs.lengths[list(indices)], kind="stable")
    out: list[np.ndarray] = [None] * len(indices)  # type: ignore[list-item]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        x, mask = inputs.batch([indices[i] for i in chunk])
        with prec.autocast():
            logits = model(x.to(prec.device), mask.to(prec.device))
        probs = logits.float().softmax(-1).cpu().numpy()
        for i, p in zip(chunk, probs):
            out[i] = p
    return np.stack(out) if out else np.zeros((0, 0))


def scores(confusion: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 from a confusion matrix (rows: true, columns: predicted)."""
    tp = np.diag(confusion).astype(float)
    precision = np.divide(tp, confusion.sum(0), out=np.zeros_like(tp), where=confusion.sum(0) > 0)
    recall = np.divide(tp, confusion.sum(1), out=np.zeros_like(tp), where=confusion.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    return {"accuracy": float(tp.sum() / max(confusion.sum(), 1)), "macro_f1": float(f1.mean())}


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
