"""`rnnlab lm` configuration: dataclasses only, no torch, so the CLI builds its help without importing torch.

An LM run folder stores the exact `LMConfig` that produced it as `config.json`; `LMNetConfig`'s fields are the keyword
arguments of `rnnlab.encoders.lm.LSTMStack`, which rebuilds the network from them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tyro

from rnnlab.config import DataConfig, _build
from rnnlab.errors import UserError


@dataclass
class LMNetConfig:
    """The AWD-LSTM network (Merity et al. 2017): embedding, stacked LSTMs, an output layer tied to the embedding."""

    emb_dim: int = 128
    """Width of the embedding, and of the last LSTM layer (the output layer shares the embedding's weights)."""
    hidden_size: int = 256
    """Width of the LSTM layers below the last."""
    layers: int = 2
    """Stacked LSTM layers."""
    embed_p: float = 0.02
    """Embedding dropout: share of vocabulary rows dropped (whole words) per forward."""
    input_p: float = 0.2
    """Locked (variational) dropout on the embedding's output: one mask per sequence, shared over time."""
    weight_p: float = 0.2
    """Weight drop (DropConnect) on each LSTM's hidden-to-hidden weights, a new mask per forward."""
    hidden_p: float = 0.15
    """Locked dropout between LSTM layers."""
    output_p: float = 0.1
    """Locked dropout on the last LSTM's output, before the output layer."""

    def __post_init__(self) -> None:
        if min(self.emb_dim, self.hidden_size, self.layers) < 1:
            raise UserError("--emb-dim, --hidden-size and --layers must be positive")
        for name in ("embed_p", "input_p", "weight_p", "hidden_p", "output_p"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")


@dataclass
class LMConfig:
    """What `rnnlab lm train` trains, on which texts, and how."""

    dataset: DataConfig = field(default_factory=DataConfig)
    net: LMNetConfig = field(default_factory=LMNetConfig)
    vocab: Literal["subword", "chars"] = "subword"
    """`subword`: byte-level BPE learned (by `tokenizers`) on the training split; `chars`: its characters."""
    vocab_size: int = 4000
    """Subword vocabulary size, special tokens included."""
    epochs: int = 2
    """Passes over the training split's texts (0 writes the initial weights: a random-init baseline)."""
    batch_size: int = 32
    """Parallel token streams (rows of each BPTT batch)."""
    bptt: int = 70
    """Tokens per truncated back-propagation window; the recurrent state carries over between windows."""
    lr: float = 3e-3
    """Peak learning rate of the one-cycle schedule."""
    warmup: float = 0.25
    """Share of steps rising to the peak learning rate (then a cosine decay)."""
    weight_decay: float = 0.01
    """AdamW weight decay (not on biases)."""
    clip_norm: float | None = 0.5
    """Gradient clipping max norm; None turns clipping off."""
    seed: int = 0
    """Seed of initialisation, dropout and document order."""
    device: str = "auto"
    """`auto`, `cpu`, `cuda` or `cuda:N`."""
    bf16: bool = True
    """bf16 autocast where the hardware runs it natively (--no-bf16: fp32)."""
    progress: bool = True
    """Progress bars (--no-progress turns them off)."""
    checkpoint_every: int = 200
    """Steps between resumable checkpoints (also written at every epoch end)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps in total (for smoke tests)."""
    sample_prompt: str = "This movie"
    """Prompt of the sample written into the run folder after each epoch."""
    run_dir: str | None = None
    """Run folder (default: runs/lm-<vocab>-<time>)."""
    overwrite: bool = False
    """Replace a finished run in --run-dir."""

    def __post_init__(self) -> None:
        if self.vocab_size < 260 and self.vocab == "subword":
            raise UserError(f"--vocab-size must be at least 260 (256 bytes and the special tokens), got {self.vocab_size}")
        if self.epochs < 0 or self.batch_size < 1 or self.bptt < 2:
            raise UserError("--epochs must be 0 or more, --batch-size positive and --bptt at least 2")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def load(cls, path: Path) -> LMConfig:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{Path(path).parent}: not an LM run folder (no {Path(path).name})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: not a JSON config ({e})") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path}: expected a JSON object")
        raw = dict(raw)
        net = _build(LMNetConfig, raw.pop("net", {}), f"{path}.net")
        return dataclasses.replace(_build(cls, raw, str(path)), net=net)


@dataclass
class LMTrainArgs:
    """Train an AWD-LSTM language model on the training split's texts; writes an LM run folder."""

    run: LMConfig = field(default_factory=LMConfig)
    preset: str | None = None
    """Named configuration to start from (`lm-cpu`, `lm-gpu`; rnnlab/presets.py); other flags override it."""
    resume: str | None = None
    """Continue the unfinished LM run in this folder from its last checkpoint."""


@dataclass
class LMEvalArgs:
    """Perplexity (per token and per word) of an LM run on its test split, or on another file."""

    run: tyro.conf.Positional[str]
    data: str | None = None
    """CSV, TSV or JSONL file (or packaged dataset) whose texts to score (default: the run's test split)."""
    text_column: str | None = None
    """Column of --data holding the text (default: the run's --text-column)."""
    device: str = "auto"
    """Device to run on."""


@dataclass
class LMGenerateArgs:
    """Continue a prompt with an LM run's language model (the prompt runs once; each new token reuses the state)."""

    run: tyro.conf.Positional[str]
    prompt: str = ""
    """Text to continue (empty: a new document)."""
    length: int = 200
    """Tokens to generate."""
    temperature: float = 1.0
    """Softmax temperature; 0 picks the likeliest token every time."""
    top_k: int = 0
    """Sample among the k likeliest tokens only (0: all)."""
    seed: int = 0
    """Seed of the draws."""
    device: str = "cpu"
    """Device to run on."""
