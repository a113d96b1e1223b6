"""The CPUs users have, emulated on the one at hand: GEMM peaks with oneDNN and ATen capped to lower ISA levels.

    python benchmarks/isa_levels.py                          # GEMM: ≈ 1 min on 2 cores
    python benchmarks/isa_levels.py --job --steps 60         # + the default job's training speed: ≈ 8 min

Each level runs in a fresh process (the caps are read when torch loads): the machine as it is, AVX-512 with bf16
but without AMX, and AVX2 only (whose bf16 is emulated, not native). A level above the machine's own is capped to
what the machine has, so its row equals the native one. The rows are set beside GEMM figures measured on real
machines of each kind (a 2-core AMD EPYC without AMX ran a 2048² matmul at 117 GFLOP/s fp32 and 323 bf16; an AMX
machine at 394 / 2,362): a cap reproduces an ISA level — which kernels run, whether bf16 is native — not another
CPU's clock or cache, so only ratios measured side by side carry over. Writes a section of docs/performance.md.

With `--job`, the default job (`rnnlab train --fraction 0.1` with `--job-flags`) also trains for `--steps` optimizer
steps at each level; its loop time projects the full run (steps per epoch × epochs), and the wall time of the short
run shows the fixed costs (start-up, tokenizing, a feature-cache build) on top.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, load, machine, table, write_section  # noqa: E402

LEVELS = [
    ("this machine", {}),
    ("AVX-512 bf16, no AMX", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16", "ATEN_CPU_CAPABILITY": "avx512"}),
    ("AVX2 only", {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}),
]
MEASURED = {"AVX-512 bf16, no AMX": (117, 323), "AMX": (394, 2362)}
"""(fp32, bf16) GFLOP/s of a 2048² matmul on real 2-core machines of these kinds."""

_PROBE = """
import json, time, torch
torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
best = {"bf16": None, "bf16_native": torch.ops.mkldnn._is_mkldnn_bf16_supported()}
# Without native bf16 a bf16 GEMM falls back to a reference kernel (minutes for one 2048² product), and rnnlab's
# autocast_dtype() runs such a CPU in fp32: time bf16 only where it is native.
for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))[: 2 if best["bf16_native"] else 1]:
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    a @ b
    runs = []
    for _ in range(5):
        start = time.perf_counter(); a @ b; runs.append(time.perf_counter() - start)
    best[name] = 2 * 2048**3 / min(runs) / 1e9
print(json.dumps(best))
"""


def gemm(env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", _PROBE], env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def job(name: str, env: dict[str, str], steps: int, flags: list[str]) -> list:
    """Train the default job for `steps` steps under the caps; (level, wall, loop s/step, projected loop, reviews/s)."""
    import math

    from rnnlab import runs

    run = ROOT / "runs" / "isa" / name.split(",")[0].replace(" ", "-")
    cmd = [sys.executable, "-m", "rnnlab", "train", "--fraction", "0.1", *flags, "--max-steps", str(steps),
           "--run-dir", str(run), "--overwrite", "--no-progress"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, env={**os.environ, **env}, check=True, capture_output=True)
    wall = time.perf_counter() - start
    results = json.loads((run / "results.json").read_text())
    cfg = runs.read_config(run)  # the job's own epochs and batch size, defaults included
    per_step = results["train_seconds"] / steps
    full_steps = math.ceil(1793 / cfg.train.batch_size) * cfg.train.epochs  # 1,793 training reviews at 10 %
    return [name, f"{wall:.0f}", f"{per_step:.2f}", f"{per_step * full_steps / 60:.1f}", results["reviews_per_s"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", action="store_true", help="also time the default job's training at each level")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--job-flags", default="", help="flags of the default job beyond `--fraction 0.1`")
    args = parser.parse_args()
    rows = []
    for name, env in LEVELS:
        figures = gemm(env)
        reference = MEASURED.get(name)
        ref = f"{reference[0]} / {reference[1]}" if reference else "–"
        caps = " ".join(f"{k}={v}" for k, v in env.items()) or "none"
        bf16 = figures["bf16"] if figures["bf16"] is not None else "not native (rnnlab runs fp32)"
        rows.append([name, caps, figures["fp32"], bf16, ref])
        print(rows[-1], flush=True)
    header = ["level", "caps", "fp32 GFLOP/s", "bf16 GFLOP/s", "measured on a real machine (fp32 / bf16)"]
    text = "\n".join([f"`python benchmarks/isa_levels.py` — {machine()}; {load()}.", "", table(header, rows)])
    if args.job:
        flags = args.job_flags.split()
        jobs = [job(name, env, args.steps, flags) for name, env in LEVELS]
        command = f"`rnnlab train --fraction 0.1 {args.job_flags}`".replace(" `", "`")
        text += "\n\n" + "\n".join([
            f"The default job, {command}, for {args.steps} steps at each level (`--job --steps {args.steps}`); the "
            "full run's training loop projected from the time per step:", "",
            table(["level", f"wall of {args.steps} steps (s)", "loop s/step", "projected loop, whole job (min)",
                   "train reviews/s"], jobs)])  # fmt: skip
    write_section("isa-levels", "## GEMM by ISA level (2048² matmul)\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
