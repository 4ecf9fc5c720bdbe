"""Transfer learning: start from another run's weights, keep some fixed, train some slower.

* ``init from("base/", match="features.*")``: after the init scheme, the module's tensors
  (parameters and buffers: batchnorm's running statistics travel with its weights) whose
  state names match a glob pattern are copied from a safetensors file, or from a run
  directory's best.safetensors. Nothing is unpickled.
* ``freeze "features.*"``: the matching parameters get ``requires_grad = False`` and stay
  out of the optimizer, so no update, weight decay or max-norm touches them (bit-identical
  after training). A batchnorm (or instancenorm with running statistics) whose running
  mean is matched stays in eval mode during training: it normalises with its loaded
  statistics and never updates them (Keras' choice for frozen layers; statistics of the
  new data would shift the features the frozen weights expect). Dropout stays active.
* ``lr_groups group("features.*", lr=1e-4)``: one optimizer parameter group per group, the
  others in a first group at the optimizer's lr. Each group carries ``lr_scale`` = lr / α0,
  and the training loop sets ``lr = α(e) · lr_scale``: a schedule scales every group alike.

The recipe stage has already checked the patterns against the model and, when the file
existed, the file against the model; what only training can see (a file written since, or
changed) raises a :class:`CheckpointError` naming the tensor and both shapes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnspec.runtime.loop.checkpoint import CheckpointError, load_weights
from nnspec.spec.recipe.checks import matching, weights_file
from nnspec.spec.recipe.ir import Recipe, WeightsSource


def load_initial(module: nn.Module, source: WeightsSource | None) -> list[str]:
    """Copy the tensors ``source.match`` names from ``source``'s file into ``module``, in
    place (dtype and device of the module kept); return their names, in state order."""
    if source is None:
        return []
    path = Path(source.path)
    file = weights_file(source.path)
    if not file.is_file():
        what = f"is not a run directory (it has no {file.name})" if path.is_dir() \
            else "does not exist"
        raise CheckpointError(f"`init from`: `{source.written}` {what}", file,
                              help="train the base run first, or give its directory or a "
                              ".safetensors file (paths are relative to the spec file)")
    tensors, _ = load_weights(file)
    state = module.state_dict()
    names = matching(state, source.match)
    if not names:
        raise CheckpointError(f"`init from`: match={list(source.match)} matches no tensor of the "
                              "model", file)
    for name in names:
        if name not in tensors:
            raise CheckpointError(f"`init from`: `{file}` has no tensor `{name}`", file,
                                  help="narrow `match` to the layers the file holds")
        found, wanted = tuple(tensors[name].shape), tuple(state[name].shape)
        if found != wanted:
            raise CheckpointError(
                f"`init from`: `{name}` has shape {list(found)} in `{file}`, the model needs "
                f"{list(wanted)}", file,
                help=f"leave `{name.rsplit('.', 1)[0]}` out of `match` to keep its initialisation")
    with torch.no_grad():
        for name in names:
            state[name].copy_(tensors[name])  # state_dict tensors share the module's storage
    return names


def frozen(module: nn.Module, patterns: Iterable[str]) -> list[str]:
    """Freeze the parameters the patterns match; hold matched norm layers in eval mode.
    Returns the frozen parameters' names."""
    patterns = tuple(patterns)
    if not patterns:
        return []
    names = matching(dict(module.named_parameters()), patterns)
    params = dict(module.named_parameters())
    for name in names:
        params[name].requires_grad_(False)
    for prefix, layer in module.named_modules():
        stats = getattr(layer, "running_mean", None)
        if isinstance(stats, torch.Tensor) and matching([f"{prefix}.running_mean"], patterns):
            _hold_in_eval(layer)
    return names


def _hold_in_eval(layer: nn.Module) -> None:
    """`module.train()` reaches each layer as ``child.train(mode)``; an instance attribute
    shadows the class's method, so this layer answers every call with eval mode. (A partial,
    not a bound lambda: the module stays deep-copyable and picklable.)"""
    layer.train = functools.partial(_eval_only, layer)
    layer.train(False)


def _eval_only(layer: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(layer, False)


def param_groups(module: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """The optimizer's parameter groups over the trainable parameters: first those of no
    group at the optimizer's lr α0 (when there are any), then one per `lr_groups` group at its
    lr. ``lr_scale`` = lr / α0 lets a schedule scale every group: α_g(e) = α(e) · lr_scale."""
    lr0 = recipe.optimizer.lr
    trainable = {n: p for n, p in module.named_parameters() if p.requires_grad}
    taken: set[str] = set()
    groups: list[dict[str, Any]] = []
    for group in recipe.lr_groups:
        names = [n for n in matching(trainable, group.match) if n not in taken]
        taken.update(names)
        if names:  # a group of frozen parameters only trains nothing (a warning at check time)
            groups.append({"params": [trainable[n] for n in names], "lr": group.lr,
                           "lr_scale": group.lr / lr0, "match": group.match})
    rest = [p for n, p in trainable.items() if n not in taken]
    if rest or not groups:
        groups.insert(0, {"params": rest, "lr": lr0, "lr_scale": 1.0, "match": ("*",)})
    return groups


__all__ = ["frozen", "load_initial", "param_groups"]
