"""docs/analysis.md: the default run analysed on its own test split and, out of domain, on Rotten Tomatoes.

    python benchmarks/analysis.py            # runs/default (make demo); ≈ 2 min on 2 cores

Runs `rnnlab analyze` twice (the test split, then `--data rotten_tomatoes`: short lower-cased snippets, another
length distribution and style), copies the pictures to docs/img/ and writes the figures between markers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, load, machine, use_all_cores, write_section  # noqa: E402

ANALYSIS_MD = ROOT / "docs" / "analysis.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=str(ROOT / "runs" / "default"))
    args = parser.parse_args()
    from rnnlab.analyze.report import to_markdown
    from rnnlab.analyze.run import analyze_run
    from rnnlab.config import AnalyzeConfig

    use_all_cores()
    run = Path(args.run)
    parts = []
    in_domain = ("headline", "calibration", "slices", "behaviour", "attribution", "mistakes")
    out_of_domain = ("headline", "calibration", "slices", "behaviour")
    cases = [("test", None, in_domain), ("rotten_tomatoes", "rotten_tomatoes", out_of_domain)]
    for name, data, sections in cases:
        start = time.perf_counter()
        report = analyze_run(run, AnalyzeConfig(data=data))
        seconds = time.perf_counter() - start
        out = run / ("analysis" if data is None else f"analysis-{data}")
        prefix = f"analysis-{run.name}-{name}-"
        for picture in ("reliability.png", "confidence.png", "length.png"):
            shutil.copyfile(out / picture, ROOT / "docs" / "img" / f"{prefix}{picture}")
        shown = run.relative_to(ROOT) if run.is_relative_to(ROOT) else run
        command = f"`rnnlab analyze {shown}" + (f" --data {data}`" if data else "`")
        parts.append(f"{command}: {seconds:.0f} s wall on {machine()}; {load()}.\n\n"
                     + to_markdown(report, sections=sections, pictures=f"img/{prefix}", level=3))  # fmt: skip
    write_section("analysis-default", "\n\n".join(parts), ANALYSIS_MD)
    print(f"wrote {ANALYSIS_MD}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
