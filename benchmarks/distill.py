"""Distillation benchmark: teacher, students on hard labels, distilled students, TF-IDF, on one seeded split.

    python benchmarks/distill.py                         # 10 % of IMDB, teacher runs/default (make demo); ≈ 25 min
    python benchmarks/distill.py --augment 0 --epochs 4  # quicker

Every student is `rnnlab train` with the student options below, once on hard labels and once with
`--teacher`; all share the teacher's split. Accuracy and macro-F1 on the test split, predict reviews/s end to end
from text (tokenization included, `Labeller.predict` in batches of 64, on the same 2,000 test texts for every
model, teacher included), weights on disk and training time. Writes docs/distillation.md.
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
from common import ROOT, load, machine, table, use_all_cores, write_section  # noqa: E402

DISTILL_MD = ROOT / "docs" / "distillation.md"


def train(run: Path, args: list[str]) -> dict:
    """`rnnlab train` in a subprocess (a fresh process per model, as a user runs it); reuses a finished run."""
    if not (run / "results.json").is_file():
        cmd = [sys.executable, "-m", "rnnlab", "train", *args, "--run-dir", str(run), "--overwrite", "--no-progress"]
        print("$", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True)
    return json.loads((run / "results.json").read_text())


def predict_rate(run: Path, texts: list[str]) -> float:
    import rnnlab

    model = rnnlab.load(run, device="cpu")
    model.predict(texts[:64])  # warm-up
    start = time.perf_counter()
    model.predict(texts)
    return len(texts) / (time.perf_counter() - start)


def weights_mb(run: Path) -> float:
    """What the run folder stores (a frozen encoder's vectors or weights are referenced, not copied: see params)."""
    return sum(p.stat().st_size for p in run.glob("*.safetensors") if p.name != "teacher.safetensors") / 1e6


def _int8_check(run: Path, data) -> str:
    """Accuracy of the last student's ONNX int8 graph against its PyTorch weights, on the test split."""

    from rnnlab.serve.onnx import export_onnx
    from rnnlab.serve.onnx_engine import OnnxPredictor

    export_onnx(run, quantize=True)
    test = data.split["test"]
    texts, labels = [data.texts[i] for i in test], data.labels[test]
    accuracy = float((OnnxPredictor(run, quantized=True).predict_proba(texts).argmax(1) == labels).mean())
    torch_accuracy = json.loads((run / "results.json").read_text())["test_accuracy"]
    return (f"{run.name} exported to ONNX int8 (`rnnlab export RUN --format onnx --quantize`): {100 * accuracy:.2f} % "
            f"against {100 * torch_accuracy:.2f} % in PyTorch ({100 * (accuracy - torch_accuracy):+.2f} points).")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default=str(ROOT / "runs" / "default"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "distill"))
    parser.add_argument("--augment", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    use_all_cores()
    teacher = Path(args.teacher)
    cfg = json.loads((teacher / "config.json").read_text())
    split = ["--data", cfg["dataset"]["data"], "--fraction", str(cfg["dataset"]["fraction"]),
             "--split-seed", str(cfg["dataset"]["split_seed"])]  # fmt: skip
    student = ["--encoder", "glove", "--head", "bilstm", "--hidden-size", "150", "--epochs", str(args.epochs),
               "--patience", str(args.epochs), "--lr", "2e-3"]  # fmt: skip
    out = Path(args.out)
    rows, timings = [], {}
    from rnnlab.compare.grid import baseline_row
    from rnnlab.config import DataConfig, RunConfig
    from rnnlab.data.split import prepare

    d = cfg["dataset"]
    dataset = DataConfig(data=d["data"], fraction=d["fraction"], split_seed=d["split_seed"])
    data = prepare(dataset)
    test = [data.texts[i] for i in data.split["test"]]
    test_texts = (test * (2000 // len(test) + 1))[:2000]  # 2,000 texts whatever the split's size, for steady timings
    baseline_row(RunConfig(dataset=dataset), out / "tfidf")
    contenders = [
        ("teacher: " + f"{cfg['encoder']['encoder']} + {cfg['model']['head']} (fine-tuned)", teacher, None),
        ("student, hard labels", out / f"glove-bilstm-hard-e{args.epochs}", student),
        ("student, distilled (MSE, no augmentation)", out / f"glove-bilstm-distilled-e{args.epochs}",
         [*student, "--teacher", str(teacher)]),
    ]
    if args.augment:
        name = f"student, distilled (MSE, + {args.augment} augmented copies)"
        options = [*student, "--teacher", str(teacher), "--augment", str(args.augment)]
        contenders.append((name, out / f"glove-bilstm-distilled-aug{args.augment}-e{args.epochs}", options))
    for name, run, options in contenders:
        start = time.perf_counter()
        results = json.loads((run / "results.json").read_text()) if options is None else train(run, [*split, *options])
        timings[name] = time.perf_counter() - start
        rate = predict_rate(run, test_texts)
        rows.append([name, 100 * results["test_accuracy"], 100 * results["test_macro_f1"], rate, weights_mb(run),
                     f"{results['params_total'] / 1e6:.2f}M", results["train_seconds"]])  # fmt: skip
        print(rows[-1], flush=True)
    export_note = _int8_check(contenders[-1][1], data)
    tfidf = json.loads((out / "tfidf" / "results.json").read_text())
    rows.append(["TF-IDF + logistic regression", 100 * tfidf["test_accuracy"], 100 * tfidf["test_macro_f1"],
                 tfidf.get("reviews_per_s") or "–", "–", f"{tfidf['params_total'] / 1e6:.2f}M",
                 tfidf["train_seconds"]])  # fmt: skip
    header = ["model", "accuracy %", "macro-F1 %", "predict reviews/s", "weights MB on disk", "params", "train s"]
    teacher_rate = rows[0][3]
    lines = [f"`python benchmarks/distill.py --augment {args.augment} --epochs {args.epochs}` — {machine()}; {load()}.",
             f"Split: {cfg['dataset']['data']}, fraction {cfg['dataset']['fraction']}, split seed {cfg['dataset']['split_seed']} "
             f"({len(data.split['train'])} train / {len(data.split['val'])} val / {len(data.split['test'])} test).",
             f"Student options: `{' '.join(student)}`.", "", table(header, rows), "",
             *(f"- {r[0]}: {r[3] / teacher_rate:.1f}× the teacher's predict rate." for r in rows[1:-1]),
             f"- {export_note}"]  # fmt: skip
    write_section("distill-f" + str(cfg["dataset"]["fraction"]), "\n".join(lines), DISTILL_MD)
    print("\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
