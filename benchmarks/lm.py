"""ULMFiT on IMDB: an AWD-LSTM language model on the training split, then classifiers on its stack, into docs/lm.md.

Rows: the LM's perplexity (validation and test, per token and per word), its training speed, and test accuracy of the
pretrained stack (concat pooling + fnn head, gradual unfreezing, discriminative rates) against the same architecture
from random init (all layers training from the start) and TF-IDF + logistic regression, all on one split. Every step is
a subprocess (as a user runs it) and is skipped when its run folder is finished, so a killed benchmark continues; an LM
run killed mid-way resumes from its checkpoint.

    nice -n 10 timeout 1800 python benchmarks/lm.py --fraction 0.1 --seeds 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, load, machine, table, write_section  # noqa: E402

LM_MD = ROOT / "docs" / "lm.md"
PROMPTS = ["This movie", "The acting was", "I expected"]


def rnnlab(*args: str) -> str:
    print("$ rnnlab", " ".join(args), flush=True)
    return subprocess.run([sys.executable, "-m", "rnnlab", *args], check=True, capture_output=True, text=True).stdout


def timed(run: Path, step) -> float:
    """Run `step` unless `run` is finished; the wall time is kept beside the run so a rerun reports it too."""
    stamp = run.parent / f"{run.name}.seconds"
    if not (run / "results.json").is_file():
        start = time.perf_counter()
        step()
        stamp.write_text(f"{time.perf_counter() - start:.1f}")
    return float(stamp.read_text()) if stamp.is_file() else float("nan")


def train_lm(run: Path, args: list[str]) -> float:
    def step() -> None:
        resume = (run / "checkpoint.safetensors").is_file()
        rnnlab("lm", "train", *(["--resume", str(run)] if resume else [*args, "--run-dir", str(run), "--overwrite"]))

    return timed(run, step)


def classify(run: Path, args: list[str]) -> tuple[dict, float]:
    seconds = timed(run, lambda: rnnlab("train", *args, "--run-dir", str(run), "--overwrite", "--no-progress"))
    return json.loads((run / "results.json").read_text()), seconds


def tfidf(fraction: float, out: Path) -> dict:
    """TF-IDF + logistic regression on the same split (the same data options give the same split)."""
    from rnnlab.compare.baseline import run_baseline
    from rnnlab.config import DataConfig
    from rnnlab.data.split import prepare, split_hash

    if not (out / "results.json").is_file():
        data = prepare(DataConfig(fraction=fraction))
        train, test = data.split["train"], data.split["test"]
        run_baseline([data.texts[i] for i in train], data.labels[train], [data.texts[i] for i in test], data.labels[test],
                     data.label_names, out, split_hash=split_hash(data))  # fmt: skip
    return json.loads((out / "results.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--out", default=str(ROOT / "runs" / "lm-bench"))
    parser.add_argument("--preset", default="lm-cpu")
    parser.add_argument("--lm-epochs", type=int, default=4)
    parser.add_argument("--clf-epochs", type=int, default=4)
    parser.add_argument("--extra", default="", help="flags added to every training command (e.g. --device cuda)")
    parser.add_argument("--clf-extra", default="", help="flags added to every classifier (e.g. --pool-norm)")
    parser.add_argument("--seeds", type=int, default=1, help="classifier seeds per row (0, 1, …): mean ± std")
    parser.add_argument("--section", default=None)
    parser.add_argument("--lm-only", action="store_true", help="the language model alone, without the classifiers")
    args = parser.parse_args()
    out, extra = Path(args.out) / f"f{args.fraction}", args.extra.split()
    out.mkdir(parents=True, exist_ok=True)
    data = ["--fraction", str(args.fraction)]
    lm_args = ["--preset", args.preset, *data, "--no-progress", *extra]
    lm_seconds = train_lm(out / "lm", [*lm_args, "--epochs", str(args.lm_epochs)])
    train_lm(out / "lm-random", [*lm_args, "--epochs", "0"])  # the same vocabulary: it is learned deterministically
    test = json.loads(rnnlab("lm", "eval", str(out / "lm")))
    samples = {p: rnnlab("lm", "generate", str(out / "lm"), "--prompt", p, "--length", "60", "--temperature", "0.8",
                         "--top-k", "40", "--seed", str(seed)).strip() for seed, p in enumerate(PROMPTS)}  # fmt: skip
    if args.lm_only:
        return write(args, out, lm_seconds, test, samples, {}, None)
    clf = [*data, "--head", "fnn", "--pooling", "concat", "--hidden-size", "50", "--epochs", str(args.clf_epochs),
           "--batch-size", "32", "--lr", "3e-3", "--max-length", "256", "--patience", "9", *args.clf_extra.split(),
           *extra]  # fmt: skip
    rows = {"pretrained-all": ("pretrained-all", "lm", ["--no-gradual-unfreezing"]),
            "random": ("random-init", "lm-random", ["--no-gradual-unfreezing"]), "pretrained": ("ulmfit", "lm", [])}  # fmt: skip
    tag = "".join(f"-{flag.strip('-')}" for flag in args.clf_extra.split())  # its own folders: finished runs are skipped
    classifiers = {key: [classify(out / (f"{name}{tag}" if seed == 0 else f"{name}{tag}-s{seed}"),
                                  ["--encoder", f"lm:{out / lm}", *flags, *clf, "--seed", str(seed)])
                         for seed in range(args.seeds)]
                   for key, (name, lm, flags) in rows.items()}  # fmt: skip
    write(args, out, lm_seconds, test, samples, classifiers, tfidf(args.fraction, out / "tfidf"))


def describe_lm(run: Path, test: dict, seconds: float) -> str:
    """The LM's table: data, vocabulary, network, perplexities and speed."""
    lm = json.loads((run / "results.json").read_text())
    net = json.loads((run / "config.json").read_text())["net"]
    return table(["", "value"], [
        ["texts (training split)", f"{json.loads((run / 'split.json').read_text())['sizes']['train']:,}"],
        ["vocabulary", f"{lm['vocab']} {lm['vocab_size']:,}"],
        ["network", f"emb {net['emb_dim']}, hidden {net['hidden_size']}, {net['layers']} layers, {lm['params']:,} weights"],
        ["epochs × tokens", f"{lm['epochs']} × {lm['train_tokens']:,}"],
        ["validation perplexity per token / per word", f"{lm['val_ppl_token']:.1f} / {lm['val_ppl_word']:.1f}"],
        ["test perplexity per token / per word", f"{test['ppl_token']:.1f} / {test['ppl_word']:.1f}"],
        ["training tokens/s", f"{lm['tokens_per_s']:,.0f}"],
        ["LM wall time (training + validation + vocabulary)", f"{seconds / 60:.1f} min"],
    ])  # fmt: skip


def spread(runs: list[tuple[dict, float]]) -> list[str]:
    """One classifier row over its seeds: accuracy mean ± std (each seed's), macro-F1 mean, best epochs, wall mean."""
    acc = [100 * r["test_accuracy"] for r, _ in runs]
    each = f" ({', '.join(f'{a:.2f}' for a in acc)})" if len(acc) > 1 else ""
    std = f" ± {statistics.stdev(acc):.2f}" if len(acc) > 1 else ""
    return [f"{statistics.mean(acc):.2f}{std}{each}", f"{statistics.mean(100 * r['test_macro_f1'] for r, _ in runs):.2f}",
            ", ".join(str(r["best_epoch"]) for r, _ in runs), f"{statistics.mean(s for _, s in runs) / 60:.1f}"]  # fmt: skip


def write(args, out: Path, lm_seconds: float, test: dict, samples: dict, classifiers: dict, baseline: dict) -> None:
    section = args.section or f"lm-f{args.fraction}"
    lm_table = describe_lm(out / "lm", test, lm_seconds)
    names = {"pretrained": "ULMFiT: pretrained LM stack, gradual unfreezing, lr / 2.6^depth",
             "pretrained-all": "pretrained LM stack, all layers at --lr from the start",
             "random": "same architecture, random init, all layers at --lr from the start"}  # fmt: skip
    rows = [[names[key], *spread(runs)] for key, runs in classifiers.items()]
    if baseline:
        rows.append(["TF-IDF + logistic regression", f"{100 * baseline['test_accuracy']:.2f}",
                     f"{100 * baseline['test_macro_f1']:.2f}", "–", f"{baseline['train_seconds'] / 60:.1f}"])  # fmt: skip
    clf_table = table(["classifier", "test accuracy %", "macro-F1 %", "best epoch", "wall min"], rows) if rows else ""
    text = "\n\n".join(f"**{p}** → {s}" for p, s in samples.items())
    clf_extra = f" {args.clf_extra}" if args.clf_extra else ""
    write_section(
        section,
        f"""### IMDB, fraction {args.fraction} (`python benchmarks/lm.py --fraction {args.fraction}`)

{machine()}; {load()} when written. LM: `rnnlab lm train --preset {args.preset} --fraction {args.fraction} --epochs
{args.lm_epochs}`; classifiers: `rnnlab train --encoder lm:RUN --head fnn --pooling concat --hidden-size 50 --epochs
{args.clf_epochs} --batch-size 32 --lr 3e-3 --max-length 256{clf_extra} --seed S`, S = 0 … {args.seeds - 1} (random
init: an `--epochs 0` LM run and `--no-gradual-unfreezing`).

{lm_table}

{clf_table}

Samples (`rnnlab lm generate RUN --prompt P --length 60 --temperature 0.8 --top-k 40 --seed S`, S = 0, 1, 2):

{text}""",
        LM_MD,
    )
    print(f"wrote {LM_MD}")


if __name__ == "__main__":
    main()
