"""k nearest neighbours: `solver knn` stores the training split; `cv kfold(...)` chooses k.

Fitting a kNN classifier is storing the training set: the run's one "epoch" copies the
features that the model's `knn` layer sees (the training split after the data pipeline's
deterministic transforms and the weightless layers before `knn`) into its buffer
``memory`` [M, F], and the labels as one-hot rows into ``labels`` [M, C]. The recipe check
has already made M (the op's `memory`) equal the size of the training split for the
built-in data sets; for data read from files it is checked here, before anything is stored.

Choosing k: with `cv kfold(folds, k=(k_1, ..., k_n))` the training split is cut into
``folds`` stratified folds (seeded by the recipe's seed); for each candidate k_i (the model
argument `k`, so the model is elaborated with it) and each fold f, the samples outside f
are stored and f is classified; the candidate's score is the mean of its fold accuracies,

    CV(k) = (1/folds) Σ_f (1/|f|) Σ_{i ∈ f} [argmax_c votes_k(x_i; D \\ f)_c = y_i],

and the chosen k maximises CV(k), the smallest k on a tie (the simpler vote of fewer
neighbours is no less accurate). The run is then the model elaborated with the chosen k:
its ``ir.json`` carries it, so `nnspec export` of the run builds the same graph.
``cv.json`` holds every candidate's fold accuracies and mean; ``knn.json`` what was stored.
The validation and test splits take no part in the choice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from nnspec.compiler.torch_build import build_module
from nnspec.compiler.torch_modules import KNN
from nnspec.runtime.loop import checkpoint as ckpt
from nnspec.spec.elaborate import Elaborator
from nnspec.spec.ir import Graph
from nnspec.spec.loader import Loaded
from nnspec.spec.recipe.ir import Recipe
from nnspec.spec.recipe.splits import kfold_indices

if TYPE_CHECKING:
    from nnspec.runtime.data.prepare import PreparedData
    from nnspec.runtime.loop.trainer import Trainer

_CHUNK = 1024  # queries per vote: a [chunk, M] distance table at a time


class _Captured(Exception):
    """Stops a forward pass once the `knn` layer's input is known."""


def knn_layer(module: torch.nn.Module) -> KNN:
    """The model's one `knn` layer (the recipe check guarantees there is exactly one)."""
    (layer,) = [m for m in module.modules() if isinstance(m, KNN)]
    return layer


@torch.no_grad()
def knn_inputs(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the `knn` layer sees for inputs ``x``: the model run up to it (a pre-hook catches
    its input and stops the pass, so the stored set is never read)."""
    layer, seen = knn_layer(module), []

    def catch(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen.append(args[0])
        raise _Captured

    handle = layer.register_forward_pre_hook(catch)
    module.eval()
    try:
        for start in range(0, len(x), _CHUNK):
            try:
                module(x[start:start + _CHUNK])
            except _Captured:
                pass
    finally:
        handle.remove()
    return torch.cat(seen) if seen else x.new_zeros((0, layer.memory.shape[1]))


@torch.no_grad()
def predict(queries: torch.Tensor, memory: torch.Tensor, labels: torch.Tensor, k: int,
            distance: str) -> torch.Tensor:
    """Class predictions [N]: argmax of the vote fractions of the k nearest stored samples
    (the `knn` layer's own computation, KNN.votes), in chunks of queries."""
    return torch.cat([KNN.votes(queries[s:s + _CHUNK], memory, labels, k, distance).argmax(1)
                      for s in range(0, len(queries), _CHUNK)])


def _elaborate(loaded: Loaded, recipe: Recipe, k: int) -> Graph:
    return Elaborator(loaded).model(recipe.model, {**recipe.model_args, "k": k})


def _training_features(graph: Graph, data: PreparedData) -> torch.Tensor:
    x = data.train[0]
    if data.augment is not None:  # deterministic transforms only (random ones are refused)
        x = data.augment.eval(x)
    return knn_inputs(build_module(graph), x)


def cross_validate(loaded: Loaded, graph: Graph, recipe: Recipe, data: PreparedData,
                   log: Callable[[str], None] = print) -> tuple[Graph, dict[str, Any] | None]:
    """The model with k chosen by the recipe's `cv` (``graph`` itself without one), and the
    record written to cv.json (None without `cv`)."""
    cv = recipe.cv
    if cv is None or cv.k is None:  # no k to choose (a plain estimate is runtime/experiments/cv.py's)
        return graph, None
    y = data.train[1].long()
    classes = graph.outputs[0].type.shape[0]
    onehot = F.one_hot(y, classes).float()
    folds = kfold_indices(y.numpy(), cv.folds, seed=recipe.seed)
    scores: dict[int, list[float]] = {}
    graphs: dict[int, Graph] = {}
    for k in cv.k:
        graphs[k] = _elaborate(loaded, recipe, k)
        node = next(n for n in graphs[k].nodes if n.op == "knn")
        features = _training_features(graphs[k], data)
        scores[k] = []
        for train_idx, val_idx in folds:
            tr, va = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
            guess = predict(features[va], features[tr], onehot[tr], node.attrs["k"],
                            node.attrs["distance"])
            scores[k].append(float((guess == y[va]).double().mean()))
    means = {k: float(np.mean(v)) for k, v in scores.items()}
    best = min(means, key=lambda k: (-means[k], k))  # best mean; the smallest k on a tie
    for k in cv.k:
        mark = "  <- chosen" if k == best else ""
        log(f"cv k={k}: mean accuracy {means[k]:.4f} over {cv.folds} folds "
            f"({', '.join(f'{s:.3f}' for s in scores[k])}){mark}")
    record = {
        "method": f"{cv.folds}-fold stratified cross-validation on the training split, seed "
                  f"{recipe.seed}; the best mean accuracy, the smallest k on a tie",
        "folds": cv.folds, "samples": int(len(y)), "chosen": best,
        "candidates": [{"k": k, "mean_accuracy": means[k], "fold_accuracy": scores[k]}
                       for k in cv.k],
    }
    return graphs[best], record


def write_cv(directory: Path, record: dict[str, Any] | None) -> None:
    if record is not None:
        ckpt.write_text(directory / "cv.json", json.dumps(record, indent=2) + "\n")


@torch.no_grad()
def fit_epoch(trainer: Trainer) -> dict[str, Any]:
    """The one "epoch" of `solver knn`: store the training split's features and one-hot
    labels in the `knn` layer, write ``knn.json``; return the training split's metrics
    (with k = 1 every sample finds itself: accuracy 1 unless duplicates disagree)."""
    from nnspec.runtime.loop.trainer import TrainingError

    x, y = trainer.data.train
    if trainer.data.augment is not None:
        x = trainer.data.augment.eval(x)
    layer = knn_layer(trainer.module)
    size, classes = layer.memory.shape[0], layer.labels.shape[1]
    if len(x) != size:
        name = next(n.name for n in trainer.graph.nodes if n.op == "knn")
        raise TrainingError(
            f"the knn layer `{name}` stores {size} samples, but the training split holds "
            f"{len(x)} ({trainer.data.description})",
            help=f"write knn(..., memory={len(x)}) in the model")
    features = knn_inputs(trainer.module, x.to(layer.memory.device))
    layer.memory.copy_(features)
    layer.labels.copy_(F.one_hot(y.long(), classes).to(layer.labels))
    if trainer.writes:
        record = {"k": layer.k, "distance": layer.distance, "stored": size,
                  "features": int(layer.memory.shape[1]), "classes": classes,
                  "class_counts": torch.bincount(y.long(), minlength=classes).tolist()}
        ckpt.write_text(trainer.directory / "knn.json", json.dumps(record, indent=2) + "\n")
    return trainer.evaluate(trainer.data.train, "train_")[0]


__all__ = ["cross_validate", "fit_epoch", "knn_inputs", "knn_layer", "predict", "write_cv"]
