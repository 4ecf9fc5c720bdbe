"""Ensembles (`ensemble 5`, `ensemble 5, bagging`): n members of one model, one run directory.

    RUN/spec/..., ir.json, recipe.json (with its `ensemble`), normalizer.json, classes.json
    RUN/members/<k>/   member k: a complete run directory of its own (weights, curves,
                       summary, test.json; recipe.json with seed = the recipe's seed + k),
                       so it also exports and predicts alone; with bagging, bag.json: the
                       indices into the training split it was trained on
    RUN/ensemble.json  the members, their seeds and test metrics, their mean, the ensemble's
    RUN/test.json, RUN/summary.md   the ensemble's test metrics and its comparison table

Every member sees the same split, normaliser and validation part (those of the recipe's
seed), so their predictions on the test part are comparable and can be averaged. The
ensemble's prediction is the mean of the members' class probabilities for a classifier
(softmax of logits, sigmoid of one logit, exp of log-probabilities: the same transform as
the ONNX export, compiler/onnx_build.py ``member_transform``) and the mean of the outputs
for a regression.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nnspec.compiler.onnx_build import TO_PROBABILITIES, member_transform
from nnspec.spec.ir import Graph
from nnspec.spec.loader import Loaded
from nnspec.spec.recipe_ir import CLASSIFICATION_LOSSES, Recipe

from . import checkpoint as ckpt
from .augment import generator_for
from .objectives import LOSSES, MetricSums, predictions
from .prepare import PreparedData
from .report import confusion_matrix, write_ensemble_summary
from .run import Job, new_run_directory, open_run_directory, train_rank
from .train import Run, TrainingError

ENSEMBLE_FILE = "ensemble.json"
BAG_STREAM = 3  # generator_for(seed, member, 3): apart from the shuffle (1) and augment (2) streams
_TORCH = {"softmax": lambda t: torch.softmax(t, dim=1), "sigmoid": torch.sigmoid, "exp": torch.exp}
assert set(_TORCH) == set(TO_PROBABILITIES)  # the export computes what training measured


def task_of(recipe: Recipe) -> str:
    labelled = recipe.loss in CLASSIFICATION_LOSSES and recipe.target == "labels"
    return "classification" if labelled else "regression"


def member_recipe(recipe: Recipe, k: int) -> Recipe:
    """Member k's recipe: the ensemble's, with seed + k (its init, shuffles, dropout), alone."""
    return recipe.model_copy(update={"seed": recipe.seed + k, "ensemble": None})


def bootstrap_indices(n: int, seed: int, member: int) -> torch.Tensor:
    """Member ``member``'s bag: n draws with replacement from range(n), the same for the
    same (seed, member); about 1 - 1/e ≈ 63.2% of the samples appear in it."""
    return torch.randint(n, (n,), generator=generator_for(seed, member, BAG_STREAM))


def to_probabilities(output: torch.Tensor, transform: str | None) -> torch.Tensor:
    """One member's output as the ensemble averages it (see ``member_transform``)."""
    return output if transform is None else _TORCH[transform](output)


class EnsembleModule(nn.Module):
    """The Python ensemble: the mean of its members' (transformed) outputs."""

    def __init__(self, members: Sequence[nn.Module], transform: str | None):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.transform = transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([to_probabilities(m(x), self.transform) for m in self.members]).mean(0)


def ensemble_metrics(average: torch.Tensor, target: torch.Tensor, recipe: Recipe,
                     transform: str | None) -> dict[str, float]:
    """The recipe's metrics of the averaged prediction; its loss: for a classifier the
    cross-entropy of the mean probabilities (binary for one column), else the recipe's loss."""
    if task_of(recipe) == "regression":
        name, loss = recipe.loss, LOSSES[recipe.loss](average, target)
    elif average.shape[1] == 1:
        name = "bce"  # predictions: p >= 1/2
        loss = F.binary_cross_entropy(average.clamp(1e-7, 1 - 1e-7), target.float().reshape(average.shape))
    else:
        name = "nll"  # predictions: the argmax over the class axis
        loss = F.nll_loss(average.clamp_min(1e-12).log(), target.long())
    sums = MetricSums(name, recipe.metrics)
    sums.add(average, target, loss)
    return sums.result("test_")


def train_ensemble(loaded: Loaded, graph: Graph, recipe: Recipe, data: PreparedData, *,
                   out: Path | None, spec_hash: str, device: str, amp: bool, compile: bool,
                   progress: bool, log: Callable[[str], None]) -> Run:
    """Train every member in RUN/members/<k>, one after the other, then evaluate their
    average; RUN is ``out``, else a new folder under runs/."""
    spec = recipe.ensemble
    assert spec is not None
    directory = out if out is not None else new_run_directory(Path("runs"), graph.name)
    if (directory / "members").exists() or (directory / "state.pt").exists():
        raise TrainingError(f"`{directory}` already holds a run", help="choose another --out")
    open_run_directory(loaded, graph, recipe, data, out=directory, resume=None)
    task = task_of(recipe)
    transform = member_transform(graph, task)
    combine = _combine_words(transform, task)
    log(f"run directory: {directory}")
    log(f"an ensemble of {spec.members} members ({spec.mode}), seeds {recipe.seed}..."
        f"{recipe.seed + spec.members - 1}; prediction: {combine}")
    n_train = len(data.train[0])
    modules, records, outputs = [], [], []
    for k in range(spec.members):
        member, member_data = member_recipe(recipe, k), data
        folder = directory / "members" / str(k)
        record: dict[str, Any] = {"member": k, "seed": member.seed, "directory": f"members/{k}"}
        if spec.mode == "bagging":
            bag = bootstrap_indices(n_train, recipe.seed, k)
            member_data = replace(data, train=(data.train[0][bag], data.train[1][bag]))
            record["bag_unique"] = round(len(torch.unique(bag)) / n_train, 4)
        open_run_directory(loaded, graph, member, member_data, out=folder, resume=None)
        if spec.mode == "bagging":
            ckpt.write_text(folder / "bag.json", json.dumps(bag.tolist()) + "\n")
        job = Job(graph=graph, recipe=member, data=member_data, directory=folder,
                  spec_hash=spec_hash, device=device, amp=amp, compile=compile, progress=progress,
                  stop_after=None, resume=False)
        trainer, test, _ = train_rank(None, lambda line, k=k: log(f"member {k}: {line}"), job)
        if len(data.test[0]):
            outputs.append(trainer.evaluate(data.test, "test_", keep=True)[1])
        modules.append(trainer.module.cpu().eval())
        record.update(epochs_run=len(trainer.history), best_epoch=trainer.best_epoch, test=test)
        records.append(record)
    test, confusion = {}, None
    if outputs:
        average = torch.stack([to_probabilities(o, transform) for o in outputs]).mean(0)
        target = data.test[1]
        test = ensemble_metrics(average, target, recipe, transform)
        if task == "classification" and average.dim() in (2, 4):
            classes = max(data.num_classes or 2, 2)
            predicted = predictions(average, "bce" if average.shape[1] == 1 else "nll")
            confusion = confusion_matrix(predicted.numpy(), target.numpy().astype(np.int64), classes)
    mean = {key: float(np.mean([r["test"][key] for r in records]))
            for key in (records[0]["test"] if records else {})}
    ckpt.write_text(directory / ENSEMBLE_FILE, json.dumps({
        "members": spec.members, "mode": spec.mode, "prediction": combine,
        "transform": transform, "member_runs": records, "member_mean": mean, "test": test,
    }, indent=2) + "\n")
    ckpt.write_text(directory / "test.json", json.dumps(test, indent=2) + "\n")
    write_ensemble_summary(
        directory / "summary.md", model=graph.name, recipe=recipe.name, members=records,
        mean=mean, test=test, combine=combine, confusion=confusion,
        class_names=data.class_names,
        extra={"mode": _mode_words(spec.mode), "data": data.description})
    return Run(directory=directory, module=EnsembleModule(modules, transform), history=[],
               test=test, best_epoch=None, recipe=recipe,
               extra={"finished": True, "members": records, "member_mean": mean})


def check_supported(recipe: Recipe, *, resume: Path | None, stop_after: int | None,
                    nproc: int | None, launched: bool) -> None:
    """What an ensemble run does not do (yet): a clear error instead of a half run."""
    if recipe.ensemble is None:
        return
    if recipe.solver not in ("gradient", "normal_equation"):  # members trained by Trainer.fit
        raise TrainingError(f"an ensemble of `solver {recipe.solver}` is not supported",
                            help="use `solver gradient` or `normal_equation` with `ensemble`")
    for given, what in ((resume is not None, "--resume"), (stop_after is not None, "stop_after"),
                        (nproc is not None and nproc > 1 or launched, "several processes")):
        if given:
            raise TrainingError(f"an ensemble run does not support {what}",
                                help="train the ensemble in one call and one process; each member "
                                "is a run directory of its own under members/<k>")


def ensemble_weights(run: Path) -> list[Path] | None:
    """The members' best.safetensors of an ensemble run directory, in member order; None
    when ``run`` is no ensemble run."""
    record = run / ENSEMBLE_FILE
    if not record.is_file():
        return None
    try:
        members = int(json.loads(record.read_text(encoding="utf-8"))["members"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ckpt.CheckpointError(f"`{record}` is not an ensemble record", record,
                                   help="train the ensemble again") from None
    paths = [run / "members" / str(k) / "best.safetensors" for k in range(members)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise ckpt.CheckpointError(f"the ensemble in `{run}` lacks `{missing[0]}`", missing[0],
                                   help="the run was interrupted: train the ensemble again")
    return paths


def _combine_words(transform: str | None, task: str) -> str:
    if task == "regression":
        return "the mean of the members' outputs"
    what = {"softmax": "softmax of the logits", "sigmoid": "sigmoid of the logit",
            "exp": "exp of the log-probabilities", None: "their output probabilities"}[transform]
    return f"the mean of the members' class probabilities ({what})"


def _mode_words(mode: str) -> str:
    if mode == "bagging":
        return "bagging: each member on its own bootstrap sample of the training split"
    return "seeds: every member on the whole training split, differing by seed"


__all__ = ["EnsembleModule", "bootstrap_indices", "ensemble_weights", "train_ensemble"]
