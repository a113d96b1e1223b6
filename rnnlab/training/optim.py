"""The optimizer and its schedules: AdamW in parameter groups (discriminative rates, gradual unfreezing), linear
warmup then linear decay, or one cycle."""

from __future__ import annotations

import math

import torch

from rnnlab.config import RunConfig
from rnnlab.model import TextClassifier

DISCRIMINATIVE_FACTOR = 2.6
"""ULMFiT's ratio between the learning rates of one layer group and the group below it."""


def make_optimizer(cfg: RunConfig, model: TextClassifier) -> torch.optim.AdamW:
    """AdamW with a separate rate for a fine-tuned pretrained encoder, and no decay on biases and norms. Under gradual
    unfreezing, the encoder's group at depth d (1 = its top layer) learns at lr / 2.6**d (discriminative rates)."""
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    pretrained = model.encoder.pretrained
    depth = {id(p): d for d, ps in enumerate(unfreezing_groups(cfg, model), 1) for p in ps}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # Only the pretrained weights learn slowly; a layer mix over them is new and trains at the head's rate.
        lr = cfg.train.encoder_lr if pretrained and name.startswith("encoder.model.") else cfg.train.lr
        lr /= DISCRIMINATIVE_FACTOR ** depth.get(id(p), 0)
        decay = cfg.train.weight_decay if p.ndim >= 2 and "embed" not in name else 0.0
        groups.setdefault((lr, decay), []).append(p)
    # The fused kernel updates all tensors in one pass: 0.035 s a step instead of 0.15 s for MiniLM's 22.7M weights.
    return torch.optim.AdamW([{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()], fused=True)


def unfreezing_groups(cfg: RunConfig, model: TextClassifier) -> list[list[torch.nn.Parameter]]:
    """The encoder's parameter groups from the top down when it unfreezes gradually (an `lm:` encoder being fine-tuned
    with --gradual-unfreezing), else none."""
    encoder = model.encoder
    if not (cfg.train.gradual_unfreezing and encoder.trainable and hasattr(encoder, "groups")):
        return []
    return encoder.groups()


def unfreeze(groups: list[list[torch.nn.Parameter]], epoch: int) -> None:
    """Gradual unfreezing (ULMFiT): in epoch `epoch` (from 0) the top `epoch` groups train, the rest are frozen; the
    head always trains. A frozen parameter gets no gradient, so AdamW leaves it (and its moments) exactly as it is."""
    for depth, params in enumerate(groups, 1):
        for p in params:
            p.requires_grad_(depth <= epoch)


def make_one_cycle(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float, *, div: float = 25.0,
                   final_div: float = 1e4) -> torch.optim.lr_scheduler.LambdaLR:  # fmt: skip
    """One cycle (Smith 2018): a cosine rise from lr/div to lr over the first `warmup` share of steps, then a cosine
    decay to lr/final_div."""
    warm = max(1, int(total_steps * warmup))

    def cosine(start: float, end: float, t: float) -> float:
        return end + (start - end) * (1 + math.cos(math.pi * min(t, 1.0))) / 2

    def factor(step: int) -> float:
        if step < warm:
            return cosine(1 / div, 1.0, step / warm)
        return cosine(1.0, 1 / final_div, (step - warm) / max(1, total_steps - warm))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over the first `warmup` share of steps, then linear decay to zero."""
    warm = max(1, int(total_steps * warmup))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def head_lr(optimizer: torch.optim.Optimizer, configured: float) -> float:
    """The head's learning rate as the scheduler last set it (warmup and decay move it every step)."""
    return next(g["lr"] for g in optimizer.param_groups if g["initial_lr"] == configured)
