"""Long reviews: the window head (`--chunks`) against head, tail and head + tail truncation, by review length.

    python benchmarks/long_reviews.py --fraction 0.1      # ≈ 30 min on 2 cores

Every configuration is frozen MiniLM + BiLSTM (6 epochs on the feature cache), trained on `--fraction` of the seeded
split and then scored on the whole test split of that split (4,981 reviews: a subset's training texts are never
among them, so the long reviews are numerous enough to compare). Accuracy is broken down by each review's length in
MiniLM tokens (special tokens included). Rows at one token budget compare like with like: 512 tokens cut by
`head`, `tail` or `head_tail`, against 2 windows of 256; and windows of 256 tokens each, one (the default's
`head_tail` 256) against 4. Writes a section of docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load, machine  # noqa: E402
from imdb import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BASE = ["--no-finetune", "--head", "bilstm", "--epochs", "6"]
CONFIGS = {
    "head 512": ["--max-length", "512", "--truncation", "head"],
    "tail 512": ["--max-length", "512", "--truncation", "tail"],
    "head_tail 512": ["--max-length", "512", "--truncation", "head_tail"],
    "2 windows × 256": ["--max-length", "256", "--chunks", "2", "--chunk-overlap", "0"],
    "head_tail 256": ["--max-length", "256", "--truncation", "head_tail"],
    "4 windows × 256": ["--max-length", "256", "--chunks", "4", "--chunk-overlap", "0"],
}
BUCKETS = [("≤ 256 tokens", 0, 256), ("257–512", 257, 512), ("> 512", 513, 10**9)]


def full_test_split() -> tuple[list[str], np.ndarray]:
    from rnnlab.config import DataConfig
    from rnnlab.data.split import prepare

    data = prepare(DataConfig())
    test = data.split["test"]
    return [data.texts[i] for i in test], np.asarray(data.labels)[test]


def train(name: str, flags: list[str], fraction: float, runs: Path) -> tuple[Path, float]:
    run = runs / name.replace(" ", "").replace("×", "x")
    cmd = [sys.executable, "-m", "rnnlab", "train", *BASE, *flags, "--fraction", str(fraction), "--run-dir", str(run),
           "--overwrite", "--no-progress"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return run, time.perf_counter() - start


def by_length(run: Path, texts: list[str], labels: np.ndarray, n_tokens: np.ndarray) -> dict[str, float]:
    import rnnlab

    correct = rnnlab.load(run).predict_proba(texts).argmax(1) == labels
    out = {"all": float(correct.mean())}
    for name, low, high in BUCKETS:
        rows = (n_tokens >= low) & (n_tokens <= high)
        out[name] = float(correct[rows].mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "long")
    parser.add_argument("configs", nargs="*", default=list(CONFIGS), help=f"a subset of: {', '.join(CONFIGS)}")
    args = parser.parse_args()
    from rnnlab.config import EncoderConfig
    from rnnlab.encoders import build_encoder

    began = time.perf_counter()
    texts, labels = full_test_split()
    _, counts = build_encoder(EncoderConfig(finetune=False)).tokenize_counted(texts)
    n_tokens = np.asarray(counts)
    rows = []
    for name in args.configs:
        run, wall = train(name, CONFIGS[name], args.fraction, args.runs)
        command = "rnnlab train " + " ".join([*BASE, *CONFIGS[name], "--fraction", str(args.fraction)])
        rows.append({"name": name, "wall_s": round(wall, 1), **by_length(run, texts, labels, n_tokens), "command": command})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "command"}), flush=True)
        write_section("long-reviews", report(args, rows, n_tokens, time.perf_counter() - began))


def report(args, rows: list[dict], n_tokens: np.ndarray, seconds: float) -> str:
    counts = {name: int(((n_tokens >= low) & (n_tokens <= high)).sum()) for name, low, high in BUCKETS}
    head = ["configuration", "all", *(f"{name} ({counts[name]:,})" for name, _, _ in BUCKETS), "train wall (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{100 * r[k]:.2f} %" for k in ["all", *(name for name, _, _ in BUCKETS)]]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + f" | {r['wall_s']} |")
    return "\n".join([
        "## Long reviews: windows against truncation",
        "",
        f"`python benchmarks/long_reviews.py --fraction {args.fraction}` — {machine()}; {load()}; "
        f"{seconds / 60:.1f} min in all. Frozen MiniLM + BiLSTM trained on {args.fraction:.0%} of the seeded split, "
        f"scored on its whole test split ({len(n_tokens):,} reviews); columns by review length in MiniLM tokens "
        "(reviews in each).",
        "",
        *lines,
        "",
        *(f"- `{r['name']}`: `{r['command']}`" for r in rows),
    ])  # fmt: skip


if __name__ == "__main__":
    main()
