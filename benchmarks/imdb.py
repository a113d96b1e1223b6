"""Train named configurations on IMDB and record accuracy, macro-F1, wall time, reviews/s and peak memory.

Each configuration runs as its own `python -m rnnlab train` process (so its peak memory is its own), on the
seeded stratified split every run shares, next to the TF-IDF + logistic regression baseline on that split.

    python benchmarks/imdb.py --fraction 1.0 --section full frozen-bilstm glove-bilstm
    python benchmarks/imdb.py --fraction 0.1 --section default-candidates frozen-bilstm finetune-bilstm
    python benchmarks/imdb.py --fraction 0.1 --section default-avx2 --isa "AVX2 only" --no-baseline top2-bilstm

Figures go to docs/results.md, in a section of their own that a rerun replaces.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rnnlab.presets import PRESETS as CONFIGS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402
from isa_levels import LEVELS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS_MD = ROOT / "docs" / "results.md"


def run_config(name: str, fraction: float, extra: list[str], runs: Path, env: dict[str, str]) -> dict:
    run = runs / f"{name}-f{fraction}{'-' + env['ATEN_CPU_CAPABILITY'] if env else ''}"
    cmd = [sys.executable, "-m", "rnnlab", "train", "--preset", name, *extra, "--fraction", str(fraction),
           "--run-dir", str(run), "--overwrite", "--no-progress"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, **env})
    wall = time.perf_counter() - start
    results = json.loads((run / "results.json").read_text())
    return {"name": name, "command": "rnnlab train " + " ".join(cmd[4:]), "wall_s": round(wall, 1), **results}


def run_baseline(fraction: float, runs: Path) -> dict:
    from rnnlab.compare.grid import baseline_row
    from rnnlab.config import DataConfig, RunConfig

    out = runs / f"tfidf-logreg-f{fraction}"
    start = time.perf_counter()
    baseline_row(RunConfig(dataset=DataConfig(fraction=fraction)), out)
    results = json.loads((out / "results.json").read_text())
    wall = round(time.perf_counter() - start, 1)
    return {"name": "tfidf-logreg", "command": "rnnlab compare … (baseline row)", "wall_s": wall, **results}


def table(rows: list[dict]) -> str:
    lines = ["| configuration | test acc | macro-F1 | best epoch | wall (s) | training loop (s) | train reviews/s | "
             "peak memory (MB) |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in sorted(rows, key=lambda r: -r["test_accuracy"]):
        lines.append(f"| {r['name']} | {100 * r['test_accuracy']:.2f} % | {100 * r['test_macro_f1']:.2f} % | "
                     f"{r.get('best_epoch', '–')} | {r['wall_s']} | {r.get('train_seconds', '–')} | "
                     f"{r.get('reviews_per_s', '–')} | {r.get('peak_memory_mb', '–')} |")  # fmt: skip
    lines.append("")
    lines += [f"- `{r['name']}`: `{r['command']}`" for r in rows]
    return "\n".join(lines)


def write_section(section: str, body: str) -> None:
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Results\n"
    block = f"{start}\n{body}\n{end}"
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS_MD.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", choices=sorted(CONFIGS))
    parser.add_argument("--fraction", type=float, default=1.0)
    parser.add_argument("--section", default="full")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--extra", default="", help="flags added to every configuration, e.g. '--device cuda'")
    parser.add_argument("--isa", choices=[name for name, _ in LEVELS], default=LEVELS[0][0],
                        help="emulate a lower ISA level by capping oneDNN and ATen (benchmarks/isa_levels.py)")  # fmt: skip
    args = parser.parse_args()
    env = dict(LEVELS)[args.isa]
    os.environ.update(env)  # for the header's machine() line; the runs get it explicitly
    rows = [] if args.no_baseline else [run_baseline(args.fraction, args.runs)]
    for name in args.configs:  # the section is rewritten after every row, so a cut-short run keeps what it measured
        rows.append(run_config(name, args.fraction, args.extra.split(), args.runs, env))
        print(json.dumps({k: rows[-1][k] for k in ("name", "test_accuracy", "wall_s", "peak_memory_mb")}), flush=True)
        write_section(args.section, header(args) + table(rows))
    print(table(rows))


def header(args: argparse.Namespace) -> str:
    import torch

    device = torch.cuda.get_device_name(0) if "cuda" in args.extra and torch.cuda.is_available() else machine()
    return (
        f"Measured {time.strftime('%Y-%m-%d')} on {device}, `--fraction {args.fraction}` of the packaged IMDB (seeded "
        f"stratified split, split seed 0){', extra flags `' + args.extra + '`' if args.extra else ''}; "
        f"load average {os.getloadavg()[0]:.1f}.\n\n"
    )


if __name__ == "__main__":
    main()
