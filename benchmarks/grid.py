"""The encoder × head grid on IMDB with `rnnlab compare`, timed, and its table recorded in docs/results.md.

    python benchmarks/grid.py                       # full IMDB, 1 seed: minilm + glove × all heads, frozen
    python benchmarks/grid.py --fraction 0.1 --seeds 3 --finetuned ""   # the tutorial's setting (≈19 min on 2 cores)

The frozen grid is followed by `--finetuned` cells (default: MiniLM + BiLSTM, 1 epoch) in the same grid folder,
so the table puts the core issue's fine-tuned recipe beside the frozen rows and the TF-IDF baseline.
The wall time is the whole command (encoding included); peak memory is the largest resident size of any
child process. The grid resumes if interrupted: rerun the same command.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

from imdb import write_section

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--encoders", default="minilm,glove")
    parser.add_argument("--finetuned", default="bilstm", help="heads to add with fine-tuned MiniLM ('' for none)")
    parser.add_argument("--finetuned-epochs", type=int, default=1)
    args = parser.parse_args()
    grid = ROOT / "runs" / f"grid-f{args.fraction}-s{args.seeds}"
    common = ["--fraction", str(args.fraction), "--seeds", str(args.seeds), "--grid", str(grid)]
    commands = [["--encoders", args.encoders]]
    if args.finetuned:
        commands.append(["--encoders", "minilm", "--heads", args.finetuned, "--finetune",
                         "--epochs", str(args.finetuned_epochs), "--no-baseline"])  # fmt: skip
    start = time.perf_counter()
    for extra in commands:
        subprocess.run([sys.executable, "-m", "rnnlab", "compare", *common, *extra], check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    table = (grid / "report" / "results.md").read_text().split("\n", 1)[1].strip()
    shown = " then ".join(f"`rnnlab compare {' '.join(common[:4] + extra)}`" for extra in commands)
    body = f"{shown}: {wall / 60:.1f} minutes wall on 2 CPU cores, peak memory {peak:,.0f} MB.\n\n{table}"
    write_section(f"grid-f{args.fraction}-s{args.seeds}", body)
    print(body)


if __name__ == "__main__":
    main()
