"""Throughput of the pieces: GEMM peak, MiniLM forward (share of peak), head training on cached features, and
`predict` end to end from text for each inference mode (torch fp32, torch bf16, onnx, onnx int8).

Contenders of one table run in alternating turns in this one process, after a warm-up, so a change in
machine load hits each alike; the 1-minute load average is recorded beside every figure.

    python benchmarks/throughput.py --quick            # a few minutes on 2 cores
    python benchmarks/throughput.py                     # ≈10 min on 2 cores
    python benchmarks/throughput.py --quick --device cuda

`predict` uses a finished MiniLM + BiLSTM run (`--run`, default runs/bench-bilstm); when it is missing it is
trained first with `rnnlab train --fraction 0.1 --head bilstm --epochs 1 --no-finetune --run-dir runs/bench-bilstm`
(frozen: minutes on 2 cores; the graph is the same as a fine-tuned run's), and the
ONNX graphs are exported when they are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Meter, load, machine, sync, table, use_all_cores, write_section  # noqa: E402

MODES = ["torch fp32", "torch bf16", "onnx", "onnx int8"]


# ---------------------------------------------------------------- GEMM peak and encoder forward
def gemm_peak(device: torch.device, size: int, reps: int) -> dict[str, float]:
    """GFLOP/s of a square matmul in fp32 and bf16, alternating, best of `reps` (the machine's ceiling)."""
    best = {"fp32": 0.0, "bf16": 0.0}
    mats = {name: [torch.randn(size, size, device=device, dtype=dt) for _ in range(2)]
            for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))}  # fmt: skip
    for a, b in mats.values():  # warm-up
        a @ b
    for _ in range(reps):
        for name, (a, b) in mats.items():
            sync(device)
            start = time.perf_counter()
            a @ b
            sync(device)
            best[name] = max(best[name], 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def encoder_forward(texts: list[str], device: torch.device, batch: int, reps: int, peak: dict, compiled: bool) -> list[list]:
    """MiniLM forward reviews/s in fp32 and bf16 autocast (and, `compiled`, bf16 under torch.compile with inductor's
    weight freezing), FLOPs counted by FlopCounterMode on the same batches."""
    from torch.utils.flop_counter import FlopCounterMode

    from rnnlab.data.batching import collate
    from rnnlab.encoders.transformer import TransformerEncoder

    encoder = TransformerEncoder("minilm", max_length=256, truncation="head_tail").to(device).eval()
    token_ids = encoder.tokenize(texts)
    order = np.argsort([len(t) for t in token_ids])  # length-sorted batches, as the feature cache runs them
    batches = [collate([token_ids[i] for i in order[s : s + batch]], encoder.pad_id) for s in range(0, len(order), batch)]
    batches = [(ids.to(device), mask.to(device)) for ids, mask in batches]
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        for ids, mask in batches:
            encoder(ids, mask)
    flops = counter.get_total_flops()
    forwards = {"fp32": encoder, "bf16": encoder}
    if compiled:
        forwards["bf16 compiled"] = torch.compile(encoder, dynamic=True)
    meters = {name: Meter(name) for name in forwards}

    def run(name):
        # Freezing folds the frozen weights into the graph (prepacked bf16 GEMMs); it only matters when compiling.
        with torch._inductor.config.patch(freezing=True), torch.inference_mode():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=name != "fp32"):
                for ids, mask in batches:
                    forwards[name](ids, mask)
        sync(device)

    for dtype in meters:
        run(dtype)  # warm-up
    for r in range(reps):
        for dtype in list(meters)[:: 1 if r % 2 == 0 else -1]:
            meters[dtype].time(len(texts), run, dtype)
    rows = []
    for dtype, m in meters.items():
        gflops = flops * (m.items / len(texts)) / m.seconds / 1e9
        top = peak[dtype.split()[0]]
        rows.append([f"MiniLM forward, {dtype}", m.rate, gflops, top, f"{100 * gflops / top:.0f} %",
                     f"{np.mean(m.loads):.1f}"])  # fmt: skip
    return rows


# ---------------------------------------------------------------- heads on cached features
def head_training(texts, labels, device, steps: int, reps: int, compile_heads: list[str], wide_batches: list[int]) -> list[list]:
    """Training reviews/s of each head (+ classifier) on cached MiniLM features, bf16 autocast, batch 16; BiLSTM-256
    also at each of `wide_batches` (the recurrence is a chain of small matmuls, so its rate grows with the batch)."""
    from rnnlab.config import HeadConfig
    from rnnlab.data.batching import LengthBucketSampler
    from rnnlab.encoders.transformer import TransformerEncoder
    from rnnlab.heads import build_head
    from rnnlab.model import TextClassifier
    from rnnlab.runtime import Inputs, Precision, autocast_dtype
    from rnnlab.training.distributed import Dist
    from rnnlab.training.features import encode_cached
    from rnnlab.training.loop import Optimization, TrainState, batch_stream, cross_entropy, train_epoch

    encoder = TransformerEncoder("minilm", max_length=256, truncation="head_tail").to(device)
    prec = Precision(device, autocast_dtype(device, True))
    token_ids = encoder.tokenize(texts)
    with tempfile.TemporaryDirectory() as cache:
        store = encode_cached(encoder, token_ids, Path(cache), device=device, autocast_dtype=prec.dtype, progress=False)
        inputs, y = Inputs(token_ids, encoder.pad_id, store), torch.as_tensor(labels)
        batches = {b: LengthBucketSampler(inputs.lengths, b, shuffle=True, seed=0).batches(0) for b in {16, *wide_batches}}
        from rnnlab.heads import HEADS

        variants = [(h, 128, False, 16) for h in HEADS] + [("bilstm", 256, False, b) for b in wide_batches]
        variants += [(h, 128, True, 16) for h in compile_heads]
        trainers, meters = {}, {}
        for head, hidden, compiled, batch in variants:
            name = f"{head}-{hidden}" + (f" batch {batch}" if batch != 16 else "") + (" compiled" if compiled else "")
            model = TextClassifier(encoder, build_head(HeadConfig(head=head, hidden_size=hidden), encoder.dim), 2, 0.2).to(device)
            forward = torch.compile(model, dynamic=True) if compiled else model
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)

            def step(chunk, forward=forward, opt=opt, sched=sched):  # chunk: a list of batches
                stream = batch_stream(inputs, chunk, 0, Dist(), workers=0)
                train_epoch(forward, stream, Optimization(opt, sched, prec, Dist(), 1.0, cross_entropy(y)), TrainState(),
                            cached=inputs.store is not None)
                sync(device)

            trainers[name], meters[name] = (step, batches[batch]), Meter(name)
            step(batches[batch][:2])  # warm-up (and compilation)
        for r in range(reps):
            for name in list(trainers)[:: 1 if r % 2 == 0 else -1]:
                step, own = trainers[name]
                per_turn = max(1, steps * 16 // len(own[0]))  # about the same reviews a turn at every batch size
                chunk = [own[(r * per_turn + i) % len(own)] for i in range(per_turn)]
                meters[name].time(sum(map(len, chunk)), step, chunk)
            print(f"  heads round {r + 1}/{reps}  {load()}", flush=True)
    return [[name, m.rate, f"{np.mean(m.loads):.1f}"] for name, m in meters.items()]


# ---------------------------------------------------------------- predict end to end
def ensure_run(run: Path) -> None:
    from rnnlab import runs
    from rnnlab.serve.onnx import INT8_NAME, ONNX_NAME, export_onnx

    if not runs.is_finished(run):
        cmd = [sys.executable, "-m", "rnnlab", "train", "--fraction", "0.1", "--head", "bilstm", "--epochs", "1",
               "--no-finetune", "--run-dir", str(run), "--overwrite", "--no-progress"]  # fmt: skip
        print("training:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    if not (run / ONNX_NAME).is_file() or not (run / INT8_NAME).is_file():
        export_onnx(run, quantize=True)


def test_reviews(run: Path) -> tuple[list[str], list[str]]:
    """The run's own test split (texts and label names), from its split.json."""
    from rnnlab import runs
    from rnnlab.data.split import prepare

    data = prepare(runs.read_config(run).dataset)
    ids = json.loads((run / runs.SPLIT).read_text())["test"]
    return [data.texts[i] for i in ids], [data.label_names[data.labels[i]] for i in ids]


def predict_modes(run: Path, device: torch.device, limit: int | None, turn: int) -> list[list]:
    """Reviews/s from raw text to labels and test accuracy, per inference mode, alternating turns of `turn` reviews."""
    from rnnlab.serve.onnx_engine import OnnxPredictor
    from rnnlab.serve.predict import Predictor

    texts, truth = test_reviews(run)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))[:limit]  # a random sample: never the head of a label-sorted list
    texts, truth = [texts[i] for i in order], [truth[i] for i in order]
    predictors = {"torch fp32": Predictor.load(run, device=str(device), bf16=False),
                  "torch bf16": Predictor.load(run, device=str(device), bf16=True),
                  "onnx": OnnxPredictor(run, threads=os.cpu_count()),
                  "onnx int8": OnnxPredictor(run, quantized=True, threads=os.cpu_count())}  # fmt: skip
    meters, labels = {m: Meter(m) for m in MODES}, {m: [] for m in MODES}
    for p in predictors.values():
        p.predict(texts[:8])  # warm-up
    for n, start in enumerate(range(0, len(texts), turn)):
        chunk = texts[start : start + turn]
        for mode in MODES[:: 1 if n % 2 == 0 else -1]:
            rows = meters[mode].time(len(chunk), predictors[mode].predict, chunk)
            labels[mode] += [r["label"] for r in rows]
        print(f"  predict turn {n + 1}  {load()}", flush=True)
    acc = {m: float(np.mean([a == b for a, b in zip(labels[m], truth)])) for m in MODES}
    agree = {m: float(np.mean([a == b for a, b in zip(labels[m], labels["torch fp32"])])) for m in MODES}
    return [[m, meters[m].rate, f"{acc[m]:.4f}", f"{100 * (acc[m] - acc['torch fp32']):+.2f}",
             f"{100 * agree[m]:.1f} %", f"{np.mean(meters[m].loads):.1f}"] for m in MODES]  # fmt: skip


# ---------------------------------------------------------------- report
def chart(heads: list[list], predict: list[list], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    right.barh([r[0] for r in predict], [r[1] for r in predict], color="C0")
    right.set(xlabel="reviews/s (raw text → label)", title="predict, MiniLM + BiLSTM")
    left.barh([r[0] for r in heads], [r[1] for r in heads], color="C2")
    left.set(xlabel="training reviews/s", title="heads on cached MiniLM features")
    left.invert_yaxis()
    right.invert_yaxis()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(args, encoder_rows, head_rows, predict_rows, seconds: float) -> str:
    cmd = "python benchmarks/throughput.py " + " ".join(sys.argv[1:])
    parts = ["## Throughput", "", f"`{cmd}` — {machine()}, device {args.device}, {torch.get_num_threads()} threads; "
             f"{seconds / 60:.1f} min in all; load = mean 1-minute load average over the timed turns.", ""]  # fmt: skip
    if encoder_rows:
        parts += ["### Encoder forward vs GEMM peak", "",
                  f"Peak: best {args.gemm_size}² matmul in this run. FLOPs: `torch.utils.flop_counter.FlopCounterMode` on "
                  f"the same length-sorted batches of {args.encoder_batch} ({args.encoder_reviews} reviews, max length 256).",
                  "", table(["what", "reviews/s", "achieved GFLOP/s", "peak GFLOP/s", "share of peak", "load"], encoder_rows),
                  ""]  # fmt: skip
    if head_rows:
        parts += ["### Head training on cached features", "",
                  f"Head + classifier, AdamW, batch 16 unless named, bf16 autocast where available, {args.head_reviews} "
                  "reviews cached once; `-128` / `-256` is the hidden size.", "",
                  table(["head", "train reviews/s", "load"], head_rows), ""]  # fmt: skip
    if predict_rows:
        parts += ["### `predict` end to end (raw text → labels)", "",
                  f"Run `{args.run}` ({_describe(Path(args.run))}); tokenization included; batch 64; "
                  f"{'all' if args.predict_reviews is None else args.predict_reviews} reviews of the run's test split. "
                  "Agreement = share of labels equal to torch fp32's.", "",
                  table(["mode", "reviews/s", "test accuracy", "Δ accuracy (pt)", "agreement", "load"], predict_rows), "",
                  "![throughput](img/throughput.png)", ""]  # fmt: skip
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--run", default="runs/bench-bilstm", help="finished MiniLM + BiLSTM run for predict")
    parser.add_argument("--sections", default="encoder,heads,predict")
    parser.add_argument("--gemm-size", type=int, default=2048)
    parser.add_argument("--encoder-reviews", type=int, default=128)
    parser.add_argument("--encoder-batch", type=int, default=32)
    parser.add_argument("--head-reviews", type=int, default=512)
    parser.add_argument("--head-steps", type=int, default=8, help="batches per alternating turn")
    parser.add_argument("--reps", type=int, default=3, help="alternating rounds per table")
    parser.add_argument("--predict-reviews", type=int, default=None, help="default: the whole test split")
    parser.add_argument("--compile", default="", help="comma-separated heads to also time under torch.compile")
    parser.add_argument("--compile-encoder", action="store_true", help="also time MiniLM bf16 under torch.compile")
    parser.add_argument("--wide-batches", default="16,32,64", help="batch sizes for BiLSTM-256")
    parser.add_argument("--no-write", dest="write", action="store_false")
    parser.add_argument("--quick", action="store_true", help="smaller samples: a few minutes on 2 cores")
    args = parser.parse_args()
    if args.quick:
        args.gemm_size, args.encoder_reviews, args.head_reviews, args.head_steps = 1024, 64, 128, 3
        args.reps, args.predict_reviews = 2, args.predict_reviews or 128
    use_all_cores()
    device, sections, start = torch.device(args.device), args.sections.split(","), time.perf_counter()
    run = Path(args.run)
    encoder_rows = head_rows = predict_rows = []
    if "predict" in sections:
        ensure_run(run)
    texts, labels = _train_reviews(max(args.encoder_reviews, args.head_reviews))
    if "encoder" in sections:
        peak = gemm_peak(device, args.gemm_size, args.reps + 2)
        sample = texts[: args.encoder_reviews]
        encoder_rows = encoder_forward(sample, device, args.encoder_batch, args.reps, peak, args.compile_encoder)
        print(table(["what", "reviews/s", "GFLOP/s", "peak", "share", "load"], encoder_rows), flush=True)
    if "heads" in sections:
        heads = [h for h in args.compile.split(",") if h]
        head_rows = head_training(
            texts[: args.head_reviews],
            labels[: args.head_reviews],
            device,
            args.head_steps,
            args.reps,
            heads,
            [int(b) for b in args.wide_batches.split(",")],
        )
        print(table(["head", "reviews/s", "load"], head_rows), flush=True)
    if "predict" in sections:
        predict_rows = predict_modes(run, device, args.predict_reviews, turn=64)
        print(table(["mode", "reviews/s", "acc", "Δ", "agree", "load"], predict_rows), flush=True)
    text = report(args, encoder_rows, head_rows, predict_rows, time.perf_counter() - start)
    print(text)
    if args.write:
        if head_rows and predict_rows:
            chart(head_rows, predict_rows, ROOT / "docs" / "img" / "throughput.png")
        write_section("throughput", text)


def _describe(run: Path) -> str:
    from rnnlab import runs

    cfg = runs.read_config(run)
    tuned = "fine-tuned" if cfg.encoder.finetune else "frozen"
    head = f"{cfg.model.head}-{cfg.model.hidden_size}"
    return f"{tuned} {cfg.encoder.encoder} + {head}, trained on {cfg.dataset.fraction:g} of {cfg.dataset.data}"


def _train_reviews(n: int) -> tuple[list[str], np.ndarray]:
    """A seeded random sample of training reviews of the 10% split (the CSV is sorted by label: never its head)."""
    from rnnlab.config import DataConfig
    from rnnlab.data.split import prepare

    data = prepare(DataConfig(data="imdb", fraction=0.1)).compact()
    idx = np.random.default_rng(0).permutation(data.split["train"])[:n]
    return [data.texts[i] for i in idx], data.labels[idx]


if __name__ == "__main__":
    main()
