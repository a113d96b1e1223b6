"""Class weights for the cross-entropy, resolved from `--class-weights` against the run's labels and training split."""

from __future__ import annotations

import numpy as np
import torch

from rnnlab.config import parse_class_weights
from rnnlab.data.split import Prepared
from rnnlab.errors import UserError


def class_weights(spec: str, data: Prepared) -> torch.Tensor | None:
    """[C] weights in label order, or None for `none`. `auto` weighs class c by N / (C · n_c) over the training
    split (scikit-learn's "balanced"): the mean weight per training text stays 1, so the learning rate keeps its
    meaning."""
    parsed = parse_class_weights(spec)
    if parsed == "none":
        return None
    names = data.label_names
    if parsed == "auto":
        counts = np.bincount(data.labels[data.split["train"]], minlength=len(names)).astype(np.float64)
        if (counts == 0).any():
            missing = names[int(np.flatnonzero(counts == 0)[0])]
            raise UserError(f"--class-weights auto: class '{missing}' has no text in the training split")
        return torch.as_tensor(counts.sum() / (len(names) * counts), dtype=torch.float32)
    unknown = sorted(set(parsed) - set(names))
    if unknown:
        raise UserError(f"--class-weights: unknown label '{unknown[0]}' (labels: {', '.join(names)})")
    return torch.tensor([parsed.get(name, 1.0) for name in names], dtype=torch.float32)


def weighted_accuracy(confusion: list[list[int]], weights: torch.Tensor) -> float:
    """Accuracy with each text counting its class's weight: what early stopping and the best checkpoint follow under
    --class-weights (with `auto`, the mean recall per class), so that a skewed validation split does not pick the
    epoch that predicts the majority class for everything."""
    counts = np.asarray(confusion, dtype=np.float64)
    w = weights.double().numpy()
    return float((w * np.diag(counts)).sum() / max((w * counts.sum(1)).sum(), 1e-12))
