"""The encoder × head grid on IMDB with `rnnlab compare`, timed, and its table recorded in docs/results.md.

    python benchmarks/grid.py                       # full IMDB, 1 seed: minilm + glove × all heads (hours on 2 cores)
    python benchmarks/grid.py --fraction 0.1 --seeds 3   # the tutorial's setting (≈19 min on 2 cores)

The wall time is the whole command (encoding included); peak memory is the largest resident size of the
process. The grid resumes if interrupted: rerun the same command.
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
    args = parser.parse_args()
    grid = ROOT / "runs" / f"grid-f{args.fraction}-s{args.seeds}"
    cmd = [sys.executable, "-m", "rnnlab", "compare", "--fraction", str(args.fraction), "--seeds", str(args.seeds),
           "--encoders", args.encoders, "--grid", str(grid)]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    table = (grid / "report" / "results.md").read_text().split("\n", 1)[1].strip()
    body = (f"`rnnlab compare --fraction {args.fraction} --seeds {args.seeds} --encoders {args.encoders}`: "
            f"{wall / 60:.1f} minutes wall on 2 CPU cores, peak memory {peak:,.0f} MB.\n\n{table}")  # fmt: skip
    write_section(f"grid-f{args.fraction}-s{args.seeds}", body)
    print(body)


if __name__ == "__main__":
    main()
