"""`rnnlab lm train`: an AWD-LSTM language model on the training split's texts, by stateful truncated BPTT and one cycle.

The run folder holds config.json, split.json (the same split a classifier on these data options uses; the LM reads
only its training texts), the vocabulary, model.safetensors (after every epoch), checkpoint.safetensors (weights,
optimizer, RNG and the recurrent state mid-epoch, so a killed run resumes exactly), metrics.jsonl, samples.md and, once
finished, results.json.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from rnnlab import runs
from rnnlab.data.split import Prepared, prepare
from rnnlab.encoders.lm import LanguageModel, State
from rnnlab.encoders.lm_vocab import EOS, LMVocab
from rnnlab.lm.config import LMConfig
from rnnlab.lm.evaluate import perplexity
from rnnlab.lm.sampling import sample_ids
from rnnlab.lm.stream import count_windows, count_words, join, rows, windows
from rnnlab.model import count_parameters, save_tensors
from rnnlab.runtime import Precision, autocast_dtype, configure_math, resolve_device
from rnnlab.training.checkpoint import load_training, save_training
from rnnlab.training.distributed import Dist
from rnnlab.training.fit import record_split, set_seed
from rnnlab.training.loop import TrainState, kill_hook_for_tests
from rnnlab.training.optim import make_one_cycle

SAMPLES = "samples.md"


@dataclass
class LMSetup:
    cfg: LMConfig
    run: Path
    prec: Precision
    vocab: LMVocab
    train_docs: list[list[int]]
    val_docs: list[list[int]]
    val_words: int
    model: LanguageModel
    log: Any


def train_lm(cfg: LMConfig, resume: bool = False) -> dict[str, Any]:
    """Train the language model `cfg` describes (or continue `cfg.run_dir` from its checkpoint); returns its results."""
    configure_math()
    s = _setup(cfg, resume)
    optimizer = _optimizer(s)
    steps_per_epoch = count_windows(len(join(s.train_docs)) // cfg.batch_size, cfg.bptt)
    total = max(1, min(cfg.max_steps or steps_per_epoch * cfg.epochs, steps_per_epoch * cfg.epochs))
    scheduler = make_one_cycle(optimizer, total, cfg.warmup)
    state, hidden = _load_checkpoint(s, optimizer, scheduler) if resume else (TrainState(), None)
    while state.epoch < cfg.epochs and not _stopped(cfg, state):
        hidden = _run_epoch(s, state, hidden, optimizer, scheduler)
        if state.position == 0:  # the epoch ran to its end
            _end_epoch(s, state, lr=scheduler.get_last_lr()[0])
            hidden = None
        _save_checkpoint(s, state, hidden, optimizer, scheduler)
    return _finish(s, state)


def _setup(cfg: LMConfig, resume: bool) -> LMSetup:
    run = Path(cfg.run_dir or Path("runs") / f"lm-{cfg.vocab}-{time.strftime('%Y%m%d-%H%M%S')}")
    runs.check_claim(run, cfg.overwrite, resume, verb="lm train")
    data = prepare(cfg.dataset).compact()
    train_texts = _texts(data, "train")
    set_seed(cfg.seed)
    # Learned once per run from the training texts alone; a resume reads the run's own.
    vocab = LMVocab.load(run) if resume else LMVocab.learn(train_texts, cfg.vocab, cfg.vocab_size)
    runs.claim(run, cfg.overwrite, resume, verb="lm train")
    if not resume:
        runs.atomic_write_json(run / runs.CONFIG, dataclasses.replace(cfg, run_dir=str(run), overwrite=False).to_dict())
        vocab.save(run)
    record_split(run, data, Dist(), resume)
    device = resolve_device(cfg.device)
    model = LanguageModel(vocab.size, **dataclasses.asdict(cfg.net)).to(device)
    log = runs.open_log(run)
    log.info("LM run %s: %s, %d parameters, vocabulary %d (%s)", run, cfg.to_dict(), count_parameters(model)[1],
             vocab.size, vocab.kind)  # fmt: skip
    val_texts = _texts(data, "val")
    return LMSetup(cfg, run, Precision(device, autocast_dtype(device, cfg.bf16)), vocab, vocab.encode(train_texts),
                   vocab.encode(val_texts), count_words(val_texts), model, log)  # fmt: skip


def _texts(data: Prepared, split: str) -> list[str]:
    return [data.texts[i] for i in data.split[split]]


def _optimizer(s: LMSetup) -> torch.optim.AdamW:
    """AdamW (β2 = 0.99 as in ULMFiT), decay on weight matrices only."""
    params = [p for p in s.model.parameters()]
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": s.cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=s.cfg.lr, betas=(0.9, 0.99))


def epoch_rows(docs: list[list[int]], *, seed: int, epoch: int, batch_size: int) -> torch.Tensor:
    """The epoch's `[B, L]` token rows: documents in an order fixed by (seed, epoch), so a resume sees the same."""
    order = np.random.default_rng([seed, epoch]).permutation(len(docs))
    return rows(join(docs, order), batch_size)


def _run_epoch(s: LMSetup, state: TrainState, hidden: State | None, optimizer, scheduler) -> State | None:
    """Train from window `state.position` to the end of the epoch (or max_steps), carrying the recurrent state."""
    cfg = s.cfg
    data = epoch_rows(s.train_docs, seed=cfg.seed, epoch=state.epoch, batch_size=cfg.batch_size).to(s.prec.device)
    count = count_windows(data.size(1), cfg.bptt)
    bar = tqdm(total=count, initial=state.position, leave=False,
               desc=f"epoch {state.epoch + 1}/{cfg.epochs}", disable=not cfg.progress)  # fmt: skip
    s.model.train()
    clock = time.perf_counter()
    for position, x, y in windows(data, cfg.bptt, state.position):
        loss, hidden = _step(s, x, y, hidden, optimizer, scheduler)
        now = time.perf_counter()
        state.record_step(position, loss * y.numel(), y.numel(), now - clock)
        clock = now
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")
        if state.step % cfg.checkpoint_every == 0:
            _save_checkpoint(s, state, hidden, optimizer, scheduler)
            clock = time.perf_counter()  # checkpoint I/O is not training time
        kill_hook_for_tests(state.step)
        if _stopped(cfg, state):
            break
    if state.position == count:
        state.position = 0  # the epoch is complete: the next starts a new stream, from a zero state
    bar.close()
    return hidden


def _step(s: LMSetup, x, y, hidden: State | None, optimizer, scheduler) -> tuple[float, State]:
    """One optimizer step on one BPTT window; gradients stop at the window's start (truncated BPTT)."""
    if hidden is not None:
        hidden = [(h.detach(), c.detach()) for h, c in hidden]
    with s.prec.autocast():
        logits, hidden = s.model(x, hidden)  # [B, n, V]
    loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
    loss.backward()
    if s.cfg.clip_norm:
        torch.nn.utils.clip_grad_norm_(s.model.parameters(), s.cfg.clip_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return loss.item(), hidden


def _stopped(cfg: LMConfig, state: TrainState) -> bool:
    return cfg.max_steps is not None and state.step >= cfg.max_steps


def _end_epoch(s: LMSetup, state: TrainState, *, lr: float) -> None:
    """Validate, save the weights, write a sample, and record the epoch."""
    cfg = s.cfg
    val = perplexity(s.model, s.val_docs, s.val_words, bptt=cfg.bptt, batch_size=16, prec=s.prec)
    state.epoch = state.epoch + 1
    train_loss = state.loss_sum / max(state.seen, 1)
    row = {"epoch": state.epoch, "step": state.step, "train_loss": train_loss, "train_ppl_token": float(np.exp(train_loss)),
           "val_loss": val["loss"], "val_ppl_token": val["ppl_token"], "val_ppl_word": val["ppl_word"], "lr": lr,
           "tokens_per_s": round(state.total_seen / max(state.loop_seconds, 1e-9), 1),
           "seconds": round(state.loop_seconds, 2), "sample": _sample(s)}  # fmt: skip
    state.history.append(row)
    state.loss_sum, state.seen = 0.0, 0
    save_tensors(s.run / runs.WEIGHTS, s.model.saved_state(), {"epoch": state.epoch})
    _write_history(s.run, state.history)
    msg = (f"epoch {state.epoch}: train loss {train_loss:.4f}  val perplexity {val['ppl_token']:.2f} per token, "
           f"{val['ppl_word']:.2f} per word")  # fmt: skip
    s.log.info(msg)
    if cfg.progress:
        tqdm.write(msg)


def _sample(s: LMSetup) -> str:
    """A continuation of the sample prompt, from a generator of its own (training's random stream stays untouched)."""
    generator = torch.Generator().manual_seed(s.cfg.seed)
    prompt = [EOS, *s.vocab.encode([s.cfg.sample_prompt])[0]]
    ids = sample_ids(s.model, prompt, length=60, temperature=0.8, top_k=40, generator=generator)
    s.model.train()
    return s.cfg.sample_prompt + s.vocab.decode(ids)


def _write_history(run: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl (without the samples) and samples.md, both rewritten from the checkpointed history."""
    runs.write_metrics(run, [{k: v for k, v in row.items() if k != "sample"} for row in history])
    text = "".join(f"## After epoch {row['epoch']}\n\n{row['sample'].strip()}\n\n" for row in history)
    runs.atomic_write_bytes(run / SAMPLES, text.encode("utf-8"))


def _save_checkpoint(s: LMSetup, state: TrainState, hidden: State | None, optimizer, scheduler) -> None:
    carried = {f"hidden.{i}.{name}": t for i, pair in enumerate(hidden or []) for name, t in zip("hc", pair)}
    tensors = {**{f"lm.{k}": v for k, v in s.model.saved_state().items()}, **carried}
    save_training(s.run / runs.CHECKPOINT, tensors, optimizer, scheduler, dataclasses.asdict(state))


def _load_checkpoint(s: LMSetup, optimizer, scheduler) -> tuple[TrainState, State | None]:
    tensors, state = load_training(s.run / runs.CHECKPOINT, optimizer, scheduler)
    s.model.load_saved({k[3:]: v for k, v in tensors.items() if k.startswith("lm.")}, s.run / runs.CHECKPOINT)
    layers = len(s.model.stack.layers)
    hidden = None
    if "hidden.0.h" in tensors:  # stopped mid-epoch: the stream continues from this state
        hidden = [(tensors[f"hidden.{i}.h"].to(s.prec.device), tensors[f"hidden.{i}.c"].to(s.prec.device)) for i in range(layers)]
    return TrainState(**state), hidden


def _finish(s: LMSetup, state: TrainState) -> dict[str, Any]:
    # The final weights (those of the last epoch; with --epochs 0 the initial ones, a random-init baseline).
    save_tensors(s.run / runs.WEIGHTS, s.model.saved_state(), {"epoch": state.epoch})
    last = state.history[-1] if state.history else {}
    results = {"finished": True, "epochs": state.epoch, "steps": state.step, "vocab": s.vocab.kind,
               "vocab_size": s.vocab.size, "params": count_parameters(s.model)[1],
               "train_tokens": sum(len(d) + 1 for d in s.train_docs),
               **{k: last[k] for k in ("val_loss", "val_ppl_token", "val_ppl_word", "tokens_per_s") if k in last},
               "train_seconds": round(state.loop_seconds, 2)}  # fmt: skip
    runs.atomic_write_json(s.run / runs.RESULTS, results)
    (s.run / runs.CHECKPOINT).unlink(missing_ok=True)
    s.log.info("finished: %s", results)
    return results
