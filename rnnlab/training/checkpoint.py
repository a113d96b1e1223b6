"""Resumable training state, stored as safetensors + JSON (never pickle).

A training checkpoint is one safetensors file: tensors (model, optimizer moments, torch RNG)
plus a JSON document in its metadata (step, epoch position, optimizer groups, scheduler, history).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnlab.model import load_tensors, save_tensors


def save_training(path: Path, model_state: dict[str, torch.Tensor], optimizer, scheduler, state: dict[str, Any]) -> None:
    """One resumable checkpoint: weights, optimizer moments and RNG as tensors; the rest as JSON metadata."""
    opt_tensors, opt_meta = flatten_optimizer(optimizer.state_dict())
    rng_tensors, rng_meta = rng_state()
    tensors = {**{f"model.{k}": v for k, v in model_state.items()}, **opt_tensors, **rng_tensors}
    meta = {"state": state, "optimizer": opt_meta, "rng": rng_meta,
            "scheduler": {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}}  # fmt: skip
    save_tensors(path, tensors, meta)


def load_training(path: Path, optimizer, scheduler) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore optimizer, scheduler and RNG from `save_training`'s file; returns (model weights, training state)."""
    tensors, meta = load_tensors(path)
    optimizer.load_state_dict(unflatten_optimizer(tensors, meta["optimizer"]))
    scheduler.load_state_dict({**scheduler.state_dict(), **meta["scheduler"]})
    set_rng_state(tensors, meta["rng"])
    return {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, meta["state"]


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    np_state = np.random.get_state()
    meta = {"python": _jsonable(random.getstate()), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    random.setstate(_tuples(meta["python"]))
    kind, keys, *rest = meta["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (safetensors) and plain values (JSON)."""
    tensors, scalars = {}, {}
    for pid, entries in state["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{name}"] = value
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for key, value in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _jsonable(x: Any) -> Any:
    return [_jsonable(v) for v in x] if isinstance(x, tuple | list) else x


def _tuples(x: Any) -> Any:
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x
