"""Ensembles (`ensemble 5`, `ensemble 5, bagging`): n members of one model, one run directory.

    RUN/spec/..., ir.json, recipe.json (with its `ensemble`), normalizer.json, classes.json
    RUN/members/<k>/   member k: a complete run directory of its own (weights, curves,
                       summary, test.json; recipe.json with seed = the recipe's seed + k),
                       so it also exports and predicts alone; with bagging, bag.json: the
                       indices into the training split it was trained on
    RUN/ensemble_run.json  written at the start: spec hash, model, recipe, members, mode, seed
    RUN/ensemble.json  the members, their seeds and test metrics, their mean, the ensemble's
                       (written at the end, with RUN/test.json and RUN/summary.md: the
                       ensemble's test metrics and its comparison table)

Every member sees the same split, normaliser and validation part (those of the recipe's
seed), so their predictions on the test part are comparable and can be averaged. The
ensemble's prediction is the mean of the members' class probabilities for a classifier
(softmax of logits, sigmoid of one logit, exp of log-probabilities: the same transform as
the ONNX export, compiler/onnx_build.py ``member_transform``) and the mean of the outputs
for a regression.

Resume (``--resume RUN``) and ``stop_after`` work as for one run, in one process (more than
one, by ``--nproc`` or torchrun, is refused). ``stop_after=k`` counts the epochs of the members in order, as
one long run: with 3-epoch members, ``stop_after=7`` ends the call after epoch 1 of member
2 (members 0 and 1 finished, 3 and 4 not started), and ``stop_after=3`` after member 0, before
member 1. A resume first checks RUN (an ensemble run: its recipe.json has ``ensemble``; the
spec hash of ensemble_run.json; the same recipe name, members, mode and seed), then goes
through the members in order: a member whose state.pt is final (the recipe's epochs run, or
stopped early) is loaded, not trained again, with the weights ``Trainer.finish`` left (its
best with early stopping, else its last; finish runs again only when test.json is missing);
a member with another state.pt resumes from it exactly like one run (bit for bit on CPU); the
others are trained (from their seed, in a fresh folder). Every started member's folder is
recovered and verified first, as one run's directory is (docs/runs.md). A bagging member's bag is drawn again from (seed, k) and checked against
its bag.json. Every member's weights and the test metrics then equal an uninterrupted run's.
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
from nnspec.runtime.data.augment import generator_for
from nnspec.runtime.data.prepare import PreparedData
from nnspec.runtime.experiments.directory import (
    fresh_run_directory,
    new_run_directory,
    open_run_directory,
    resume_run_directory,
)
from nnspec.runtime.experiments.rank import Job, train_rank
from nnspec.runtime.experiments.solvers import epoch_fit
from nnspec.runtime.loop import checkpoint as ckpt
from nnspec.runtime.loop.objectives import LOSSES, MetricSums, predictions
from nnspec.runtime.loop.report import confusion_matrix, write_ensemble_summary
from nnspec.runtime.loop.trainer import Run, Trainer, TrainingError
from nnspec.spec.ir import Graph
from nnspec.spec.loader import Loaded
from nnspec.spec.recipe.ir import CLASSIFICATION_LOSSES, Recipe
from nnspec.spec.recipe.rundir import ENSEMBLE_FILE

RUN_FILE = "ensemble_run.json"  # written at the start: the spec hash a resume checks
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
                   progress: bool, log: Callable[[str], None], resume: Path | None = None,
                   stop_after: int | None = None) -> Run:
    """Train every member in RUN/members/<k>, one after the other, then evaluate their
    average; RUN is ``out``, else a new folder under runs/, or ``resume``, an ensemble run
    to continue (see the module docstring). ``stop_after=k`` ends the call after the k-th
    epoch counted over the members in order; the returned Run is then unfinished."""
    spec = recipe.ensemble
    assert spec is not None
    if resume is not None:
        directory = resume
        check_resumable(directory, recipe, spec_hash)
        log(f"resuming the ensemble in {directory}")
    else:
        directory = out if out is not None else new_run_directory(Path("runs"), graph.name)
        if (directory / "state.pt").exists():
            raise TrainingError(f"`{directory}` already holds a run", help="choose another --out")
        if (directory / "members").exists() or (directory / RUN_FILE).exists():
            raise TrainingError(f"`{directory}` already holds an ensemble run",
                                help=f"continue it with --resume {directory}, or choose another --out")
        open_run_directory(loaded, graph, recipe, data, out=directory, resume=None, trains=False)
        ckpt.write_text(directory / RUN_FILE, json.dumps({
            "spec_sha256": spec_hash, "model": graph.name, "recipe": recipe.name,
            "members": spec.members, "mode": spec.mode, "seed": recipe.seed}, indent=2) + "\n")
        log(f"run directory: {directory}")
    task = task_of(recipe)
    transform = member_transform(graph, task)
    combine = _combine_words(transform, task)
    log(f"an ensemble of {spec.members} members ({spec.mode}), seeds {recipe.seed}..."
        f"{recipe.seed + spec.members - 1}; prediction: {combine}")
    n_train = len(data.train[0])
    modules, records, outputs = [], [], []
    epochs_before, trained, stopped = 0, False, None  # the epochs of the members before k
    for k in range(spec.members):
        if stop_after is not None and trained and epochs_before >= stop_after:
            stopped = k  # ended after the last epoch of member k - 1: k is not started
            break
        member, member_data = member_recipe(recipe, k), data
        folder = directory / "members" / str(k)
        record: dict[str, Any] = {"member": k, "seed": member.seed, "directory": f"members/{k}"}
        bag = None
        if spec.mode == "bagging":  # seeded by (recipe seed, k): the same bag on resume
            bag = bootstrap_indices(n_train, recipe.seed, k)
            member_data = replace(data, train=(data.train[0][bag], data.train[1][bag]))
            record["bag_unique"] = round(len(torch.unique(bag)) / n_train, 4)
        say = _prefixed(log, f"member {k}: ")
        started = resume is not None and _member_started(folder, say)
        job = Job(graph=graph, recipe=member, data=member_data, directory=folder,
                  spec_hash=spec_hash, device=device, amp=amp, compile=compile, progress=progress,
                  stop_after=None if stop_after is None else stop_after - epochs_before,
                  resume=started)
        if started:
            _check_bag(folder, bag)
        if started and member_finished(ckpt.load_state(folder / "state.pt"), member):
            trainer, test = _finished_member(job, say)
            say(f"finished ({len(trainer.history)} epochs): loaded, not trained again")
        else:
            if started:
                open_run_directory(loaded, graph, member, member_data, out=None, resume=folder,
                                   recovered=True)
            else:  # never started, or stopped in its first epoch: from its seed again
                fresh_run_directory(folder, loaded, graph, member, member_data)
            if bag is not None and not started:
                ckpt.write_text(folder / "bag.json", json.dumps(bag.tolist()) + "\n")
            trainer, test, extra = train_rank(None, say, job)
            trained = True
            if not extra["finished"]:  # stop_after within this member
                stopped = k
        epochs_before += len(trainer.history)
        if len(data.test[0]) and stopped is None:
            outputs.append(trainer.evaluate(data.test, "test_", keep=True)[1])
        modules.append(trainer.module.cpu().eval())
        record.update(epochs_run=len(trainer.history), best_epoch=trainer.best_epoch, test=test)
        records.append(record)
        if stopped is not None:
            break
    module = EnsembleModule(modules, transform)
    if stopped is not None:
        where = "in" if len(records) > stopped else "before"
        log(f"stopped {where} member {stopped}, after {epochs_before} epochs of the ensemble: "
            f"continue with --resume {directory}")
        return Run(directory=directory, module=module, history=[], test={}, best_epoch=None,
                   recipe=recipe, extra={"finished": False, "members": records,
                                         "member_mean": {}, "stopped_member": stopped})
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
    return Run(directory=directory, module=module, history=[], test=test, best_epoch=None,
               recipe=recipe, extra={"finished": True, "members": records, "member_mean": mean})


def _member_started(folder: Path, log: Callable[[str], None]) -> bool:
    """Whether member ``folder`` committed a checkpoint (recovered and verified here, as a
    run's directory is on resume; see ``resume_run_directory``)."""
    if not (folder / ckpt.MANIFEST).is_file() and not (folder / "state.pt").is_file():
        return False
    recovered = resume_run_directory(folder, log)
    return recovered.epoch >= 1 if recovered is not None else True


def member_finished(state: dict[str, Any], member: Recipe) -> bool:
    """Whether a member's training state is final: the recipe's epochs run, or stopped
    early (the test as ``train_rank`` decides it)."""
    stop = member.early_stop
    return int(state["epoch"]) >= member.epochs or (
        stop is not None and int(state["stale"]) >= stop.patience)


def check_resumable(directory: Path, recipe: Recipe, spec_hash: str) -> None:
    """``directory`` is an ensemble run of this spec and recipe, or a clear error (before
    anything is written)."""
    assert recipe.ensemble is not None
    given = "give the ensemble's run directory, the one `nnspec train` printed at its start"
    if not directory.is_dir():
        raise TrainingError(f"`{directory}` is not a run directory", help=given)
    if (directory / "state.pt").is_file():
        raise TrainingError(
            f"`{directory}` is a single run, not an ensemble run: recipe `{recipe.name}` trains "
            f"an ensemble of {recipe.ensemble.members}",
            help=f"{given}; a single run resumes with the recipe it was trained by")
    try:
        stored = json.loads((directory / "recipe.json").read_text(encoding="utf-8"))
        ensemble = stored["ensemble"]
    except (OSError, ValueError, KeyError, TypeError):
        raise TrainingError(f"`{directory}` is not a run directory (no readable recipe.json)",
                            help=given) from None
    if not isinstance(ensemble, dict):
        raise TrainingError(f"`{directory}` is not an ensemble run (its recipe has no `ensemble`)",
                            help=given)
    record = directory / RUN_FILE
    if record.is_file():  # written when the ensemble started
        try:
            saved = json.loads(record.read_text(encoding="utf-8"))["spec_sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ckpt.CheckpointError(f"`{record}` is not an ensemble record", record,
                                       help="the file is corrupt or not from nnspec") from None
        if saved != spec_hash:
            raise TrainingError(
                f"`{directory}` was trained from a different spec (its hash differs)",
                help="resume with the spec file the run was started from, or start a new run")
    # (an older run without the record: every started member's state.pt checks the hash)
    now = recipe.ensemble
    if (stored.get("name"), ensemble.get("members"), ensemble.get("mode"), stored.get("seed")) \
            != (recipe.name, now.members, now.mode, recipe.seed):
        raise TrainingError(
            f"`{directory}` was trained by recipe `{stored.get('name')}` (ensemble "
            f"{ensemble.get('members')}, {ensemble.get('mode')}, seed {stored.get('seed')}), not "
            f"by `{recipe.name}` (ensemble {now.members}, {now.mode}, seed {recipe.seed})",
            help=f"resume it with --recipe {stored.get('name')}, or start a new run")


def _check_bag(folder: Path, bag: torch.Tensor | None) -> None:
    """A started bagging member's bag.json equals its bag drawn now (else the data changed)."""
    path = folder / "bag.json"
    if bag is None or not path.is_file():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ckpt.CheckpointError(f"`{path}` is not a readable bootstrap sample", path,
                                   help="the file is corrupt: start a new run") from None
    if saved != bag.tolist():
        raise ckpt.CheckpointError(
            f"the bootstrap sample of `{folder}` differs from its bag.json", path,
            help="resume with the data the run was trained on (the training split changed)")


def _finished_member(job: Job, log: Callable[[str], None]) -> tuple[Trainer, dict[str, Any]]:
    """A member whose training is over: its state and weights loaded (the spec hash and
    tensor shapes checked), as ``Trainer.finish`` leaves them (the best weights with early
    stopping, else the last); ``finish`` runs here only when the call that trained it was
    interrupted before its test.json."""
    trainer = Trainer(job.recipe, job.graph, job.data, job.directory, spec_hash=job.spec_hash,
                      device=job.device, amp=job.amp, compile=job.compile, progress=False, log=log,
                      fit_epoch=epoch_fit(job.recipe))
    trainer.resume(job.directory)
    result = job.directory / "test.json"
    if not result.is_file():
        return trainer, trainer.finish()
    if job.recipe.early_stop is not None and trainer.best_epoch is not None:
        best = job.directory / "best.safetensors"
        tensors, _ = ckpt.load_weights(best)
        ckpt.check_state_dict(trainer.module.state_dict(), tensors, best)
        trainer.module.load_state_dict(tensors)
    try:
        test = json.loads(result.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        test = trainer.finish()  # a corrupt report: written again from the weights
    return trainer, test


def check_supported(recipe: Recipe, *, nproc: int | None, launched: bool) -> None:
    """What an ensemble run does not do (yet): a clear error instead of a half run."""
    if recipe.ensemble is None:
        return
    if recipe.solver not in ("gradient", "normal_equation"):  # members trained by Trainer.fit
        raise TrainingError(f"an ensemble of `solver {recipe.solver}` is not supported",
                            help="use `solver gradient` or `normal_equation` with `ensemble`")
    if nproc is not None and nproc > 1 or launched:
        raise TrainingError("an ensemble run does not support several processes",
                            help="train the ensemble in one process; each member is a run "
                            "directory of its own under members/<k>")


def _prefixed(log: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    return lambda line: log(prefix + line)


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


__all__ = ["EnsembleModule", "bootstrap_indices", "train_ensemble"]
