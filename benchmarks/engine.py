"""This code against an earlier revision, side by side on this machine: the same `rnnlab train` commands, each run
by both in alternating turns (so a change in load hits both alike), reporting training reviews/s, wall time and test
accuracy, and their ratios.

    python benchmarks/engine.py --before 2ca92d2                 # GloVe student, distillation, default job (10 %)
    python benchmarks/engine.py --before 2ca92d2 --only glove-student --repeats 3 --section engine-glove-student

Both revisions are checked out into temporary git worktrees and run with PYTHONPATH pointing at them; each uses its
own token and feature caches. Figures go to docs/performance.md (section engine-vs-before, or --section).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, load, machine, table, write_section  # noqa: E402

STUDENT = ["--encoder", "glove", "--head", "bilstm", "--hidden-size", "150", "--fraction", "0.1"]
TEACHER = ["--no-finetune", "--head", "bilstm", "--epochs", "2", "--fraction", "0.1"]
JOBS = {
    "glove-student": STUDENT + ["--epochs", "3"],
    "glove-student-whole-table": STUDENT + ["--epochs", "3"],
    "distill": STUDENT + ["--epochs", "1", "--augment", "4", "--teacher", "{teacher}"],
    "default-job": ["--fraction", "0.1", "--max-steps", "30", "--epochs", "1"],
}
NOW_ONLY = {"glove-student-whole-table": ["--prune-vocab", "0"]}  # the before side runs glove-student again
"""Flags only the newer code takes: the same job with a default of the newer code switched off, to show its share."""


def train(code: Path, args: list[str], run: Path, cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "RNNLAB_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "rnnlab", "train", *args, "--run-dir", str(run), "--no-progress"]
    shutil.rmtree(run, ignore_errors=True)  # --overwrite would keep a distillation's labelled logits, skipping its labelling
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=code, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    return {"wall": wall, **json.loads((run / "results.json").read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="git revision to compare against")
    parser.add_argument("--after", default="HEAD", help="git revision measured as `now` (default HEAD; commit first)")
    parser.add_argument("--only", nargs="*", choices=sorted(JOBS), default=sorted(JOBS))
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "engine")
    parser.add_argument("--repeats", type=int, default=1, help="alternating turns per job; medians are reported")
    parser.add_argument("--section", default="engine-vs-before", help="docs/performance.md section to write")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        code = {"before": Path(tmp) / "before", "now": Path(tmp) / "now"}
        for name, rev in (("before", args.before), ("now", args.after)):
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(code[name]), rev], check=True)
        try:
            rows = compare(args, code)
        finally:
            for path in code.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)
    turns = f", medians of {args.repeats} alternating turns" if args.repeats > 1 else ""
    text = f"{machine()}, {load()}; `--before {args.before} --after {args.after}`{turns}\n\n" + table(
        ["job", "before reviews/s", "now reviews/s", "×", "before wall s", "now wall s", "wall ×", "before acc", "now acc"], rows)
    print(text)
    if not args.no_write:
        write_section(args.section, f"`python benchmarks/engine.py {' '.join(sys.argv[1:])}`\n\n{text}")


def compare(args, code: dict[str, Path]) -> list[list]:
    caches = {name: args.runs / f"cache-{name}" for name in code}
    teachers = {name: args.runs / f"teacher-{name}" for name in code}
    if "distill" in args.only:  # each side labels with a teacher it trained itself
        for name in code:
            if not (teachers[name] / "results.json").is_file():
                train(code[name], TEACHER, teachers[name], caches[name])
    rows = []
    for job in args.only:
        turns = {name: [] for name in code}
        for _ in range(args.repeats):
            for name in code:  # alternating: before, then now
                job_args = [a.replace("{teacher}", str(teachers[name])) for a in JOBS[job]]
                job_args += NOW_ONLY.get(job, []) if name == "now" else []
                turns[name].append(train(code[name], job_args, args.runs / f"{job}-{name}", caches[name]))
        b, n = ({**got[-1], "reviews_per_s": statistics.median(t["reviews_per_s"] for t in got),
                 "wall": statistics.median(t["wall"] for t in got)} for got in turns.values())  # fmt: skip
        rate_b, rate_n = b["reviews_per_s"], n["reviews_per_s"]
        rows.append([job, f"{rate_b:,.1f}", f"{rate_n:,.1f}", f"{rate_n / rate_b:.2f}",
                     f"{b['wall']:.0f}", f"{n['wall']:.0f}", f"{b['wall'] / n['wall']:.2f}",
                     f"{100 * b['test_accuracy']:.2f} %", f"{100 * n['test_accuracy']:.2f} %"])  # fmt: skip
        print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
