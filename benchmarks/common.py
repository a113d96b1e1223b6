"""Shared by the benchmark scripts: thread settings, machine load, alternating timers, docs sections."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PERFORMANCE_MD = ROOT / "docs" / "performance.md"


def use_all_cores() -> int:
    """One intra-op thread per core (torch and onnxruntime), the setting every figure here was taken with."""
    from rnnlab.runtime import configure_math

    configure_math()  # what fit() and predict set too: without it fp32 recurrent layers run ~70x slower here
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    return threads


def load() -> str:
    """1/5/15-minute load averages against the core count: figures taken on a busy machine say so."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}/{fifteen:.1f} on {os.cpu_count()} cores"


def machine() -> str:
    """The CPU by name and the widest matrix ISA it has (what sets bf16 speed), plus any cap emulating another."""
    flags = _cpu_flags()
    name = re.search(r"^model name\s*:\s*(.+)$", flags, re.M)
    isa = next((label for flag, label in _ISA_LEVELS if re.search(rf"\b{flag}\b", flags)), platform.machine())
    caps = [f"{var}={os.environ[var]}" for var in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if os.environ.get(var)]
    capped = f", capped by {' '.join(caps)}" if caps else ""
    cpu = name.group(1).strip() if name else (platform.processor() or platform.machine())
    return f"{cpu} ({isa}{capped}), {os.cpu_count()} cores, torch {torch.__version__}"


_ISA_LEVELS = [("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 BF16, no AMX"), ("avx512f", "AVX-512, no bf16"),
               ("avx2", "AVX2")]  # fmt: skip


def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


class Meter:
    """Seconds and items of one contender, summed over the rounds it ran in."""

    def __init__(self, name: str) -> None:
        self.name, self.seconds, self.items, self.loads = name, 0.0, 0, []

    def time(self, items: int, fn, *args):
        """`fn(*args)`, timed and counted as `items` more items; returns its result."""
        start = time.perf_counter()
        result = fn(*args)
        self.seconds += time.perf_counter() - start
        self.items += items
        self.loads.append(os.getloadavg()[0])
        return result

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else float("nan")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write_section(name: str, markdown: str, path: Path = PERFORMANCE_MD) -> None:
    """Replace (or append) the section between `<!-- BEGIN name -->` and `<!-- END name -->`; other text stays."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Performance\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def table(header: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        return f"{v:,.1f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])
