"""Distillation benchmark: teachers → transfer set → students → TF-IDF on one seeded split, resumable at every stage.

    python benchmarks/distill.py --fraction 1.0 --teachers 3 --augment 16 --device cuda   # the full chain, on a GPU
    python benchmarks/distill.py --teacher-run runs/default --augment 8 --epochs 8        # 10 % of IMDB, make demo's teacher
    python benchmarks/distill.py --fraction 0.01 --epochs 1 --teacher-epochs 1 --augment 2 --rate-texts 200 --no-doc

Stages, each skipped when its folder already holds results.json: (1) `--teachers N` teachers (`--teacher-preset`,
seeds 0..N-1), unless `--teacher-run` names finished ones; (2) the transfer set: the training split and `--augment`
copies, labelled once with the teachers' averaged logits, which every distilled student's folder then gets a copy of
(no student pays the teachers again), with each teacher's test accuracy and the ensemble's; (3) for every
`--students` preset, a twin on hard labels and a distilled one; (4) TF-IDF + logistic regression.
Every model is measured for test accuracy and macro-F1, predict reviews/s on the CPU end to end (`Labeller.predict`
in batches of 64, on the same `--rate-texts` test texts for every model), the files `rnnlab.load` reads from its run
folder and its ONNX int8 graph, the behavioural suite's negation failure rate, and accuracy on the packaged Rotten
Tomatoes sentences (another domain: one-line snippets). Writes docs/distillation.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, load, machine, table, use_all_cores, write_section  # noqa: E402

DISTILL_MD = ROOT / "docs" / "distillation.md"
DEPLOYED = ("config.json", "labels.json", "encoder.json", "model.safetensors", "tokenizer.json", "vocabulary.json")
"""What `rnnlab.load` reads from a run folder (a frozen encoder's vectors are re-read from their source instead)."""


def train(run: Path, args: list[str], *, command: tuple[str, ...] = ("train",)) -> dict:
    """`rnnlab train` (or another `command`, such as `lm train`) in a subprocess, a fresh process per model as a user
    runs it; reuses a finished run and resumes an interrupted one from its last checkpoint (a full-IMDB teacher on
    2 cores outlasts a sitting)."""
    if not (run / "results.json").is_file():
        rnnlab = [sys.executable, "-m", "rnnlab", *command]
        if (run / "checkpoint.safetensors").is_file():
            cmd = [*rnnlab, "--resume", str(run)]  # its saved config, --no-progress included
        else:
            cmd = [*rnnlab, *args, "--run-dir", str(run), "--overwrite", "--no-progress"]
        print("$", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True)
    return json.loads((run / "results.json").read_text())


def teachers_stage(opts, out: Path, split: list[str]) -> list[Path]:
    if opts.teacher_run:
        return [Path(t) for t in opts.teacher_run]
    runs = [out / f"teacher-{opts.teacher_preset}-s{seed}" for seed in range(opts.teachers)]
    for seed, run in enumerate(runs):
        epochs = ["--epochs", str(opts.teacher_epochs)] if opts.teacher_epochs else []
        train(run, [*split, "--preset", opts.teacher_preset, *epochs, "--seed", str(seed), "--device", opts.device])
    return runs


def transfer_stage(opts, out: Path, teachers: list[Path], data) -> Path:
    """The teachers' averaged logits for the transfer set (teacher.safetensors), and its figures (results.json)."""
    from rnnlab.config import DistillConfig
    from rnnlab.runs import atomic_write_json
    from rnnlab.training.distill import check_teacher, ensemble_logits, teacher_logits, with_transfer_set

    folder = out / f"transfer-aug{opts.augment}-{opts.swap_with}"
    if (folder / "results.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    cfg = DistillConfig(teacher=[str(t) for t in teachers], augment=opts.augment, swap_with=opts.swap_with)
    check_teacher(cfg, data)
    start = time.perf_counter()
    transfer = with_transfer_set(data, cfg, seed=0)  # the students' --seed
    augment_s = time.perf_counter() - start
    teacher_logits(folder, transfer, cfg, device=opts.device)
    label_s = time.perf_counter() - start - augment_s
    test = data.split["test"]
    logits = ensemble_logits(cfg.teacher, [data.texts[i] for i in test], device=opts.device)
    atomic_write_json(folder / "results.json", {
        "texts": len(transfer.split["train"]), "augment_seconds": augment_s, "label_seconds": label_s,
        "teachers": {str(t): json.loads((t / "results.json").read_text())["test_accuracy"] for t in teachers},
        "ensemble_test_accuracy": float((logits.argmax(1) == data.labels[test]).mean())})  # fmt: skip
    return folder


def students_stage(opts, out: Path, split: list[str], teachers: list[Path], transfer: Path) -> list[tuple[str, Path]]:
    extra = shlex.split(opts.student_flags)
    common = [*extra, "--epochs", str(opts.epochs), "--patience", str(opts.epochs), "--device", opts.device]
    distill = ["--teacher", *map(str, teachers), "--augment", str(opts.augment), "--swap-with", opts.swap_with]
    made = []
    for preset in opts.students:
        name = "-".join([preset, *("".join(c for c in flag if c.isalnum()) for flag in extra)])
        hard, taught = out / f"{name}-hard-e{opts.epochs}", out / f"{name}-aug{opts.augment}-{opts.swap_with}-e{opts.epochs}"
        train(hard, [*split, "--preset", preset, *common])
        if not (taught / "results.json").is_file():  # the transfer set's logits, so that its key matches
            taught.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(transfer / "teacher.safetensors", taught / "teacher.safetensors")
        train(taught, [*split, "--preset", preset, *common, *distill])
        made += [(f"{name}, hard labels", hard), (f"{name}, distilled", taught)]
    return made


def predict_rate(predictor, texts: list[str]) -> float:
    predictor.predict(texts[:64])  # warm-up
    start = time.perf_counter()
    predictor.predict(texts)
    return len(texts) / (time.perf_counter() - start)


def quality(predict_proba, names: list[str], test_texts: list[str], rt) -> tuple[float, float]:
    """(negation failure rate, Rotten Tomatoes accuracy)."""
    from rnnlab.analyze.behaviour import NEGATION_TESTS, build_suite, run_suite

    suite = [t for t in build_suite(test_texts, seed=0) if t.name in NEGATION_TESTS]
    results = run_suite(suite, predict_proba, names)
    negation = sum(r["failures"] for r in results) / sum(r["cases"] for r in results)
    predicted = np.asarray(names)[predict_proba(rt.texts).argmax(1)]
    return negation, float((predicted == np.asarray(rt.labels)).mean())


def folder_mb(run: Path) -> float:
    return sum((run / name).stat().st_size for name in DEPLOYED if (run / name).is_file()) / 1e6


def int8_mb(run: Path) -> float:
    from rnnlab.serve.onnx import export_onnx
    from rnnlab.serve.onnx_engine import INT8_NAME

    if not (run / INT8_NAME).is_file():
        export_onnx(run, quantize=True)
    return (run / INT8_NAME).stat().st_size / 1e6


def model_row(name: str, run: Path, *, opts, data, rt, rate_texts: list[str], onnx: bool) -> list:
    import rnnlab

    results = json.loads((run / "results.json").read_text())
    here = rnnlab.load(run, device=opts.device, calibrated=False)
    negation, rt_accuracy = quality(here.predict_proba, here.label_names, [data.texts[i] for i in data.split["test"]], rt)
    rate = predict_rate(rnnlab.load(run, device="cpu", calibrated=False), rate_texts)
    return [name, 100 * results["test_accuracy"], 100 * results["test_macro_f1"], 100 * negation, 100 * rt_accuracy, rate,
            folder_mb(run), int8_mb(run) if onnx else "–", f"{results['params_total'] / 1e6:.2f}M",
            results["train_seconds"]]  # fmt: skip


def tfidf_row(out: Path, dataset, data, rt) -> list:
    """TF-IDF + logistic regression, fitted again in this process for the behavioural suite and Rotten Tomatoes."""
    from rnnlab.compare.baseline import build_baseline, unsegmented
    from rnnlab.compare.grid import baseline_row
    from rnnlab.config import RunConfig

    baseline_row(RunConfig(dataset=dataset), out / "tfidf")
    results = json.loads((out / "tfidf" / "results.json").read_text())
    rows = [*data.split["train"], *data.split["val"]]  # as baseline_row fits it
    texts = [data.texts[i] for i in rows]
    vectorizer, classifier = build_baseline(chars=unsegmented(texts))
    classifier.fit(vectorizer.fit_transform(texts), data.labels[rows])
    proba = lambda t: classifier.predict_proba(vectorizer.transform(t))  # noqa: E731
    negation, rt_accuracy = quality(proba, data.label_names, [data.texts[i] for i in data.split["test"]], rt)
    return ["TF-IDF + logistic regression", 100 * results["test_accuracy"], 100 * results["test_macro_f1"],
            100 * negation, 100 * rt_accuracy, results.get("reviews_per_s") or "–", "–", "–",
            f"{results['params_total'] / 1e6:.2f}M", results["train_seconds"]]  # fmt: skip


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fraction", type=float, default=0.1, help="share of IMDB (with trained teachers)")
    parser.add_argument("--teachers", type=int, default=1, help="teachers to train (seeds 0..N-1)")
    parser.add_argument("--teacher-preset", default="finetune-bilstm")
    parser.add_argument("--teacher-epochs", type=int, default=0, help="0: the preset's")
    parser.add_argument("--teacher-run", nargs="+", help="finished teacher runs to use instead (their split is used)")
    parser.add_argument("--students", nargs="+", default=["student-glove-bilstm"], help="student presets")
    parser.add_argument("--student-flags", default="", help='more flags for every student, e.g. "--prune-vocab 8"')
    parser.add_argument("--augment", type=int, default=8)
    parser.add_argument("--swap-with", default="class", choices=["class", "glove"])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--device", default="auto", help="where teachers and students train (rates are on the CPU)")
    parser.add_argument("--rate-texts", type=int, default=2000)
    parser.add_argument("--rt-texts", type=int, default=0, help="Rotten Tomatoes sentences, evenly spread (0: all)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "distill"))
    parser.add_argument("--no-doc", action="store_true", help="print the table without writing docs/distillation.md")
    return parser.parse_args()


def main() -> None:
    opts = options()
    use_all_cores()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # the teachers' labelling, chunk by chunk
    from rnnlab.config import DataConfig
    from rnnlab.data.readers import read_examples
    from rnnlab.data.split import prepare

    if opts.teacher_run:
        d = json.loads((Path(opts.teacher_run[0]) / "config.json").read_text())["dataset"]
        dataset = DataConfig(data=d["data"], fraction=d["fraction"], split_seed=d["split_seed"])
    else:
        dataset = DataConfig(fraction=opts.fraction)
    split = ["--data", dataset.data, "--fraction", str(dataset.fraction), "--split-seed", str(dataset.split_seed)]
    out = Path(opts.out) / f"f{dataset.fraction}"
    data = prepare(dataset).compact()  # what `rnnlab train` sees, so that the transfer set's key matches
    teachers = teachers_stage(opts, out, split)
    transfer = transfer_stage(opts, out, teachers, data)
    students = students_stage(opts, out, split, teachers, transfer)
    rt = read_examples("rotten_tomatoes")
    step = max(1, len(rt) // opts.rt_texts) if opts.rt_texts else 1
    rt.texts, rt.labels = rt.texts[::step], rt.labels[::step]
    test = [data.texts[i] for i in data.split["test"]]
    rate_texts = (test * (opts.rate_texts // len(test) + 1))[: opts.rate_texts]
    measure = dict(opts=opts, data=data, rt=rt, rate_texts=rate_texts)
    rows = [model_row(f"teacher {t.name}", t, **measure, onnx=False) for t in teachers]
    rows += [model_row(name, run, **measure, onnx=True) for name, run in students]
    rows.append(tfidf_row(out, dataset, data, rt))
    write(opts, dataset, data, teachers, transfer, students, rows, len(rt))


def write(opts, dataset, data, teachers, transfer, students, rows, rt_count) -> None:
    figures = json.loads((transfer / "results.json").read_text())
    header = ["model", "accuracy %", "macro-F1 %", "negation failures %", f"Rotten Tomatoes accuracy % ({rt_count:,})",
              "predict reviews/s (CPU)", "run folder MB", "ONNX int8 MB", "params", "train s"]  # fmt: skip
    teacher_rate = min(r[5] for r in rows[: len(teachers)])
    accuracies = ", ".join(f"{Path(t).name} {100 * a:.2f} %" for t, a in figures["teachers"].items())
    command = " ".join(sys.argv[1:])
    lines = [f"`python benchmarks/distill.py {command}` — {machine()}; device {opts.device}; {load()}.",
             f"Split: {dataset.data}, fraction {dataset.fraction}, split seed {dataset.split_seed} "
             f"({len(data.split['train'])} train / {len(data.split['val'])} val / {len(data.split['test'])} test).",
             f"Teachers: {accuracies}; their averaged logits: **{100 * figures['ensemble_test_accuracy']:.2f} %**.",
             f"Transfer set: {figures['texts']:,} texts (`--augment {opts.augment} --swap-with {opts.swap_with}`), built "
             f"in {figures['augment_seconds']:.1f} s and labelled by the teachers in {figures['label_seconds']:.1f} s.",
             "", table(header, rows), "",
             *(f"- {name}: {r[5] / teacher_rate:.1f}× the slowest teacher's predict rate."
               for (name, _), r in zip(students, rows[len(teachers):]))]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    if not opts.no_doc:
        write_section(f"distill-f{dataset.fraction}-aug{opts.augment}", text, DISTILL_MD)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
