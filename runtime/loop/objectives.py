"""Losses and metrics of the course (lectures 3 and 7), each one function of (output, target).

Targets arrive as the data layer gives them: int64 class labels [B] (or [B, H, W] for
per-pixel classification), float32 regression targets [B] or [B, k].
"""

from __future__ import annotations

import math
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


def _per_token(output: torch.Tensor, target: torch.Tensor) -> bool:
    """Next-token scores [B, T, V] (the class axis last) for labels [B, T]: a `text` run. The
    recipe checks allow no other output of rank 2 (batch excluded) under cross_entropy/nll."""
    return output.dim() == 3 and target.dim() == 2


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CE = -mean log softmax(z)_y, with the max subtracted inside the softmax for stability;
    per pixel for scores [B, C, H, W] and labels [B, H, W] (the mean over B·H·W pixels);
    per token for scores [B, T, V] and labels [B, T] (the mean over B·T positions)."""
    if _per_token(output, target):
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1).long())
    return F.cross_entropy(output, target.long())


def nll(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """NLL = -mean output_y on log-probabilities (after log_softmax); per token as CE."""
    if _per_token(output, target):
        return F.nll_loss(output.reshape(-1, output.shape[-1]), target.reshape(-1).long())
    return F.nll_loss(output, target.long())


def hinge(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-class hinge (Weston-Watkins): mean over j ≠ y of max(0, 1 - s_y + s_j) / C."""
    return F.multi_margin_loss(output, target.long())


LOSSES: dict[str, Loss] = {
    "l1": l1, "mse": mse, "bce": bce, "bce_logits": bce_logits,
    "cross_entropy": cross_entropy, "nll": nll, "hinge": hinge,
}


def predictions(output: torch.Tensor, loss: str) -> torch.Tensor:
    """Class predictions from a model output, as the loss reads it: [B] from [B, C] (or
    [B, 1] for bce), [B, H, W] from per-pixel scores [B, C, H, W] (or [B, 1, H, W])."""
    if loss in ("bce", "bce_logits"):
        threshold = 0.5 if loss == "bce" else 0.0  # p >= 1/2, i.e. the logit z >= 0
        # per pixel: the one channel; per sample: the first (only) value
        score = output[:, 0] if output.dim() > 2 else output.reshape(output.shape[0], -1)[:, 0]
        return (score >= threshold).long()
    if output.dim() == 3:  # next-token scores [B, T, V]: [B, T]
        return output.argmax(dim=-1)
    return output.argmax(dim=1)


def num_classes(output: torch.Tensor, loss: str) -> int:
    """Classes a classification output tells apart: 2 for bce, else the score axis C (V of
    next-token scores [B, T, V])."""
    if loss in ("bce", "bce_logits"):
        return 2
    return int(output.shape[-1] if output.dim() == 3 else output.shape[1])


def token_log_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Σ −log softmax(z)_y over every predicted element (sample, pixel or token), in float64:
    the numerator of perplexity. Log-probabilities (nll) are renormalised, which leaves
    them unchanged."""
    scores = output.double()
    if _per_token(output, target):
        scores, target = scores.reshape(-1, scores.shape[-1]), target.reshape(-1)
    return F.cross_entropy(scores, target.long(), reduction="sum")


IOU_COUNTS = ("predicted", "true", "intersection")  # the rows of MetricSums' iou table


class MetricSums:
    """Running sums over batches, so an epoch's metric is exact whatever the batch sizes.

    The sums stay tensors on the model's device until ``result``: no host sync per batch.
    ``iou`` keeps three per-class counts over every predicted element (a sample, or a pixel
    of a segmentation): predicted P_c, true T_c and both I_c = |P_c ∩ T_c|. The class's
    union is U_c = P_c + T_c - I_c, and the mean intersection-over-union is

        mIoU = (1 / |K|) Σ_{c ∈ K} I_c / U_c,   K = {c : U_c > 0}

    over the classes present (predicted or true) in the whole epoch, not a mean of
    per-batch means.
    """

    def __init__(self, loss: str, metrics: tuple[str, ...]):
        self.loss_name = loss
        self.metrics = metrics
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.elements = 0
        self.sums: dict[str, torch.Tensor] = {}
        self._table: torch.Tensor | None = None  # iou's per-class counts [3, C]

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
        classify = "accuracy" in self.metrics or "iou" in self.metrics
        predicted = predictions(out, self.loss_name) if classify else out
        if "accuracy" in self.metrics:
            self._add("correct", (predicted == target.view(predicted.shape)).sum())
            self.elements += predicted.numel()
        if "iou" in self.metrics:
            self._count_classes(predicted.reshape(-1), target.reshape(-1).long(),
                                num_classes(out, self.loss_name))
        if "perplexity" in self.metrics:
            self._add("token_log_loss", token_log_loss(out, target))
            self._add("tokens", torch.tensor(float(target.numel()), dtype=torch.float64,
                                             device=out.device))
        if "mae" in self.metrics or "mse" in self.metrics:
            diff = out.float() - _like(target, out).float()
            self._add("abs_error", diff.abs().sum())
            self._add("sq_error", diff.square().sum())
            self.elements += diff.numel() if "accuracy" not in self.metrics else 0

    def _count_classes(self, predicted: torch.Tensor, truth: torch.Tensor, classes: int) -> None:
        """Add P_c, T_c and I_c of one batch: three bincounts and one in-place add.

        The counts live in one [3, C] float64 table (exact up to 2^53); ``sums`` holds 0-dim
        views of its entries (``iou_true_2``...), so whatever treats ``sums`` as scalar running
        totals (the all-reduce over DDP ranks) sees every count.
        """
        if self._table is None:
            self._table = torch.zeros((3, classes), dtype=torch.float64, device=predicted.device)
            for row, kind in enumerate(IOU_COUNTS):
                for c in range(classes):
                    self.sums[f"iou_{kind}_{c}"] = self._table[row, c]
        batch = torch.stack([torch.bincount(v, minlength=classes)[:classes]
                             for v in (predicted, truth, truth[predicted == truth])])
        self._table.add_(batch)

    def iou(self) -> tuple[float, ...]:
        """Per class c: I_c / U_c with U_c = P_c + T_c - I_c; NaN where U_c = 0 (a class
        neither predicted nor true); () before any batch."""
        classes = sum(1 for key in self.sums if key.startswith("iou_true_"))
        if classes == 0:
            return ()
        table = torch.stack([self.sums[f"iou_{kind}_{c}"].reshape(()).to("cpu", torch.float64)
                             for kind in IOU_COUNTS for c in range(classes)]).reshape(3, classes)
        predicted, true, inter = table
        union = predicted + true - inter
        return tuple(float(i / u) if u > 0 else math.nan
                     for i, u in zip(inter.tolist(), union.tolist()))

    def mean_loss(self) -> float:
        return float(self.sums["loss"]) / max(self.count, 1) if "loss" in self.sums else float("nan")

    def result(self, prefix: str = "") -> dict[str, float]:
        out = {f"{prefix}loss": self.mean_loss()}
        denominator = max(self.elements, 1)
        for metric, key in (("accuracy", "correct"), ("mae", "abs_error"), ("mse", "sq_error")):
            if metric in self.metrics:
                out[f"{prefix}{metric}"] = float(self.sums.get(key, torch.zeros(()))) / denominator
        if "perplexity" in self.metrics:  # exp of the mean per-token cross-entropy
            tokens = float(self.sums.get("tokens", torch.zeros(())))
            mean = float(self.sums.get("token_log_loss", torch.zeros(()))) / max(tokens, 1.0)
            out[f"{prefix}perplexity"] = math.exp(mean) if tokens else math.nan
        if "iou" in self.metrics:
            present = [v for v in self.iou() if not math.isnan(v)]
            out[f"{prefix}iou"] = sum(present) / len(present) if present else math.nan
        return out
