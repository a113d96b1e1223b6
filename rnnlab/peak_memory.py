"""Peak memory of one run, even when one process trains many (a grid runs every cell in one process).

`ru_maxrss` is the peak of the whole process, and a child started by fork + exec inherits its parent's; Linux
keeps a resettable per-process high-water mark (VmHWM), so each run resets it and reads its own peak.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def reset_peak() -> None:
    """Start counting a new peak from the memory in use now."""
    try:
        CLEAR_REFS.write_text("5")  # "5" resets the peak resident set size (Linux ≥ 4.0)
    except OSError:
        pass  # not Linux, or /proc is read-only: peak_mb() falls back to the process-wide peak
    torch = _torch()
    if torch is not None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_mb() -> float:
    """Peak resident memory (MiB) since reset_peak(), or of the whole process where that can't be reset;
    on a GPU the larger of that and the peak CUDA allocation."""
    peak, torch = _high_water_mb(), _torch()
    if torch is not None and torch.cuda.is_available():
        peak = max(peak, torch.cuda.max_memory_allocated() / 2**20)
    return peak


def _torch():
    """torch if this process has imported it (the TF-IDF baseline never does): no import just to ask about CUDA."""
    return sys.modules.get("torch")


def _high_water_mb() -> float:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
