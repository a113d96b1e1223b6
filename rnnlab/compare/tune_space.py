"""The search space of `rnnlab tune`: a default per encoder kind, or the user's JSON file, checked against RunConfig.

A space maps a parameter (a RunConfig field, named as its flag without dashes: `lr`, `hidden_size`, `alpha`) to
`{"low": L, "high": H}` (`"log": true` samples on a log scale; whole numbers for an integer field) or to
`{"choices": [...]}`. Torch-free: a space is checked before anything trains.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from rnnlab.config import RunConfig
from rnnlab.errors import UserError

Space = dict[str, dict[str, Any]]
# The dataset is not tunable (the search must keep its split), nor are fields that change how, not what, a run trains.
_FIXED = {"device", "progress", "workers", "checkpoint_every", "evaluate_test", "cache_dir", "teacher", "max_steps", "bf16"}
_WORD_VECTOR_SUFFIXES = (".txt", ".vec", ".gz")


def _locations() -> dict[str, tuple[tuple[str, ...], str]]:
    """Every tunable field: its path in RunConfig.to_dict() and its annotation (e.g. `float | None`)."""
    found: dict[str, tuple[tuple[str, ...], str]] = {}

    def walk(cls: type, path: tuple[str, ...]) -> None:
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
                walk(f.default_factory, (*path, f.name))
            elif f.name not in _FIXED:
                found[f.name] = ((*path, f.name), str(f.type))

    for section in ("encoder", "model", "train"):
        walk(type(getattr(RunConfig(), section)), (section,))
    return found


TUNABLE = _locations()


def encoder_kind(cfg: RunConfig) -> str:
    """`words` (GloVe, a vector file, scratch), `finetuned` or `frozen` (a pretrained transformer)."""
    name = cfg.encoder.encoder
    if name in ("glove", "scratch") or name.endswith(_WORD_VECTOR_SUFFIXES) or Path(name).is_file():
        return "words"
    return "finetuned" if cfg.encoder.finetune else "frozen"


def default_space(cfg: RunConfig) -> Space:
    """The head's learning rate, size, depth, dropout, pooling, batch size and epochs for every encoder; the encoder's
    learning rate when a transformer fine-tunes; the loss and its hard-label share when distilling."""
    kind = encoder_kind(cfg)
    space: Space = {
        "lr": {"low": 1e-4, "high": 1e-2, "log": True},
        "hidden_size": {"choices": [64, 128, 256]},
        "layers": {"low": 1, "high": 2},
        "dropout": {"low": 0.0, "high": 0.5},
        "pooling": {"choices": ["last", "mean", "max", "attention"]},
        "batch_size": {"choices": [16, 32, 64]},
        # Fine-tuning converges in a few epochs; a frozen encoder's head and trainable word vectors need more.
        "epochs": {"finetuned": {"low": 2, "high": 4}, "frozen": {"low": 3, "high": 8}, "words": {"low": 3, "high": 10}}[kind],
    }
    if kind == "finetuned":
        space["encoder_lr"] = {"low": 1e-5, "high": 2e-4, "log": True}
    if cfg.train.distill.teacher:
        space["distill_loss"] = {"choices": ["mse", "kl"]}
        space["alpha"] = {"low": 0.0, "high": 1.0}
    return space


def load_space(path: str | Path, base: RunConfig) -> Space:
    """Read and check a JSON space: every parameter known, every range non-empty, every value valid for `base`."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--space {path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"--space {path}: not JSON ({e})") from None
    if not isinstance(raw, dict) or not raw:
        raise UserError(f'--space {path}: expected an object of parameters, e.g. {{"lr": {{"low": 1e-4, "high": 1e-2}}}}')
    for name, spec in raw.items():
        check_param(name, spec, base, where=f"--space {path}")
    return raw


def check_param(name: str, spec: Any, base: RunConfig, *, where: str) -> None:
    if name not in TUNABLE:
        raise UserError(f"{where}: unknown parameter {name!r} (tunable: {', '.join(sorted(TUNABLE))})")
    at = f"{where}: {name}"
    if not isinstance(spec, dict) or not ({"choices"} <= set(spec) or {"low", "high"} <= set(spec)):
        raise UserError(f'{at}: expected {{"low": L, "high": H}} or {{"choices": [...]}}, got {json.dumps(spec)}')
    extra = sorted(set(spec) - {"choices", "low", "high", "log"})
    if extra:
        raise UserError(f"{at}: unknown key(s) {', '.join(extra)} (allowed: low, high, log, choices)")
    if "choices" in spec:
        values = spec["choices"]
        if not isinstance(values, list) or not values:
            raise UserError(f"{at}: empty range (choices must be a non-empty list)")
    else:
        low, high = spec["low"], spec["high"]
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
        if not numbers or low > high:
            raise UserError(f"{at}: empty range (low {low!r} > high {high!r}, or not numbers)")
        if spec.get("log") and low <= 0:
            raise UserError(f"{at}: a log range needs low > 0, got {low}")
        values = [low, high]
    for value in values:
        with_value(base, {name: value}, source=at)


def with_value(base: RunConfig, params: dict[str, Any], *, source: str) -> RunConfig:
    """`base` with `params` set, type-checked and validated as a config file would be."""
    raw = base.to_dict()
    for name, value in params.items():
        path, _ = TUNABLE[name]
        node = raw
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return RunConfig.from_dict(raw, source=source)


def is_integer(name: str, spec: dict[str, Any]) -> bool:
    """An int field sampled over whole numbers (a float field, or a float bound, samples reals)."""
    kind = TUNABLE[name][1]
    return kind.split("|")[0].strip() == "int" and all(isinstance(spec[k], int) for k in ("low", "high"))
