"""k-fold cross-validation of a recipe: `cv kfold(k)` in a recipe, and the score of a trial of
`nnspec search` that says `cv kfold(k)`.

The training split (the test split stays out) is cut into k folds, stratified for class
labels and seeded by the recipe's seed (runtime/data/prepare.py fold_splits). Fold f's model
trains on the other k − 1 folds, normalised with their statistics only, and is scored on
fold f. A fold's score is the validation row of the epoch whose weights the run keeps: the
best epoch when the recipe stops early (its weights are restored), else the last. Over the
folds, for every metric m,

    mean = (1/k) Σ_f m_f,    std = √((1/k) Σ_f (m_f − mean)²)

(the population std, as scikit-learn's cross_val_score reports it). Each fold is a run
directory of its own, DIR/folds/<f>/; cv.json holds every fold's row and the mean ± std.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnspec.runtime.data.prepare import PreparedData, fold_splits, prepare
from nnspec.runtime.data.sources import Dataset
from nnspec.runtime.experiments.solvers import epoch_fit
from nnspec.runtime.loop import checkpoint as ckpt
from nnspec.runtime.loop.trainer import Trainer, TrainingError
from nnspec.spec.ir import Graph
from nnspec.spec.loader import Loaded
from nnspec.spec.recipe.ir import CLASSIFICATION_LOSSES, Recipe

CV_FILE = "cv.json"


@dataclass
class Fit:
    """One model trained and scored: the validation metrics it is judged by."""

    metrics: dict[str, float]  # val_loss, val_accuracy...; empty when it diverged
    epochs_run: int
    best_epoch: int | None
    seconds: float
    diverged: str | None = None  # why, when the loss became NaN or infinite

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metrics": self.metrics, "epochs_run": self.epochs_run,
                               "best_epoch": self.best_epoch, "seconds": round(self.seconds, 3)}
        if self.diverged:
            out["diverged"] = self.diverged
        return out


@dataclass
class CvResult:
    """Every fold's fit, and the mean and std of each validation metric over the folds."""

    folds: list[Fit]
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.mean and self.folds and not self.diverged:
            keys = self.folds[0].metrics
            for key in keys:
                values = [f.metrics[key] for f in self.folds]
                mean = sum(values) / len(values)
                self.mean[key] = mean
                self.std[key] = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))

    @property
    def diverged(self) -> str | None:
        return next((f"fold {i}: {f.diverged}" for i, f in enumerate(self.folds, 1) if f.diverged),
                    None)

    def record(self, recipe: Recipe) -> dict[str, Any]:
        return {
            "method": f"{len(self.folds)}-fold cross-validation of the training split "
                      f"({'stratified, ' if _stratified(recipe) else ''}seed {recipe.seed}); "
                      "each fold scored at the epoch whose weights the run keeps",
            "folds": [f.record() for f in self.folds],
            "mean": self.mean, "std": self.std, "std_of": "the population (ddof = 0)",
            **({"diverged": self.diverged} if self.diverged else {}),
        }

    def line(self) -> str:
        """`val_loss 0.512 ± 0.031, val_accuracy 0.861 ± 0.012 over 5 folds`."""
        if self.diverged:
            return f"diverged ({self.diverged})"
        shown = ", ".join(f"{k} {self.mean[k]:.4g} ± {self.std[k]:.2g}" for k in self.mean)
        return f"{shown} over {len(self.folds)} folds"


def kept_row(history: list[dict[str, float]], best_epoch: int | None, recipe: Recipe,
             ) -> dict[str, float]:
    """The validation metrics of the epoch whose weights a run keeps: the best epoch with
    early stopping (finish() restores it), else the last one."""
    if not history:
        return {}
    row = history[-1]
    if recipe.early_stop is not None and best_epoch is not None:
        row = history[best_epoch - 1]
    return {k: float(v) for k, v in row.items() if k.startswith("val_")}


def fit_and_score(graph: Graph, recipe: Recipe, data: PreparedData, directory: Path, *,
                  loaded: Loaded, spec_hash: str, device: str,
                  log: Callable[[str], None] | None = None) -> Fit:
    """Train one model into its own run directory and score it on its validation split; a
    loss that becomes NaN is a result here (the fit diverged), not an error."""
    from nnspec.runtime.experiments.directory import fresh_run_directory

    # a fold or trial is trained whole: what an interrupted attempt left in its folder goes
    fresh_run_directory(directory, loaded, graph, recipe, data)
    began = time.perf_counter()
    trainer = Trainer(recipe, graph, data, directory, spec_hash=spec_hash, device=device,
                      progress=False, log=log or _quiet, fit_epoch=epoch_fit(recipe))
    try:
        trainer.fit()
    except TrainingError as exc:
        return Fit({}, len(trainer.history), trainer.best_epoch, time.perf_counter() - began,
                   diverged=exc.message)
    finally:
        trainer.close()
    return Fit(kept_row(trainer.history, trainer.best_epoch, recipe), len(trainer.history),
               trainer.best_epoch, time.perf_counter() - began)


def cross_validate(graph: Graph, recipe: Recipe, dataset: Dataset, directory: Path, folds: int,
                   *, loaded: Loaded, spec_hash: str, device: str = "auto",
                   log: Callable[[str], None] = print, stop_on_divergence: bool = True,
                   ) -> CvResult:
    """Train and score ``folds`` models into DIRECTORY/folds/<f>/. With
    ``stop_on_divergence`` the first fold whose loss diverges ends the validation."""
    fits: list[Fit] = []
    for f, splits in enumerate(fold_splits(recipe, dataset, folds)):
        data = prepare(recipe, graph, dataset, splits)
        fit = fit_and_score(graph, recipe, data, directory / "folds" / str(f), loaded=loaded,
                            spec_hash=spec_hash, device=device)
        fits.append(fit)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in fit.metrics.items())
        log(f"fold {f + 1}/{folds}: {shown or 'diverged: ' + str(fit.diverged)} "
            f"({fit.epochs_run} epochs, {fit.seconds:.1f} s)")
        if fit.diverged and stop_on_divergence:
            break
    return CvResult(fits)


def write_cv(directory: Path, result: CvResult, recipe: Recipe) -> None:
    ckpt.write_text(directory / CV_FILE, json.dumps(result.record(recipe), indent=2) + "\n")


def append_summary(directory: Path) -> dict[str, Any]:
    """Add the cross-validation of RUN/cv.json to RUN/summary.md (a table of the folds and
    the mean ± std); return the record."""
    record = json.loads((directory / CV_FILE).read_text(encoding="utf-8"))
    keys = list(record["mean"])
    lines = ["", "## Cross-validation", "", record["method"] + ".", "",
             "| fold | " + " | ".join(keys) + " | epochs |",
             "| --- | " + " | ".join("---" for _ in keys) + " | --- |"]
    for f, fold in enumerate(record["folds"]):
        cells = " | ".join(f"{fold['metrics'][k]:.4f}" for k in keys)
        lines.append(f"| {f + 1} | {cells} | {fold['epochs_run']} |")
    cells = " | ".join(f"{record['mean'][k]:.4f} ± {record['std'][k]:.4f}" for k in keys)
    lines.append(f"| mean ± std | {cells} | |")
    summary = directory / "summary.md"
    text = summary.read_text(encoding="utf-8") if summary.is_file() else ""
    ckpt.write_text(summary, text.rstrip("\n") + "\n" + "\n".join(lines) + "\n")
    return record


def _stratified(recipe: Recipe) -> bool:
    """Folds are stratified by class labels (runtime/data/prepare.py stratify_labels)."""
    return recipe.loss in CLASSIFICATION_LOSSES and recipe.target == "labels"


def _quiet(line: str) -> None:
    return None


__all__ = ["CvResult", "Fit", "append_summary", "cross_validate", "fit_and_score", "kept_row",
           "write_cv"]
