"""Configs of the teaching demos: dataclasses only (no torch); the CLI turns each field into a flag."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tyro.conf import Positional

from rnnlab.errors import UserError


@dataclass
class CharConfig:
    """Experiment 1 of the tutorial: an RNN learns to turn one string into another, character by character."""

    source: str = "happy"
    """Input string, one character per time step."""
    target: str = "phayp"
    """String to predict, one character per step; same length as --source."""
    cell: Literal["rnn", "gru", "lstm"] = "rnn"
    """Recurrent cell."""
    impl: Literal["torch", "scratch"] = "torch"
    """torch.nn's cells, or rnnlab.cells written from tensor operations (same seed, same numbers)."""
    hidden_size: int = 16
    """Hidden units (ignored with --faithful, where it equals the vocabulary size)."""
    epochs: int = 20
    """Training steps; each one sees the whole string."""
    lr: float = 0.05
    """Adam learning rate."""
    seed: int = 0
    """Seed of the initial weights."""
    faithful: bool = False
    """The tutorial's model exactly: no output layer, the cell's tanh outputs are the logits (loss floor ~0.34)."""

    def __post_init__(self) -> None:
        if not self.source or len(self.source) != len(self.target):
            raise UserError(
                f"--source and --target must be non-empty and equally long, got {len(self.source)} and "
                f"{len(self.target)} characters"
            )
        if self.hidden_size < 1 or self.epochs < 1 or self.lr <= 0:
            raise UserError("--hidden-size, --epochs and --lr must be positive")


@dataclass
class MemoryConfig:
    """The worked example: all weights 1, bias 0, hidden size 2, inputs [1,1], [2,2], [1,1]."""

    activation: Literal["none", "tanh", "relu", "sigmoid"] = "none"
    """Activation of the hidden state; `none` gives the sums 2, 8, 18 of the tutorial."""


@dataclass
class GradientsConfig:
    """How far back the gradient reaches in RNN, GRU and LSTM, and what clipping does to an exploding one."""

    out_dir: str = "runs/gradients"
    """Folder for the PNG plots and gradients.md."""
    length: int = 50
    """Sequence length of the memory task; the label is decided by the first step only."""
    seed: int = 0
    """Seed of data and initial weights."""
    hidden_size: int = 32
    """Hidden units of every cell."""
    steps: int = 400
    """Adam steps on the memory task, per cell."""
    batch_size: int = 32
    """Sequences per training step."""
    lr: float = 0.003
    """Adam learning rate on the memory task."""
    gate_bias: float = 1.0
    """Added at init to LSTM forget- and GRU update-gate biases (start by keeping the state); 0 = torch's init."""
    explode_gain: float = 1.7
    """Gain of the orthogonal recurrent weights of the ReLU RNN whose gradients explode."""
    explode_steps: int = 60
    """SGD steps of the exploding ReLU RNN, once with and once without clipping."""
    explode_lr: float = 0.05
    """SGD learning rate of the exploding ReLU RNN."""
    clip_norm: float = 1.0
    """Max gradient norm of the clipped run."""

    def __post_init__(self) -> None:
        if self.length < 2 or self.hidden_size < 1 or self.steps < 0 or self.batch_size < 1 or self.explode_steps < 1:
            raise UserError("--length must be at least 2; --hidden-size, --batch-size and --explode-steps positive")


@dataclass
class GatesConfig:
    """Plot an LSTM's input, forget and output gates (or a GRU's update and reset gates) over a real review."""

    run: Positional[str]
    """Finished run folder whose head is lstm, bilstm, gru or bigru."""
    text: Positional[str]
    """The text to trace."""
    out: str = "gates.png"
    """PNG to write."""
    units: int = 32
    """Hidden units shown in the heat maps."""
