"""What `rnnlab lm train|eval|generate` do with their parsed arguments (rnnlab/cli.py parses them)."""

from __future__ import annotations

import json
from pathlib import Path

from rnnlab.lm.config import LMConfig, LMEvalArgs, LMGenerateArgs, LMTrainArgs
from rnnlab.lm.evaluate import eval_run
from rnnlab.lm.sampling import generate as generate_text
from rnnlab.lm.train import train_lm


def train(args: LMTrainArgs) -> None:
    cfg = args.run
    if args.resume:
        cfg = LMConfig.load(Path(args.resume) / "config.json")  # as it was saved: the run continues exactly
    results = train_lm(cfg, resume=args.resume is not None)
    if "val_ppl_token" in results:
        print(f"validation perplexity {results['val_ppl_token']:.2f} per token, {results['val_ppl_word']:.2f} per word "
              f"({results['tokens_per_s']:.0f} tokens/s)")  # fmt: skip


def evaluate(args: LMEvalArgs) -> None:
    print(json.dumps(eval_run(Path(args.run), args.data, text_column=args.text_column, device=args.device), indent=2))


def generate(args: LMGenerateArgs) -> None:
    text = generate_text(args.run, args.prompt, length=args.length, temperature=args.temperature, top_k=args.top_k,
                         seed=args.seed, device=args.device)  # fmt: skip
    print(args.prompt + text)
