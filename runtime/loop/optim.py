"""Optimisation (course, lectures 5-6): optimizers, learning-rate schedules, penalties,
max-norm constraints and gradient clipping.

Learning-rate schedules live in the recipe IR (`ScheduleSpec.lr`): a pure function of the
epoch, so a resumed run sets exactly the learning rate an uninterrupted run had.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn


def make_optimizer(
    params: Iterable[nn.Parameter] | list[dict[str, Any]], kind: str, lr: float,
    hp: Mapping[str, Any], weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """gd and sgd: θ ← θ - α∇; momentum: v ← βv + ∇, θ ← θ - αv (nesterov looks ahead);
    rmsprop: s ← βs + (1-β)∇², θ ← θ - α∇/(√s + ε); adam: bias-corrected first and second
    moments (β1, β2); adamw: adam with decoupled weight decay."""
    if kind in ("gd", "sgd"):
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if kind in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=float(hp.get("beta", 0.9)),
                               nesterov=kind == "nesterov", weight_decay=weight_decay)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=float(hp.get("beta", 0.99)),
                                   eps=float(hp.get("eps", 1e-8)), weight_decay=weight_decay)
    if kind in ("adam", "adamw"):
        betas = tuple(hp.get("betas", (0.9, 0.999)))
        cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
        decay = float(hp.get("weight_decay", weight_decay if kind == "adam" else 0.01))
        return cls(params, lr=lr, betas=betas, eps=float(hp.get("eps", 1e-8)), weight_decay=decay)
    raise ValueError(f"unknown optimizer {kind!r}")


def penalised_weights(module: nn.Module) -> list[nn.Parameter]:
    """Weights the L1/L2 penalties and max-norm apply to: matrices and kernels, not biases
    or normalisation scales (course: regularise W, not b), and trainable ones only: a frozen
    weight must come out of training bit-identical, which max-norm's rescaling would break."""
    return [p for name, p in module.named_parameters()
            if name.endswith("weight") and p.dim() >= 2 and p.requires_grad]


def penalty(weights: list[nn.Parameter], l1: float, l2: float) -> torch.Tensor | None:
    """λ1 Σ|w| + λ2 Σw², added to the loss."""
    if not weights or (l1 == 0 and l2 == 0):
        return None
    total = weights[0].new_zeros(())
    for w in weights:
        if l1:
            total = total + l1 * w.abs().sum()
        if l2:
            total = total + l2 * (w * w).sum()
    return total


@torch.no_grad()
def apply_max_norm(weights: list[nn.Parameter], limit: float) -> None:
    """Max-norm constraint after each step: every unit's incoming weight vector ‖w‖ ≤ c."""
    for w in weights:
        w.copy_(torch.renorm(w, p=2, dim=0, maxnorm=limit))


def clip_gradients(params: list[nn.Parameter], kind: str, value: float) -> None:
    if kind == "value":
        torch.nn.utils.clip_grad_value_(params, value)
    elif kind == "norm":
        torch.nn.utils.clip_grad_norm_(params, value)
    else:
        raise ValueError(f"unknown clipping {kind!r}")
