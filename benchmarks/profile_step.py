"""Where the time of one training step and one labelling batch goes: tokenization, collation, host→device copies,
forward, backward, optimizer, host synchronizations, and the end-to-end rate of the real training loop.

Phases are timed with a device synchronization around each (so each is attributed), then the real loop
(`training.loop.train_epoch` over `batch_stream`) runs unsynchronized for the end-to-end rate, and torch's profiler
lists the top operators of a few steps.

    python benchmarks/profile_step.py                                  # GloVe BiLSTM student, CPU
    python benchmarks/profile_step.py --encoder minilm --finetune --device cuda --batch-size 32
    python benchmarks/profile_step.py --encoder minilm --finetune --device cuda --write   # → docs/performance.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, sync, table, write_section  # noqa: E402


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", default="glove")
    p.add_argument("--head", default="bilstm")
    p.add_argument("--finetune", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--hidden-size", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--label-batch-size", type=int, default=512)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--prune-vocab", type=int, default=None, help="as train's --prune-vocab (word-vector encoders)")
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--write", action="store_true", help="write the tables to docs/performance.md")
    return p.parse_args()


def build(args):
    from rnnlab.config import RunConfig
    from rnnlab.data.split import prepare
    from rnnlab.encoders import build_encoder
    from rnnlab.model import build_model
    from rnnlab.runtime import Precision, autocast_dtype, configure_math, inputs_for
    from rnnlab.training.optim import make_optimizer, make_schedule

    configure_math()
    cfg = RunConfig.from_dict({
        "dataset": {"fraction": args.fraction},
        "encoder": {"encoder": args.encoder, "finetune": args.finetune, "max_length": args.max_length,
                    "prune_vocab": args.prune_vocab},
        "model": {"head": args.head, "hidden_size": args.hidden_size},
        "train": {"batch_size": args.batch_size, "device": args.device, "progress": False},
    })  # fmt: skip
    data = prepare(cfg.dataset).compact()
    encoder = build_encoder(cfg.encoder, [data.texts[i] for i in data.split["train"]])
    start = time.perf_counter()
    inputs = inputs_for(encoder, encoder.tokenize(data.texts))
    tokenize_s = time.perf_counter() - start
    device = torch.device(args.device)
    model = build_model(cfg, encoder, len(data.label_names)).to(device)
    optimizer = make_optimizer(cfg, model)
    scheduler = make_schedule(optimizer, 10**6, 0.0)
    prec = Precision(device, autocast_dtype(device, True))
    return cfg, data, inputs, model, optimizer, scheduler, prec, {"tokenize all texts": (tokenize_s, len(data.texts))}


def phases(args, data, inputs, model, optimizer, prec) -> dict[str, float]:
    """Seconds per step of each phase, a device synchronization after each."""
    import torch.nn.functional as F

    from rnnlab.data.batching import LengthBucketSampler

    train = data.split["train"]
    sampler = LengthBucketSampler(inputs.lengths[train], args.batch_size, shuffle=True)
    batches = [[int(train[i]) for i in b] for b in sampler.batches(0)]
    labels = torch.as_tensor(data.labels)
    totals = dict.fromkeys(["collate", "host→device", "forward", "backward", "optimizer", "read loss (.item)"], 0.0)
    model.train()
    steps = batches[1 : args.steps + 1]
    for position, batch in enumerate([batches[0], *steps]):  # the first is a warm-up
        marks = [time.perf_counter()]
        x, mask = inputs.batch(batch)
        marks.append(time.perf_counter())
        x, mask, y = x.to(prec.device), mask.to(prec.device), labels[batch].to(prec.device)
        sync(prec.device), marks.append(time.perf_counter())
        with prec.autocast():
            loss = F.cross_entropy(model(x, mask).float(), y)
        sync(prec.device), marks.append(time.perf_counter())
        loss.backward()
        sync(prec.device), marks.append(time.perf_counter())
        optimizer.step(), optimizer.zero_grad(set_to_none=True)
        sync(prec.device), marks.append(time.perf_counter())
        loss.item()
        marks.append(time.perf_counter())
        if position:
            for name, a, b in zip(totals, marks, marks[1:]):
                totals[name] += b - a
    return {name: seconds / len(steps) for name, seconds in totals.items()}


def loop_rate(args, data, inputs, model, optimizer, scheduler, prec) -> float:
    """Reviews/s of the real training loop, unsynchronized, over `--steps` steps after one warm-up step."""
    from rnnlab.data.batching import LengthBucketSampler
    from rnnlab.training.distributed import Dist
    from rnnlab.training.loop import Optimization, TrainState, batch_stream, cross_entropy, train_epoch

    train = data.split["train"]
    sampler = LengthBucketSampler(inputs.lengths[train], args.batch_size, shuffle=True, seed=1)
    batches = [[int(train[i]) for i in b] for b in sampler.batches(0)]
    opt = Optimization(optimizer, scheduler, prec, Dist(), None, cross_entropy(torch.as_tensor(data.labels)))
    state = TrainState()
    train_epoch(model, batch_stream(inputs, batches[:1], 0, Dist(), 0), opt, state, cached=False)
    sync(prec.device)
    start = time.perf_counter()
    train_epoch(model, batch_stream(inputs, batches[1 : args.steps + 1], 0, Dist(), 0), opt, state, cached=False)
    sync(prec.device)
    return sum(map(len, batches[1 : args.steps + 1])) / (time.perf_counter() - start)


def label_rate(args, data, inputs, model, prec) -> dict[int, float]:
    """Reviews/s of labelling (length-sorted inference) at the training batch size and at --label-batch-size."""
    from rnnlab.runtime import predict_logits

    indices = list(data.split["train"])
    rates = {}
    for batch_size in (args.batch_size, args.label_batch_size):
        predict_logits(model, inputs, indices[:batch_size], prec, batch_size)  # warm-up
        sync(prec.device)
        start = time.perf_counter()
        predict_logits(model, inputs, indices, prec, batch_size)
        sync(prec.device)
        rates[batch_size] = len(indices) / (time.perf_counter() - start)
    return rates


def top_ops(args, data, inputs, model, optimizer, prec) -> str:
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if prec.device.type == "cuda" else [])
    train = list(data.split["train"])
    labels = torch.as_tensor(data.labels)
    model.train()  # labelling left it in eval mode
    with profile(activities=activities) as prof:
        for k in range(5):
            batch = train[k * args.batch_size : (k + 1) * args.batch_size]
            x, mask = inputs.batch(batch)
            with prec.autocast():
                loss = F.cross_entropy(model(x.to(prec.device), mask.to(prec.device)).float(), labels[batch].to(prec.device))
            loss.backward()
            optimizer.step(), optimizer.zero_grad(set_to_none=True)
        sync(prec.device)
    key = "self_cuda_time_total" if prec.device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=15)


def main() -> None:
    args = parse()
    cfg, data, inputs, model, optimizer, scheduler, prec, once = build(args)
    per_step = phases(args, data, inputs, model, optimizer, prec)
    total = sum(per_step.values())
    rows = [[name, f"{seconds * 1e3:.2f}", f"{100 * seconds / total:.0f} %"] for name, seconds in per_step.items()]
    rows.append(["one step, phases synchronized", f"{total * 1e3:.2f}", f"{args.batch_size / total:.0f} reviews/s"])
    loop = loop_rate(args, data, inputs, model, optimizer, scheduler, prec)
    rows.append(["the training loop, unsynchronized", f"{args.batch_size / loop * 1e3:.2f}", f"{loop:.0f} reviews/s"])
    tok_s, n = once["tokenize all texts"]
    rows.append([f"tokenize {n} texts (once per run)", f"{tok_s * 1e3:.0f}", f"{n / tok_s:.0f} texts/s"])
    for batch_size, rate in label_rate(args, data, inputs, model, prec).items():
        rows.append([f"labelling, batch {batch_size}", "", f"{rate:.0f} reviews/s"])
    gpu = f"{torch.cuda.get_device_name(prec.device)}, " if prec.device.type == "cuda" else ""
    model_name = f"{args.encoder} {'fine-tuned' if args.finetune else 'frozen'} + {args.head}"
    if getattr(model.encoder, "pruned", False):
        model_name += f" (table pruned to {len(model.encoder.vocab):,} words)"
    where = f"{gpu}{machine()}; {model_name}, batch {args.batch_size}, max length {args.max_length}, precision {prec.dtype}"
    text = f"{where}\n\n" + table(["phase", "ms per step", "share"], rows)
    print(text)
    print(top_ops(args, data, inputs, model, optimizer, prec))
    if args.write:
        kind = "ft" if args.finetune else "frozen"
        pruned = "-pruned" if getattr(model.encoder, "pruned", False) else ""
        section = f"profile-{args.encoder}-{kind}-{args.head}-b{args.batch_size}-{prec.device.type}{pruned}"
        write_section(section, f"`python benchmarks/profile_step.py {' '.join(sys.argv[1:])}`\n\n{text}")


if __name__ == "__main__":
    main()
