"""fit(): setup → data → model → epochs with early stopping and checkpoints → one test evaluation."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from rnnlab import runs
from rnnlab.config import RunConfig
from rnnlab.data.batching import LengthBucketSampler
from rnnlab.data.split import Prepared, prepare
from rnnlab.errors import UserError
from rnnlab.metrics import per_class
from rnnlab.model import TextClassifier, build_model, count_parameters, load_saved_state, load_tensors, save_tensors, saved_state
from rnnlab.peak_memory import peak_mb, reset_peak
from rnnlab.runs import atomic_write_json
from rnnlab.runtime import Inputs, Precision, WindowInputs, autocast_dtype, configure_math, inputs_for, resolve_device
from rnnlab.training.checkpoint import load_training, save_training
from rnnlab.training.class_weights import class_weights, weighted_accuracy
from rnnlab.training.distill import check_teacher, distill_loss, teacher_logits, with_transfer_set
from rnnlab.training.distributed import Dist, init_distributed, shutdown
from rnnlab.training.loop import LossFn, Optimization, TrainState, batch_stream, cross_entropy, evaluate, train_epoch
from rnnlab.training.optim import head_lr, make_optimizer, make_schedule, unfreeze, unfreezing_groups
from rnnlab.training.tracking import NoTracker, Tracker, open_tracker, require


@dataclass
class Setup:
    cfg: RunConfig
    run: Path
    dist: Dist
    prec: Precision
    data: Prepared
    inputs: Inputs
    labels: torch.Tensor
    model: TextClassifier
    log: Any
    split_hash: str
    loss_fn: LossFn
    tracker: Tracker = dataclasses.field(default_factory=NoTracker)
    weights: torch.Tensor | None = None
    """Per-class loss weights (--class-weights), or None."""
    on_epoch: Callable[[dict[str, Any]], None] | None = None
    """Called with each epoch's metrics row once it is recorded (`rnnlab tune` reports to its pruner through it)."""


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(cfg: RunConfig, resume: bool = False, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train a classifier as `cfg` says, in this process or as one rank under torchrun; returns results.
    `on_epoch(row)` sees every epoch's metrics; an exception it raises ends the run there (unfinished)."""
    configure_math()
    reset_peak()  # this run's own peak, also when a grid trains many runs in one process
    device = resolve_device(cfg.train.device)
    dist = init_distributed(device)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    try:
        setup = _setup(cfg, device, dist, resume)
        setup.tracker = open_tracker(cfg.train.tracking.report_to, setup.run, enabled=dist.is_main, resume=resume)
        setup.on_epoch = on_epoch
        with setup.tracker:
            setup.tracker.log_params(cfg.to_dict())
            state = _train(setup, resume)
            return _finish(setup, state)
    finally:
        shutdown(dist)


def _setup(cfg: RunConfig, device: torch.device, dist: Dist, resume: bool) -> Setup:
    run = _run_dir(cfg, dist)
    runs.check_claim(run, cfg.overwrite, resume)  # before reading any data: a refused run costs nothing
    require(cfg.train.tracking.report_to)
    # Data and encoder come before the run folder is claimed, so bad input leaves no folder behind.
    data = prepare(cfg.dataset).compact()
    weights = class_weights(cfg.train.class_weights, data)
    if cfg.train.distill.teacher:
        check_teacher(cfg.train.distill, data)
    set_seed(cfg.train.seed)
    # The transfer set comes first: a pruned word-vector table keeps the words it swaps in too.
    transfer = with_transfer_set(data, cfg.train.distill, cfg.train.seed) if cfg.train.distill.teacher else data
    encoder = _encoder(cfg, run, data, dist, resume, transfer.texts[len(data.texts) :])
    log = runs.open_log(run if dist.is_main else None)
    split_hash = record_split(run, data, dist, resume)  # of the split as it is: a transfer set only adds to train
    data = transfer
    prec = Precision(device, autocast_dtype(device, cfg.train.bf16))
    inputs = _inputs(cfg, encoder, data, prec, dist)
    model = build_model(cfg, encoder, len(data.label_names)).to(device)
    trainable, total = count_parameters(model)
    log.info("run %s: %s, %d/%d trainable parameters, precision %s", run, cfg.to_dict(), trainable, total, prec.dtype)
    if inputs.store is not None:
        store = inputs.store  # its size is what --layer-mix multiplies
        log.info("feature cache %s: %d texts, %d wide, %.1f MB", store.folder, len(store), store.dim, store.vectors.nbytes / 1e6)
    labels = torch.as_tensor(data.labels, dtype=torch.long)
    loss_fn = _loss(cfg, run, data, labels, dist, weights=weights)
    return Setup(cfg, run, dist, prec, data, inputs, labels, model, log, split_hash, loss_fn, weights=weights)


def _loss(cfg: RunConfig, run: Path, data: Prepared, labels: torch.Tensor, dist: Dist, *, weights: torch.Tensor | None) -> LossFn:
    """Cross-entropy, or with --teacher the distillation loss on the teacher's stored logits (rank 0 computes
    them; the other ranks read rank 0's file)."""
    if not cfg.train.distill.teacher:
        return cross_entropy(labels, weights)
    if dist.is_main:
        teacher = teacher_logits(run, data, cfg.train.distill, device=cfg.train.device)
    dist.barrier()
    if not dist.is_main:
        teacher = teacher_logits(run, data, cfg.train.distill, device=cfg.train.device)
    return distill_loss(cfg.train.distill, teacher, labels, weights)


def _encoder(cfg: RunConfig, run: Path, data: Prepared, dist: Dist, resume: bool, transfer_texts: list[str]):
    """Rank 0 builds the encoder (or reloads the run's when resuming), claims the folder and saves it there;
    the other ranks then load rank 0's copy, so the vocabulary is learnt (or pruned) once per run."""
    from rnnlab.encoders import LMEncoder, build_encoder, load_encoder

    encoder = None
    if dist.is_main:
        train_texts = [data.texts[i] for i in data.split["train"]]
        encoder = load_encoder(run) if resume else build_encoder(cfg.encoder, train_texts, transfer_texts)
        if isinstance(encoder, LMEncoder):  # a language model must not have read the texts this run is scored on
            held_out = np.concatenate([data.split["val"], data.split["test"]])
            encoder.check_unseen(data.source, set(data.dataset_ids(held_out).tolist()))
        runs.claim(run, cfg.overwrite, resume)
        if not resume:
            runs.write_config(run, dataclasses.replace(cfg, run_dir=str(run), overwrite=False))
            encoder.save(run)
    dist.barrier()
    return encoder if encoder is not None else load_encoder(run)


def _run_dir(cfg: RunConfig, dist: Dist) -> Path:
    path = [str(cfg.run_dir or runs.default_run_dir(cfg))]
    if dist.enabled:  # the default name holds a timestamp: every rank must use rank 0's
        torch.distributed.broadcast_object_list(path, src=0)
    return Path(path[0])


def record_split(run: Path, data: Prepared, dist: Dist, resume: bool) -> str:
    """Write split.json and labels.json (refusing a resume on changed data); returns the split's hash."""
    manifest = data.manifest()
    if resume and (run / runs.SPLIT).is_file():
        saved = json.loads((run / runs.SPLIT).read_text())
        if saved.get("hash") != manifest["hash"]:
            raise UserError(f"{run}: the data changed since this run started (split hash differs); start a new run")
    if dist.is_main:
        atomic_write_json(run / runs.SPLIT, manifest)
        atomic_write_json(run / runs.LABELS, data.label_names)
    return manifest["hash"]


def _inputs(cfg: RunConfig, encoder, data: Prepared, prec: Precision, dist: Dist) -> Inputs:
    """Token ids for a trainable encoder; for a frozen (or partly frozen) transformer, its trunk's cached rows."""
    from rnnlab.training.features import default_cache_dir, encode_cached
    from rnnlab.training.token_ids import cached_token_ids

    ids_cache = Path(cfg.encoder.cache_dir) / "token-ids" if cfg.encoder.cache_dir else None
    inputs = inputs_for(encoder, cached_token_ids(encoder, data.texts, ids_cache, rank=dist.rank, barrier=dist.barrier))
    if prec.device.type == "cuda":
        inputs.round_to = 32  # few batch widths: see data.batching.widen
    if not encoder.cacheable:
        return inputs
    rows = inputs.flat() if isinstance(inputs, WindowInputs) else inputs.token_ids  # one cached row per window
    cache = Path(cfg.encoder.cache_dir) if cfg.encoder.cache_dir else default_cache_dir()
    inputs.store = encode_cached(
        encoder.to(prec.device), rows, cache, device=prec.device, autocast_dtype=prec.dtype,
        progress=cfg.train.progress and dist.is_main, rank=dist.rank, world_size=dist.world_size, barrier=dist.barrier,
    )  # fmt: skip
    return inputs


def _train(s: Setup, resume: bool) -> TrainState:
    cfg, train_idx = s.cfg.train, s.data.split["train"]
    # The batches must not depend on the world size: N processes then take exactly the steps one process
    # takes, and a checkpoint's position names the same batches whatever the world size on resume.
    sampler = LengthBucketSampler(s.inputs.lengths[train_idx], cfg.batch_size, shuffle=True, seed=cfg.seed)
    steps_per_epoch = len(sampler)
    ddp = _wrap(s.model, s.dist)
    optimizer = make_optimizer(s.cfg, s.model)
    total = steps_per_epoch * cfg.epochs
    scheduler = make_schedule(optimizer, min(cfg.max_steps or total, total), cfg.warmup)
    state = _load_checkpoint(s, optimizer, scheduler) if resume else TrainState()
    groups = unfreezing_groups(s.cfg, s.model)
    while state.epoch < cfg.epochs and not _done(s, state):
        unfreeze(groups, state.epoch)
        batches = [[int(train_idx[i]) for i in batch] for batch in sampler.batches(state.epoch)]
        _run_epoch(s, state, batches, ddp, optimizer, scheduler)
        _end_epoch(s, state, lr=head_lr(optimizer, s.cfg.train.lr))
        _save_checkpoint(s, state, optimizer, scheduler)
    return state


def _run_epoch(s: Setup, state: TrainState, batches: list[list[int]], ddp, optimizer, scheduler) -> None:
    """Train from `state.position` to the end of the epoch, checkpointing every `checkpoint_every` steps."""
    cfg = s.cfg.train
    bar = tqdm(total=len(batches), initial=state.position, desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
               disable=not (cfg.progress and s.dist.is_main), leave=False)  # fmt: skip
    opt = Optimization(optimizer, scheduler, s.prec, s.dist, cfg.clip_norm, s.loss_fn)
    stream = batch_stream(s.inputs, batches, state.position, s.dist, cfg.workers, pin=s.prec.device.type == "cuda")
    checkpoint = lambda: _save_checkpoint(s, state, optimizer, scheduler)  # noqa: E731
    on_log = (lambda step, loss: s.tracker.log_metrics({"step_loss": loss}, step)) if s.tracker.reports else None
    train_epoch(ddp, stream, opt, state, cached=s.inputs.store is not None, progress=bar, max_steps=cfg.max_steps,
                checkpoint=checkpoint, checkpoint_every=cfg.checkpoint_every, on_log=on_log,
                log_every=cfg.tracking.log_every)  # fmt: skip
    bar.close()


def _wrap(model: TextClassifier, dist: Dist) -> torch.nn.Module:
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    device = next(model.parameters()).device
    device_ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=device_ids)


def _done(s: Setup, state: TrainState) -> bool:
    stopped_early = state.bad_epochs >= s.cfg.train.patience
    return stopped_early or (s.cfg.train.max_steps is not None and state.step >= s.cfg.train.max_steps)


def _end_epoch(s: Setup, state: TrainState, *, lr: float) -> None:
    """Validate, keep the best weights, record the epoch, and move to the next one."""
    val = evaluate(s.model, s.inputs, s.data.split["val"], s.labels, len(s.data.label_names), s.prec, s.dist)
    totals = s.dist.all_reduce_sum(torch.tensor([state.loss_sum, state.seen], dtype=torch.float64))
    state.epoch, state.position = state.epoch + 1, 0
    row = {"epoch": state.epoch, "step": state.step, "train_loss": totals[0].item() / max(totals[1].item(), 1),
           "val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"],
           "lr": lr, "seconds": round(state.loop_seconds, 2)}  # fmt: skip
    score = val["accuracy"]
    if s.weights is not None:  # the best epoch by the same class weights as the loss
        score = row["val_weighted_accuracy"] = weighted_accuracy(val["confusion"], s.weights)
    state.history.append(row)
    state.loss_sum, state.seen = 0.0, 0
    if score > state.best_accuracy:
        state.best_accuracy, state.best_epoch, state.bad_epochs = score, state.epoch, 0
        if s.dist.is_main:
            save_tensors(s.run / runs.WEIGHTS, saved_state(s.model), {"epoch": state.epoch})
    else:
        state.bad_epochs += 1
    msg = f"epoch {state.epoch}: train loss {row['train_loss']:.4f}  val loss {val['loss']:.4f}  val acc {val['accuracy']:.4f}"
    s.log.info(msg)
    if s.dist.is_main:
        tqdm.write(msg)
        runs.write_metrics(s.run, state.history)
        s.tracker.log_metrics(row, step=state.step)
    if s.on_epoch is not None:
        s.on_epoch(row)


def _save_checkpoint(s: Setup, state: TrainState, optimizer, scheduler) -> None:
    if s.dist.is_main:
        save_training(s.run / runs.CHECKPOINT, saved_state(s.model), optimizer, scheduler, dataclasses.asdict(state))


def _load_checkpoint(s: Setup, optimizer, scheduler) -> TrainState:
    path = s.run / runs.CHECKPOINT
    if not path.is_file():
        raise UserError(f"{s.run}: nothing to resume (no {runs.CHECKPOINT})")
    weights, state = load_training(path, optimizer, scheduler)
    load_saved_state(s.model, weights, path)
    return TrainState(**state)


def _finish(s: Setup, state: TrainState) -> dict[str, Any]:
    """Evaluate the test set once (unless --no-evaluate-test), on the best validation checkpoint, and write the results."""
    s.dist.barrier()  # rank 0 may still be writing the best weights of the last epoch
    weights, _ = load_tensors(s.run / runs.WEIGHTS)
    load_saved_state(s.model, weights, s.run / runs.WEIGHTS)
    trainable, total = count_parameters(s.model)
    test = _test(s) if s.cfg.train.evaluate_test else {"test_accuracy": None, "test_macro_f1": None, "test_loss": None}
    results = {"finished": True, **test, "label_names": s.data.label_names,
               "best_epoch": state.best_epoch, "best_val_accuracy": state.best_accuracy,
               "train_seconds": round(state.loop_seconds, 2),
               "reviews_per_s": round(state.total_seen * s.dist.world_size / max(state.loop_seconds, 1e-9), 2),
               "peak_memory_mb": round(peak_mb(), 1), "params_trainable": trainable, "params_total": total,
               "encoder": s.cfg.encoder.encoder, "head": s.cfg.model.head, "finetune": s.model.encoder.trainable,
               "seed": s.cfg.train.seed, "split_hash": s.split_hash, "teacher": s.cfg.train.distill.teacher,
               "class_weights": None if s.weights is None else s.weights.tolist()}  # fmt: skip
    if s.dist.is_main:
        runs.plot_curves(state.history, s.run / runs.CURVES)
        atomic_write_json(s.run / runs.RESULTS, results)
        s.tracker.log_results(results)
        (s.run / runs.CHECKPOINT).unlink(missing_ok=True)
    if results["test_accuracy"] is not None:
        s.log.info("test accuracy %.4f, macro-F1 %.4f", results["test_accuracy"], results["test_macro_f1"])
    return results


def _test(s: Setup) -> dict[str, Any]:
    """The test split's scores (recall per class by label) and, from rank 0, its predictions file."""
    test_idx = s.data.split["test"]
    test = evaluate(s.model, s.inputs, test_idx, s.labels, len(s.data.label_names), s.prec, Dist())
    if s.dist.is_main:
        runs.write_predictions(s.run, s.data.dataset_ids(test_idx), s.data.labels[test_idx], test["probs"], s.data.label_names)
    recall = per_class(np.asarray(test["confusion"]))["recall"]
    return {"test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"], "test_loss": test["loss"],
            "test_recall": dict(zip(s.data.label_names, recall)), "confusion_matrix": test["confusion"]}  # fmt: skip
