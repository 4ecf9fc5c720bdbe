"""From a recipe's data line to tensors: load, check against the model, split, normalise."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnspec.runtime.data.augment import Pipeline, build_augmentations
from nnspec.runtime.data.sources import (
    DataError,
    Dataset,
    Normalizer,
    check_label_shape,
    check_labels,
    check_sample_shape,
    load_data,
)
from nnspec.spec.ir import Graph
from nnspec.spec.recipe.ir import CLASSIFICATION_LOSSES, Recipe
from nnspec.spec.recipe.splits import kfold_indices, split_indices

Split = tuple[torch.Tensor, torch.Tensor]


@dataclass
class PreparedData:
    """The three splits as tensors, the training augmentation, and what reports need."""

    train: Split
    val: Split
    test: Split
    augment: Pipeline | None
    normalizer: dict[str, Any] | None
    num_classes: int | None
    class_names: tuple[str, ...] | None
    description: str
    vocab: tuple[str, ...] | None = None  # text: the characters, id k the k-th (vocab.json)


def load_dataset(recipe: Recipe, base_dir: Path | None, override: Dataset | None = None) -> Dataset:
    if override is not None:
        return override
    return load_data(recipe.data.kind, base_dir=base_dir, **dict(recipe.data.args))


Splits = tuple[np.ndarray, np.ndarray, np.ndarray]  # train, val, test indices


def stratify_labels(recipe: Recipe, dataset: Dataset) -> np.ndarray | None:
    """The labels splits are stratified by: class labels, one per sample; else None."""
    classify = recipe.loss in CLASSIFICATION_LOSSES and recipe.target == "labels"
    return dataset.y if classify and dataset.y.ndim == 1 else None


def split_of(recipe: Recipe, dataset: Dataset) -> Splits:
    """The recipe's train / val / test indices (stratified for class labels, seeded)."""
    labels = stratify_labels(recipe, dataset)
    return split_indices(labels if labels is not None else len(dataset), recipe.split,
                         seed=recipe.seed, stratify=labels is not None)


def fold_splits(recipe: Recipe, dataset: Dataset, folds: int) -> list[Splits]:
    """k-fold cross-validation of the training split: fold f trains on the other folds and
    is validated on its own (stratified for class labels, seeded by the recipe's seed); the
    test split stays out of every fold."""
    train, _, test = split_of(recipe, dataset)
    labels = stratify_labels(recipe, dataset)
    try:
        pairs = kfold_indices(labels[train] if labels is not None else len(train), folds,
                              seed=recipe.seed, stratify=labels is not None)
    except ValueError as exc:
        raise DataError(f"cv kfold({folds}): {exc}", recipe.data.kind) from None
    return [(train[tr], train[va], test) for tr, va in pairs]


def prepare(recipe: Recipe, graph: Graph, dataset: Dataset, splits: Splits | None = None,
            ) -> PreparedData:
    """Check the data against the model, split it (stratified, seeded; or by ``splits``) and
    normalise it with statistics of the training split only."""
    model_input = graph.inputs[0]
    classify = recipe.loss in CLASSIFICATION_LOSSES
    # `normalize` without statistics is fitted on the training split below, not a transform
    transforms = [(a.kind, dict(a.args)) for a in recipe.augment if a.kind != "normalize" or a.args]
    pipeline = build_augmentations(transforms) if transforms else None
    seen_shape = dataset.sample_shape
    if pipeline is not None:
        try:
            seen_shape = pipeline.sample_shape(dataset.sample_shape)
        except ValueError as exc:
            raise DataError(str(exc), "augment") from None
    check_sample_shape(_as_seen(dataset, seen_shape), model_input.type.shape, location=recipe.data.kind)
    tokens = is_text(recipe, dataset)
    if tokens:
        check_text(recipe, graph, dataset)
    elif classify and recipe.target == "labels":
        classes = graph.outputs[0].type.shape[0] if recipe.loss not in ("bce", "bce_logits") else 2
        check_labels(dataset.y, classes, location=recipe.data.kind)
        # named by the data itself: with `--data` it is not the recipe's data line
        check_label_shape(dataset.y, graph.outputs[0].type.shape, location=dataset.name)
    train_idx, val_idx, test_idx = split_of(recipe, dataset) if splits is None else splits
    x = dataset.x
    normalizer = None
    if _normalise(recipe, dataset):
        axis = -1 if graph.nodes and graph.nodes[0].op in ("rnn", "lstm", "gru") else 1
        fitted = Normalizer(axis=axis).fit(x[train_idx])
        x = fitted.transform(x)
        normalizer = fitted.state()
    if recipe.target == "input":  # reconstruction: the (normalised) input is the target
        y = x.copy()
    else:
        y = dataset.y
    if model_input.type.dtype == "int64" and x.dtype.kind in "iu":
        x_t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))  # token ids, exact
    else:
        x_t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if model_input.type.dtype == "int64":
            x_t = x_t.long()
    y_t = torch.from_numpy(np.ascontiguousarray(y))
    if not classify or recipe.target == "input":
        y_t = y_t.float()
    description = f"{dataset.name}: {len(dataset)} samples of {list(dataset.sample_shape)}; split " \
                  f"{len(train_idx)} / {len(val_idx)} / {len(test_idx)}"
    return PreparedData(
        train=(x_t[train_idx], y_t[train_idx]), val=(x_t[val_idx], y_t[val_idx]),
        test=(x_t[test_idx], y_t[test_idx]), augment=pipeline, normalizer=normalizer,
        num_classes=dataset.num_classes if classify else None,
        class_names=None if tokens else dataset.classes, description=description,
        vocab=dataset.classes if tokens else None,
    )


def is_text(recipe: Recipe, dataset: Dataset) -> bool:
    """Next-token samples: a `text` source's windows, targets int64 [N, context]."""
    return recipe.data.kind == "text" and dataset.y.ndim == 2


def check_text(recipe: Recipe, graph: Graph, dataset: Dataset) -> None:
    """The model reads int64 ids [context] and scores [context, vocab] (the data's)."""
    inp, out = graph.inputs[0], graph.outputs[0]
    context, vocab = dataset.sample_shape[0], len(dataset.classes or ())
    where = f"{dataset.name} ({vocab} characters)"
    if inp.type.dtype != "int64":
        raise DataError(f"text gives token ids int[{context}], but the model input `{inp.name}` is "
                        f"{inp.type}", where, f"declare `input {inp.name}: int[{context}]`")
    if out.type.shape != (context, vocab):
        raise DataError(f"text scores the next character at each of {context} positions, "
                        f"[{context}, {vocab}], but the model outputs {out.type}", where,
                        f"a vocabulary of {vocab} characters: end the model with "
                        f"`linear({vocab})` on every position")
    if recipe.loss not in ("cross_entropy", "nll"):
        raise DataError(f"text trains next-token prediction with cross_entropy (or nll), not "
                        f"{recipe.loss}", where)


def _normalise(recipe: Recipe, dataset: Dataset) -> bool:
    """`augment normalize` asks for it; tabular features are standardised by default (the
    course's feature scaling for gradient descent); images already lie in [0, 1]."""
    if any(a.kind == "normalize" for a in recipe.augment):
        return not any(a.kind == "normalize" and a.args for a in recipe.augment)
    return len(dataset.sample_shape) == 1 and dataset.x.dtype.kind == "f"


def _as_seen(dataset: Dataset, shape: tuple[int, ...]) -> Dataset:
    if shape == dataset.sample_shape:
        return dataset
    return Dataset(x=np.zeros((1, *shape), dtype=np.float32), y=dataset.y[:1], task=dataset.task,
                   classes=dataset.classes, name=dataset.name)


__all__ = ["PreparedData", "check_text", "fold_splits", "is_text", "load_dataset", "prepare",
           "split_of"]
