"""TextClassifier = encoder → head → classifier (dropout + linear → logits, never softmax)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save
from torch import nn

from rnnlab.config import RunConfig
from rnnlab.errors import UserError
from rnnlab.runs import atomic_write_bytes


class TextClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, head: nn.Module, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(head.out_dim, num_classes))

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor, *, cached: bool = False, vectors: bool = False) -> torch.Tensor:
        """`inputs` are token ids [B, T]; with `cached`, rows of the encoder's trunk from the feature cache
        [B, T, trunk_dim]; with `vectors`, the encoder's token vectors [B, T, D] (what an attribution
        differentiates against). Returns logits [B, C]. Texts read in windows (--chunks) come as [B, N, T(, D)]
        with a mask [B, N, T]."""
        if mask.dim() == 3:
            x = self._encode_windows(inputs, mask, cached=cached, vectors=vectors)  # [B, N, T, D]
        elif vectors:
            x = inputs
        else:
            x = self.encoder.from_trunk(inputs, mask) if cached else self.encoder(inputs, mask)  # [B, T, D]
        return self.classifier(self.head(x, mask))  # [B, C]

    def _encode_windows(self, inputs: torch.Tensor, mask: torch.Tensor, *, cached: bool, vectors: bool) -> torch.Tensor:
        """Encode each real window on its own (missing ones stay zero): [B, N, T(, D)] → [B, N, T, D]."""
        batch, chunks, tokens = mask.shape
        present = mask.reshape(-1, tokens).any(-1)  # [B*N]
        flat, flat_mask = inputs.reshape(batch * chunks, tokens, *inputs.shape[3:])[present], mask.reshape(-1, tokens)[present]
        if vectors:
            x = flat
        else:
            x = self.encoder.from_trunk(flat, flat_mask) if cached else self.encoder(flat, flat_mask)  # [W, T, D]
        out = x.new_zeros(batch * chunks, tokens, x.shape[-1])
        out[present] = x
        return out.view(batch, chunks, tokens, -1)


def build_model(cfg: RunConfig, encoder: nn.Module, num_classes: int) -> TextClassifier:
    from rnnlab.heads import build_head

    head = build_head(cfg.model, encoder.dim, chunks=encoder.chunks > 1)
    return TextClassifier(encoder, head, num_classes, cfg.model.dropout)


def load_trained(run_dir: Path) -> tuple[TextClassifier, list[str]]:
    """A finished run's model (on the CPU, in eval mode) and its label names: what `serve` predicts with and what
    a distillation teacher is."""
    from rnnlab import runs
    from rnnlab.encoders import load_encoder

    path = Path(run_dir)
    runs.require_finished(path)
    cfg = runs.read_config(path)
    label_names = json.loads((path / runs.LABELS).read_text())
    model = build_model(cfg, load_encoder(path), len(label_names))
    weights, _ = load_tensors(path / runs.WEIGHTS)
    load_saved_state(model, weights, path / runs.WEIGHTS)
    return model.eval(), label_names


def saved_state(model: TextClassifier) -> dict[str, torch.Tensor]:
    """The weights a run folder stores: all but the encoder's frozen pretrained ones, rebuilt from their source."""
    state = model.state_dict()
    rebuilt = model.encoder.rebuilt_from_source
    state = {k: v for k, v in state.items() if not (k.startswith("encoder.") and rebuilt(k.removeprefix("encoder.")))}
    return {k: v.detach().contiguous() for k, v in state.items()}


def load_saved_state(model: TextClassifier, weights: dict[str, torch.Tensor], source: object) -> None:
    """Load what `saved_state` wrote; weights for another model are a one-line error naming `source`."""
    expected = set(saved_state(model))
    if set(weights) != expected:
        raise UserError(f"{source}: weights do not match this model ({len(expected ^ set(weights))} keys differ)")
    model.load_state_dict(weights, strict=False)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> None:
    metadata = {"rnnlab": json.dumps(meta)} if meta is not None else None
    atomic_write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file and its JSON metadata; a missing, truncated or tampered file is a UserError."""
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("rnnlab")
        tensors = load_file(str(path))
        return tensors, json.loads(raw) if raw else {}
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: corrupt or truncated safetensors file ({str(e).splitlines()[0]})") from None
