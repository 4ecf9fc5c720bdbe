"""Closed-form linear regression: `solver normal_equation`.

For a model ŷ = Wx + b (one `linear` layer, after an optional `flatten`) under the loss
J(θ) = 1/(nk) Σ‖ŷᵢ − yᵢ‖² (+ λ‖W‖² with `regularize l2(λ)`), n samples, k outputs, the
minimiser solves the normal equation

    (AᵀA + nkλ·D) θ = AᵀY,   A = [1 X] (n × (1 + d)),   θ = [bᵀ; Wᵀ],   D = diag(0, 1, ..., 1)

(the bias is not penalised, as the l2 regularizer leaves biases alone). It is computed as
the least-squares solution of A θ ≈ Y by numpy's lstsq (an SVD of A), never through
(AᵀA)⁻¹: forming AᵀA squares the condition number of A. Ridge is ordinary least squares on
A stacked over √(nkλ)·[0 I] with zero targets, whose normal equation is the one above. A
rank-deficient A (a constant or a duplicated feature) gets the minimum-norm θ.

The solve runs in float64 on the training split exactly as training sees it (normalised,
deterministic transforms applied) and takes the place of the one epoch of the run: the run
directory holds what a trained run holds (weights, a metrics line, the summary and test
metrics) and ``solver.json``, the float64 θ with the rank and condition number of A.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nnspec.runtime.loop import checkpoint as ckpt

if TYPE_CHECKING:
    from nnspec.runtime.loop.trainer import Trainer


@dataclass
class LeastSquares:
    """θ (1 + d rows with a bias, d without; k columns), the rank of A and its singular
    values (largest first)."""

    theta: np.ndarray
    rank: int
    singular: np.ndarray
    bias: bool

    @property
    def weight(self) -> np.ndarray:
        """W, k × d, as torch.nn.Linear stores it."""
        return (self.theta[1:] if self.bias else self.theta).T

    @property
    def intercept(self) -> np.ndarray | None:
        return self.theta[0] if self.bias else None

    @property
    def condition(self) -> float:
        """σ_max / σ_min of A; inf when A is rank-deficient (lstsq treated the smallest
        singular values as 0: what is left of them is rounding)."""
        if self.rank < self.theta.shape[0] or not len(self.singular):
            return float("inf")
        return float(self.singular[0] / self.singular[-1])


def least_squares(x: np.ndarray, y: np.ndarray, *, bias: bool = True,
                  l2: float = 0.0) -> LeastSquares:
    """θ minimising ‖Aθ − Y‖² + nkλ‖W‖² for x [n, d], y [n, k] (or [n]), in float64."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(x), -1)
    n, d = x.shape
    a = np.hstack([np.ones((n, 1)), x]) if bias else x
    target = y
    if l2 > 0:
        penalty = np.sqrt(n * y.shape[1] * l2) * np.eye(a.shape[1])
        if bias:
            penalty = penalty[1:]  # no row for the bias: it is not penalised
        a = np.vstack([a, penalty])
        target = np.vstack([y, np.zeros((len(penalty), y.shape[1]))])
    theta, _, rank, singular = np.linalg.lstsq(a, target, rcond=None)
    return LeastSquares(theta=theta, rank=int(rank), singular=singular, bias=bias)


def linear_layer(trainer: Trainer) -> tuple[str, torch.nn.Module]:
    """The model's one `linear` layer (the recipe check guarantees there is exactly one)."""
    (node,) = [n for n in trainer.graph.nodes if n.op == "linear"]
    return node.name, trainer.module.get_submodule(node.name)


@torch.no_grad()
def solve_epoch(trainer: Trainer) -> dict[str, Any]:
    """The one "epoch" of a closed-form run: solve, write θ into the module and
    ``solver.json``; return the training split's metrics (train_loss, train_mae...)."""
    plan, data = trainer.plan, trainer.data
    x, y = data.train
    if data.augment is not None:  # normalize with given statistics; random ones are refused
        x = data.augment.eval(x)
    name, layer = linear_layer(trainer)
    l2 = plan.regularizer("l2") or 0.0
    solution = least_squares(x.double().numpy(), y.double().numpy(),
                             bias=layer.bias is not None, l2=l2)
    layer.weight.copy_(torch.from_numpy(solution.weight).to(layer.weight))
    if layer.bias is not None:
        layer.bias.copy_(torch.from_numpy(solution.intercept).to(layer.bias))
    record = {
        "method": "numpy.linalg.lstsq (SVD of A = [1 X]), float64", "layer": name,
        "samples": int(len(x)), "features": int(solution.weight.shape[1]),
        "rank": solution.rank, "l2": l2,
        # σ_max / σ_min of A; null when rank-deficient (strict JSON has no Infinity)
        "condition": solution.condition if np.isfinite(solution.condition) else None,
        "bias": None if solution.intercept is None else solution.intercept.tolist(),
        "weight": solution.weight.tolist(),
    }
    if getattr(trainer, "writes", True):  # with DDP every rank solves alike; rank 0 writes
        ckpt.write_text(trainer.directory / "solver.json", json.dumps(record, indent=2) + "\n")
    if solution.rank < solution.theta.shape[0]:
        trainer.log(f"normal equation: A has rank {solution.rank} < {solution.theta.shape[0]} "
                    "columns (constant or collinear features): the minimum-norm θ")
    return trainer.evaluate(data.train, "train_")[0]


__all__ = ["LeastSquares", "least_squares", "solve_epoch"]
