"""Losses and metrics of the course (lectures 3 and 7), each one function of (output, target).

Targets arrive as the data layer gives them: int64 class labels [B] (or [B, H, W] for
per-pixel classification), float32 regression targets [B] or [B, k].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]



def _like(target: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    return target.to(output.dtype).reshape(output.shape)


def l1(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 = mean |ŷ - y|."""
    return F.l1_loss(output, _like(target, output))


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE = mean (ŷ - y)²."""
    return F.mse_loss(output, _like(target, output))


def bce(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE = -mean[y log ŷ + (1 - y) log(1 - ŷ)] on probabilities ŷ (after a sigmoid)."""
    return F.binary_cross_entropy(output, _like(target, output))


def bce_logits(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE on logits z, computed stably as max(z, 0) - z·y + log(1 + e^-|z|)."""
    return F.binary_cross_entropy_with_logits(output, _like(target, output))


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CE = -mean log softmax(z)_y, with the max subtracted inside the softmax for stability."""
    return F.cross_entropy(output, target.long())


def nll(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """NLL = -mean output_y on log-probabilities (after log_softmax)."""
    return F.nll_loss(output, target.long())


def hinge(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-class hinge (Weston-Watkins): mean over j ≠ y of max(0, 1 - s_y + s_j) / C."""
    return F.multi_margin_loss(output, target.long())


LOSSES: dict[str, Loss] = {
    "l1": l1, "mse": mse, "bce": bce, "bce_logits": bce_logits,
    "cross_entropy": cross_entropy, "nll": nll, "hinge": hinge,
}


def predictions(output: torch.Tensor, loss: str) -> torch.Tensor:
    """Class predictions from a model output, as the loss reads it."""
    if loss == "bce":
        return (output.reshape(output.shape[0], -1)[:, 0] >= 0.5).long()
    if loss == "bce_logits":
        return (output.reshape(output.shape[0], -1)[:, 0] >= 0.0).long()
    return output.argmax(dim=1)


class MetricSums:
    """Running sums over batches, so an epoch's metric is exact whatever the batch sizes.

    The sums stay tensors on the model's device until ``result``: no host sync per batch.
    """

    def __init__(self, loss: str, metrics: tuple[str, ...]):
        self.loss_name = loss
        self.metrics = metrics
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.elements = 0
        self.sums: dict[str, torch.Tensor] = {}

    def _add(self, key: str, value: torch.Tensor, alpha: float = 1.0) -> None:
        total = self.sums.get(key)
        if total is None:
            total = self.sums[key] = torch.zeros((), dtype=torch.float64, device=value.device)
        total.add_(value, alpha=alpha)  # in place: one op per metric and batch

    def add(self, output: torch.Tensor, target: torch.Tensor, loss: torch.Tensor) -> None:
        out = output.detach()
        n = out.shape[0]
        self.count += n
        self._add("loss", loss.detach(), alpha=n)
        if "accuracy" in self.metrics:
            predicted = predictions(out, self.loss_name)
            self._add("correct", (predicted == target.view(predicted.shape)).sum())
            self.elements += predicted.numel()
        if "mae" in self.metrics or "mse" in self.metrics:
            diff = out.float() - _like(target, out).float()
            self._add("abs_error", diff.abs().sum())
            self._add("sq_error", diff.square().sum())
            self.elements += diff.numel() if "accuracy" not in self.metrics else 0

    def mean_loss(self) -> float:
        return float(self.sums["loss"]) / max(self.count, 1) if "loss" in self.sums else float("nan")

    def result(self, prefix: str = "") -> dict[str, float]:
        out = {f"{prefix}loss": self.mean_loss()}
        denominator = max(self.elements, 1)
        for metric, key in (("accuracy", "correct"), ("mae", "abs_error"), ("mse", "sq_error")):
            if metric in self.metrics:
                out[f"{prefix}{metric}"] = float(self.sums.get(key, torch.zeros(()))) / denominator
        return out
