"""Named configurations: `rnnlab train --preset NAME [flags]` starts from a preset's flags, later flags override.

Every entry is a configuration measured for a reason given in docs/results.md (benchmarks/imdb.py runs them); the
`student-*` entries are the distillation students of docs/distillation.md (benchmarks/distill.py runs them), to be
given one or more `--teacher` runs.
"""

from __future__ import annotations

from rnnlab.errors import UserError

_STUDENT = ["--augment", "8", "--lr", "2e-3", "--epochs", "8", "--patience", "8"]
"""What every distillation student shares: the transfer set and the schedule measured in docs/distillation.md."""

PRESETS: dict[str, list[str]] = {
    "frozen-bilstm": ["--no-finetune", "--head", "bilstm", "--epochs", "6"],
    "frozen-bilstm-head": ["--no-finetune", "--head", "bilstm", "--epochs", "6", "--truncation", "head"],
    "frozen-bilstm-attention": ["--no-finetune", "--head", "bilstm", "--pooling", "attention", "--epochs", "6"],
    "frozen-bilstm-max": ["--no-finetune", "--head", "bilstm", "--pooling", "max", "--epochs", "6"],
    "frozen-fnn": ["--no-finetune", "--head", "fnn", "--epochs", "6"],
    "glove-bilstm": ["--encoder", "glove", "--head", "bilstm", "--epochs", "10", "--max-length", "400"],
    "glove-bilstm-max": ["--encoder", "glove", "--head", "bilstm", "--pooling", "max", "--epochs", "10", "--max-length", "400"],
    # `rnnlab tune` on 10 % of IMDB (issue 23): the grid's frozen GloVe + BiLSTM with these options gains 12 points.
    "glove-bilstm-tuned": ["--encoder", "glove", "--no-finetune", "--head", "bilstm", "--lr", "0.0025", "--hidden-size", "256",
                           "--dropout", "0.06", "--pooling", "max", "--batch-size", "16", "--epochs", "4"],
    "finetune-bilstm": ["--finetune", "--head", "bilstm", "--epochs", "3"],
    "finetune-bilstm-6ep": ["--finetune", "--head", "bilstm", "--epochs", "6"],
    "finetune-bilstm-512": ["--finetune", "--head", "bilstm", "--epochs", "3", "--max-length", "512"],
    "finetune-fnn": ["--finetune", "--head", "fnn", "--epochs", "3"],
    "finetune-gru": ["--finetune", "--head", "gru", "--epochs", "3"],
    "top1-bilstm": ["--finetune", "--finetune-layers", "1", "--head", "bilstm", "--epochs", "3"],
    "top2-bilstm": ["--finetune", "--finetune-layers", "2", "--head", "bilstm", "--epochs", "3"],
    "top3-bilstm": ["--finetune", "--finetune-layers", "3", "--head", "bilstm", "--epochs", "3"],
    "top2-bilstm-lr1e-4": ["--finetune", "--finetune-layers", "2", "--head", "bilstm", "--epochs", "3", "--encoder-lr", "1e-4"],
    "top2-bilstm-lr2e-4": ["--finetune", "--finetune-layers", "2", "--head", "bilstm", "--epochs", "3", "--encoder-lr", "2e-4"],
    "top2-fnn": ["--finetune", "--finetune-layers", "2", "--head", "fnn", "--epochs", "3"],
    "top3-fnn": ["--finetune", "--finetune-layers", "3", "--head", "fnn", "--epochs", "3"],
    "frozen-mix4-bilstm": ["--no-finetune", "--layer-mix", "4", "--head", "bilstm", "--epochs", "6"],
    "frozen-mix7-bilstm": ["--no-finetune", "--layer-mix", "7", "--head", "bilstm", "--epochs", "6"],
    # The measured student (86.8 % on 10 % of IMDB with 8 copies), its table pruned to the words it can meet.
    "student-glove-bilstm": [*_STUDENT, "--encoder", "glove", "--prune-vocab", "1", "--head", "bilstm", "--hidden-size", "150"],
    # More capacity for a 16× transfer set of the full split: wider, two layers, max pooling.
    "student-glove-bilstm-2x300": [*_STUDENT, "--encoder", "glove", "--prune-vocab", "1", "--head", "bilstm",
                                   "--hidden-size", "300", "--layers", "2", "--pooling", "max"],  # fmt: skip
    # No GloVe at all: a WordPiece vocabulary learnt from the training split, 128-wide, a GRU being faster than an LSTM.
    "student-scratch-bigru": [*_STUDENT, "--encoder", "scratch", "--embedding-dim", "128", "--head", "bigru",
                              "--hidden-size", "200", "--pooling", "max"],  # fmt: skip
}

LM_PRESETS: dict[str, list[str]] = {
    # `rnnlab lm train --preset NAME`; docs/lm.md measures them.
    # 2 CPU cores: sized so that 3 epochs of full IMDB's training split (5.9M tokens of its 8k BPE vocabulary) take
    # under 40 minutes (docs/lm.md). 32 streams per batch still make 2,600 steps an epoch there; on a tenth of the data
    # use more epochs or --batch-size 16 (with 32, 2 epochs of 10 % IMDB left a smaller LM at unigram perplexity).
    "lm-cpu": ["--vocab-size", "8000", "--emb-dim", "128", "--hidden-size", "512", "--layers", "2", "--batch-size", "32",
               "--bptt", "70", "--lr", "5e-3", "--epochs", "3"],
    # One GPU: ULMFiT's AWD-LSTM (emb 400, 3 layers of 1152) on a 16k vocabulary.
    "lm-gpu": ["--vocab-size", "16000", "--emb-dim", "400", "--hidden-size", "1152", "--layers", "3", "--batch-size", "64",
               "--bptt", "70", "--lr", "2e-3", "--epochs", "10", "--device", "cuda"],
}


def expand(args: list[str], table: dict[str, list[str]] = PRESETS) -> list[str]:
    """Put the flags of `--preset NAME` first, so that the user's own flags (which keep `--preset NAME`) win."""
    if "--preset" not in args:
        return args
    i = args.index("--preset")
    if i + 1 >= len(args):
        raise UserError(f"--preset needs a name; choose from: {', '.join(table)}")
    name = args[i + 1]
    if name not in table:
        raise UserError(f"unknown preset {name!r}; choose from: {', '.join(table)}")
    return [*table[name], *args]
