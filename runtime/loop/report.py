"""What a run leaves for people: curves.png and summary.md with the course's diagnosis."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnspec.runtime.loop.checkpoint import atomic_write, write_text


def diagnose(history: Sequence[Mapping[str, float]], task: str) -> list[str]:
    """The course's table (lecture 6), read off the loss curves.

    - underfitting: training accuracy below 80% (classification), or the training loss fell
      by less than half from the first epoch: more capacity, longer training, less
      regularisation, a larger learning rate;
    - overfitting: validation loss 10% above its best and rising while the training loss
      keeps falling, or a train/val accuracy gap above 10 points: more data, augmentation,
      L2 / dropout, early stopping;
    - validation loss below training loss by more than 10%: suspicious, check for leakage
      between the splits, or heavy dropout / augmentation making training harder.
    """
    if not history:
        return ["no epoch finished"]
    last, first = history[-1], history[0]
    findings = []
    train_loss, val_loss = last.get("train_loss"), last.get("val_loss")
    if task == "classification" and last.get("train_accuracy", 1.0) < 0.8:
        findings.append(
            f"underfitting: training accuracy is {last['train_accuracy']:.1%}; try a larger model, "
            "more epochs, less regularisation or a larger learning rate")
    elif train_loss is not None and len(history) > 2 and train_loss > 0.5 * first["train_loss"]:
        findings.append(
            f"underfitting: the training loss fell only from {first['train_loss']:.4g} to "
            f"{train_loss:.4g}; try a larger model, more epochs or a larger learning rate")
    if val_loss is not None and train_loss is not None:
        best_val = min(h["val_loss"] for h in history if "val_loss" in h)
        rising = len(history) > 2 and val_loss > 1.1 * best_val and train_loss < history[-2]["train_loss"]
        gap = last.get("train_accuracy", 0.0) - last.get("val_accuracy", last.get("train_accuracy", 0.0))
        if rising or gap > 0.1:
            findings.append(
                f"overfitting: validation loss {val_loss:.4g} vs its best {best_val:.4g}"
                + (f", accuracy gap {gap:.1%}" if gap > 0.1 else "")
                + "; try more data, augmentation, L2 or dropout, or early stopping")
        if val_loss < 0.9 * train_loss:
            findings.append(
                f"suspicious: validation loss {val_loss:.4g} is below training loss {train_loss:.4g}; "
                "check for leakage between the splits, or whether dropout/augmentation make "
                "training much harder than evaluation")
    return findings or ["no problem found: training and validation curves agree"]


def plot_curves(path: Path, history: Sequence[Mapping[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    metrics = sorted({k.split("_", 1)[1] for h in history for k in h if k.startswith("train_")})
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    epochs = [h["epoch"] for h in history]
    for ax, metric in zip(axes[0], metrics, strict=True):
        for split, style in (("train", "-"), ("val", "--")):
            values = [h.get(f"{split}_{metric}", math.nan) for h in history]
            if not all(math.isnan(v) for v in values):
                ax.plot(epochs, values, style, marker="o", markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def confusion_matrix(predicted: np.ndarray, target: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (target.reshape(-1), predicted.reshape(-1)), 1)
    return matrix


def mean_squared_error(output: Any, target: Any) -> float:
    """MSE = mean over every element of (ŷ - y)², in float64 (tensors or arrays alike)."""
    out = np.asarray(output, dtype=np.float64)
    return float(np.mean((out - np.asarray(target, dtype=np.float64).reshape(out.shape)) ** 2))


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU_c = M_cc / (Σ_j M_cj + Σ_i M_ic - M_cc) from a confusion matrix M (rows: true,
    columns: predicted), i.e. |P_c ∩ T_c| / |P_c ∪ T_c|; NaN where the union is empty."""
    inter = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def write_summary(
    path: Path, *, model: str, recipe: str, epochs_run: int, best_epoch: int | None,
    test: Mapping[str, float], history: Sequence[Mapping[str, float]], task: str,
    confusion: np.ndarray | None, class_names: Sequence[str] | None, extra: Mapping[str, Any],
    reconstruction: float | None = None,
) -> None:
    """``reconstruction``: the test mean squared error of a `target input` run (mean over
    every element of (x̂ - x)²), reported whatever the loss and metrics were."""
    lines = [f"# {model}" + (f", recipe {recipe}" if recipe != model else ""), ""]
    lines.append(f"Epochs run: {epochs_run}" + (f"; best epoch: {best_epoch}" if best_epoch else ""))
    for key, value in extra.items():
        lines.append(f"{key}: {value}")
    lines += ["", "## Test set", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k.removeprefix('test_')} | {v:.4f} |" for k, v in test.items()]
    if reconstruction is not None:
        # 6 significant digits: the table's 4 decimals would round a small error to 0.0000
        lines += ["", f"reconstruction error (mse): {reconstruction:.6g}"]
    names = list(class_names or [str(i) for i in range(len(confusion))]) \
        if confusion is not None else []
    if confusion is not None and "test_iou" in test:
        lines += ["", "## IoU per class", "", "| class | IoU |", "| --- | --- |"]
        for name, value in zip(names, iou_per_class(confusion), strict=True):
            lines.append(f"| {name} | {'absent' if np.isnan(value) else f'{value:.4f}'} |")
    if confusion is not None:
        lines += confusion_lines(confusion, names)
    lines += ["", "## Diagnosis", ""]
    lines += [f"- {finding}" for finding in diagnose(history, task)]
    write_text(path, "\n".join(lines) + "\n")


def confusion_lines(confusion: np.ndarray, names: Sequence[str], what: str = "") -> list[str]:
    """A confusion matrix as a markdown section (``what``: whose, in the heading)."""
    lines = ["", f"## Confusion matrix{what} (rows: true class, columns: predicted)", ""]
    lines.append("| | " + " | ".join(names) + " |")
    lines.append("| --- " * (len(names) + 1) + "|")
    for name, row in zip(names, confusion, strict=True):
        lines.append(f"| **{name}** | " + " | ".join(str(int(v)) for v in row) + " |")
    return lines


def write_ensemble_summary(
    path: Path, *, model: str, recipe: str, members: Sequence[Mapping[str, Any]],
    mean: Mapping[str, float], test: Mapping[str, float], combine: str,
    confusion: np.ndarray | None, class_names: Sequence[str] | None, extra: Mapping[str, Any],
) -> None:
    """An ensemble's summary.md: each member's test metrics (``members``: seed, epochs run,
    test), their mean, and the ensemble's (``test``: its averaged prediction, ``combine``);
    each member's own report is in its folder."""
    lines = [f"# {model}" + (f", recipe {recipe}" if recipe != model else "") + ": an ensemble of "
             f"{len(members)}", "", f"Prediction: {combine}"]
    lines += [f"{key}: {value}" for key, value in extra.items()]
    keys = list(test) or list(mean)
    shown = [k.removeprefix("test_") for k in keys]
    lines += ["", "## Test set", "", "| | " + " | ".join(shown) + " |",
              "| --- " * (len(keys) + 1) + "|"]
    for m in members:
        cells = " | ".join(f"{m['test'][k]:.4f}" if k in m["test"] else "-" for k in keys)
        lines.append(f"| member {m['member']} (seed {m['seed']}, {m['epochs_run']} epochs) | "
                     f"{cells} |")
    lines.append("| mean of the members | " + " | ".join(
        f"{mean[k]:.4f}" if k in mean else "-" for k in keys) + " |")
    lines.append("| **ensemble** | " + " | ".join(f"**{test[k]:.4f}**" for k in keys) + " |")
    if "test_loss" in test:
        lines += ["", "The ensemble's loss is that of its averaged prediction (for a classifier: "
                  "the cross-entropy of the mean probabilities)."]
    if confusion is not None:
        names = list(class_names or [str(i) for i in range(len(confusion))])
        lines += confusion_lines(confusion, names, " of the ensemble")
    lines += ["", "Each member's curves, diagnosis and weights: members/<k>/."]
    write_text(path, "\n".join(lines) + "\n")
