"""The data path alone: reviews/s from token ids to device-ready batches with a null model, for each encoder kind —
the ceiling the data path puts on any device.

Two paths side by side, in alternating turns in this one process:
- `lists`: ids held as Python lists and padded per batch (`rnnlab.padding.pad_ids`), the batches built inline;
- `cached`: the token-id cache's memory-mapped rows padded in one gather, batches built ahead by the training
  loop's own stream (`training.loop.batch_stream`: a background thread; pinned memory on a GPU).
Tokenization itself (once per text set) is timed separately, with and without the cache.

    python benchmarks/pipeline.py                   # full IMDB train split (25,000 texts), 2 cores: ≈ 3 min
    python benchmarks/pipeline.py --device cuda
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load, machine, sync, table, write_section  # noqa: E402

KINDS = {"minilm": {"encoder": "minilm"}, "glove": {"encoder": "glove"}, "scratch": {"encoder": "scratch"},
         "minilm windows 4×128": {"encoder": "minilm", "max_length": 128, "chunks": 4}}  # fmt: skip


def batches_of(lengths, batch_size: int) -> list[list[int]]:
    from rnnlab.data.batching import LengthBucketSampler

    return LengthBucketSampler(lengths, batch_size, shuffle=True, seed=0).batches(0)


def drain(stream, device: torch.device) -> int:
    """The null model: move each batch to the device and touch it; returns the texts seen."""
    seen = 0
    for item in stream:
        x, mask = item[3], item[4]
        x, mask = x.to(device, non_blocking=True), mask.to(device, non_blocking=True)
        seen += x.shape[0]
    sync(device)
    return seen


def rate(inputs, batches, device: torch.device, *, ahead: bool) -> float:
    from rnnlab.training.distributed import Dist
    from rnnlab.training.loop import _Shards, batch_stream

    start = time.perf_counter()
    if ahead:
        stream = batch_stream(inputs, batches, 0, Dist(), 0, pin=device.type == "cuda")
    else:
        shards = _Shards(inputs, batches, 0, 1)
        stream = (shards[p] for p in range(len(batches)))
    seen = drain(stream, device)
    return seen / (time.perf_counter() - start)


def measure(kind: str, texts: list[str], args) -> list:
    from rnnlab.config import EncoderConfig
    from rnnlab.encoders import build_encoder
    from rnnlab.runtime import inputs_for
    from rnnlab.training.token_ids import cached_token_ids

    encoder = build_encoder(EncoderConfig(finetune=False, **KINDS[kind]), texts)
    start = time.perf_counter()
    lists = encoder.tokenize(texts)
    tokenize_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as cache:
        cached_token_ids(encoder, texts, Path(cache))  # built
        start = time.perf_counter()
        rows = cached_token_ids(encoder, texts, Path(cache))  # read back, hash-checked
        read_s = time.perf_counter() - start
        plain, fast = inputs_for(encoder, lists), inputs_for(encoder, rows)
        batches = batches_of(plain.lengths, args.batch_size)
        best = {"lists": 0.0, "cached": 0.0}
        for _ in range(args.repeats):  # alternating turns: a change in load hits both alike
            best["lists"] = max(best["lists"], rate(plain, batches, args.device, ahead=False))
            best["cached"] = max(best["cached"], rate(fast, batches, args.device, ahead=True))
    return [kind, f"{len(texts) / tokenize_s:,.0f}", f"{len(texts) / read_s:,.0f}", f"{best['lists']:,.0f}",
            f"{best['cached']:,.0f}", f"{best['cached'] / best['lists']:.1f}×"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", type=torch.device, default=torch.device("cpu"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=25_000, help="texts (the IMDB train file has 25,000)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from rnnlab.config import DataConfig
    from rnnlab.data.split import prepare

    texts = prepare(DataConfig()).texts[: args.limit]
    rows = [measure(kind, texts, args) for kind in KINDS]
    gpu = f"{torch.cuda.get_device_name()}, " if args.device.type == "cuda" else ""
    header = ["encoder", "tokenize texts/s", "cache read texts/s", "lists → batches reviews/s", "cached ids, ahead reviews/s",
              "×"]  # fmt: skip
    text = (f"{gpu}{machine()}, {load()}; {len(texts):,} texts, batches of {args.batch_size}, device {args.device}\n\n"
            + table(header, rows))  # fmt: skip
    print(text)
    if not args.no_write:
        flag = " --device cuda" if args.device.type == "cuda" else ""
        write_section(f"pipeline-{args.device.type}", f"`python benchmarks/pipeline.py{flag}`\n\n{text}")


if __name__ == "__main__":
    main()
