"""How fast a finished run labels texts under each inference engine, and how often each agrees with torch bf16: the
ceiling a teacher puts on a distillation's transfer set (every copy goes through the teacher once).

    python benchmarks/label_engines.py --run runs/engine/teacher-now --reviews 384

Engines: torch with bf16 autocast (what `--teacher` labelling runs), torch fp32, and the run's ONNX graph in fp32
and int8 under onnxruntime (exported first when missing, into a copy of the run). The same IMDB reviews, drawn
with a fixed seed, in alternating turns; the second turn's rates are reported. Section `label-engines` of
docs/performance.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load, machine, table, write_section  # noqa: E402


def engines(run: Path) -> dict:
    from rnnlab.serve.onnx import export_onnx
    from rnnlab.serve.onnx_engine import OnnxPredictor
    from rnnlab.serve.predict import Predictor

    export_onnx(run, quantize=True)  # writes both graphs
    return {"torch bf16": Predictor.load(run, device="cpu"), "torch fp32": Predictor.load(run, device="cpu", bf16=False),
            "onnx fp32": OnnxPredictor(run), "onnx int8": OnnxPredictor(run, quantized=True)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished classification run")
    parser.add_argument("--reviews", type=int, default=384)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from rnnlab.data.readers import read_examples

    examples = read_examples("imdb")
    picked = np.random.default_rng(0).choice(len(examples.texts), args.reviews, replace=False)
    texts = [examples.texts[i] for i in picked]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(args.run, run)  # the exports go into the copy, never into the measured run
        labellers = engines(run)
        ids = labellers["torch bf16"].encoder.tokenize(texts)
        rates, probs = {}, {}
        for _ in range(2):
            for name, labeller in labellers.items():
                start = time.perf_counter()
                probs[name] = labeller.raw_probs_of_ids(ids)
                rates[name] = len(texts) / (time.perf_counter() - start)
    ref = probs["torch bf16"]
    rows = [[name, f"{rates[name]:.1f}", f"{rates[name] / rates['torch bf16']:.2f}",
             f"{100 * (probs[name].argmax(1) == ref.argmax(1)).mean():.1f} %", f"{np.abs(probs[name] - ref).max():.3f}"]
            for name in labellers]  # fmt: skip
    text = f"{machine()}, {load()}; run `{args.run}`, {len(texts)} IMDB reviews\n\n" + table(
        ["engine", "texts/s", "× torch bf16", "same label as torch bf16", "largest probability change"], rows)  # fmt: skip
    print(text)
    if not args.no_write:
        write_section("label-engines", f"`python benchmarks/label_engines.py {' '.join(sys.argv[1:])}`\n\n{text}")


if __name__ == "__main__":
    main()
