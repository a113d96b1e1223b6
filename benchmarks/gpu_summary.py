"""The table benchmarks/gpu.sh ends with: every run's accuracy, training reviews/s and, for transformer rows, the share
of the device's bf16 peak those reviews/s use (FLOPs of forward + backward counted on 64 real training reviews as the
run tokenizes them; the peak from an 8192³ bf16 matmul on the same device). Writes $OUT/summary.json and the
`gpu-summary` section of docs/results.md.

    python benchmarks/gpu_summary.py --runs /tmp/rnnlab-gpu-runs --out gpu-out --device cuda
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, sync, table, write_section  # noqa: E402


def bf16_peak(device: torch.device) -> float | None:
    """FLOP/s of a bf16 8192³ matmul, best of 5; None off a GPU (a CPU's figures are in docs/performance.md)."""
    if device.type != "cuda":
        return None
    a, b = (torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) for _ in range(2))
    best = 0.0
    for _ in range(6):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = max(best, 2 * 8192**3 / (time.perf_counter() - start))
    return best


def flops_per_review(run: Path) -> float:
    """Forward + backward FLOPs per training review of a fine-tuned transformer run (matmuls and attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    from rnnlab.config import DataConfig
    from rnnlab.data.split import prepare
    from rnnlab.model import load_trained
    from rnnlab.runtime import inputs_for

    model, _ = load_trained(run)
    data = prepare(DataConfig(fraction=0.01))
    texts = [data.texts[i] for i in data.split["train"][:64]]
    inputs = inputs_for(model.encoder, model.encoder.tokenize(texts))
    counter = FlopCounterMode(display=False)
    model.train()
    with counter:
        for start in range(0, len(texts), 16):
            x, mask = inputs.batch(list(range(start, min(start + 16, len(texts)))))
            model(x, mask).sum().backward()
    return counter.get_total_flops() / len(texts)


def labelled_rate(run: Path) -> str:
    log = (run / "log.txt").read_text() if (run / "log.txt").is_file() else ""
    found = re.findall(r"labelled (\d+) texts in ([\d.]+) s \((\d+) texts/s\)", log)
    return f"{int(found[-1][2]):,} texts/s ({found[-1][0]} texts)" if found else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", type=torch.device, default=torch.device("cuda"))
    args = parser.parse_args()
    peak = bf16_peak(args.device)
    rows, summary = [], {}
    for run in sorted(p.parent for p in args.runs.glob("*/results.json")):
        results = json.loads((run / "results.json").read_text())
        lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").is_file() else []
        metrics = [json.loads(line) for line in lines]
        summary[run.name] = {"results": results, "metrics": metrics}
        rate, share = results.get("reviews_per_s"), "–"
        if peak and rate and results.get("finetune") and results.get("encoder") not in ("glove", "scratch"):
            share = f"{100 * rate * flops_per_review(run) / peak:.1f} %"
        acc = results.get("test_accuracy")
        rows.append([run.name, f"{100 * acc:.2f} %" if acc is not None else "–", f"{rate:,.0f}" if rate else "–", share,
                     labelled_rate(run)])  # fmt: skip
    device = f"{torch.cuda.get_device_name(args.device)}, " if args.device.type == "cuda" else ""
    head = f"{device}{machine()}; bf16 peak {peak / 1e12:,.0f} TFLOP/s (8192³ matmul)" if peak else f"{device}{machine()}"
    text = head + "\n\n" + table(["run", "test acc", "train reviews/s", "share of bf16 peak", "teacher labelling"], rows)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps({"device": head, "runs": summary}, indent=1))
    write_section("gpu-summary", "`bash benchmarks/gpu.sh` (summary: `benchmarks/gpu_summary.py`)\n\n" + text,
                  path=ROOT / "docs" / "results.md")


if __name__ == "__main__":
    main()
