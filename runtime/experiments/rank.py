"""Training in this process: alone, or as one rank of a process group (runtime/experiments/
distributed.py), with what every rank needs in one picklable :class:`Job`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnspec.runtime.data.prepare import PreparedData
from nnspec.runtime.experiments import distributed
from nnspec.runtime.experiments.solvers import epoch_fit
from nnspec.runtime.loop import checkpoint as ckpt
from nnspec.runtime.loop.hooks import ALONE
from nnspec.runtime.loop.trainer import Trainer
from nnspec.spec.ir import Graph
from nnspec.spec.recipe.ir import Recipe


@dataclass
class Job:
    """What every rank needs to train (picklable: it crosses into spawned workers)."""

    graph: Graph
    recipe: Recipe
    data: PreparedData
    directory: Path
    spec_hash: str
    device: str
    amp: bool
    compile: bool
    progress: bool
    stop_after: int | None
    resume: bool


def train_rank(group: distributed.Group | None, log: Callable[[str], None], job: Job,
               ) -> tuple[Trainer, dict[str, Any], dict[str, Any]]:
    """Train in this process (one rank of ``group``, or alone): the trainer, the test
    metrics (empty when the run stopped early by ``stop_after``) and the run's extras."""
    main = group is None or group.main
    say = log if main else _quiet
    recipe = job.recipe
    trainer = Trainer(recipe, job.graph, job.data, job.directory, spec_hash=job.spec_hash,
                      device=job.device, amp=job.amp, compile=job.compile,
                      progress=job.progress and main, log=say,
                      group=group if group is not None else ALONE, fit_epoch=epoch_fit(recipe))
    if job.resume:
        trainer.resume(job.directory)
        say(f"resuming {job.directory} after epoch {trainer.start_epoch}")
    else:
        say(f"run directory: {job.directory}")
    if group is not None:
        say(_group_line(group, recipe, len(job.data.train[0])))
    began, began_cpu = time.perf_counter(), time.process_time()
    trainer.fit(stop_after=job.stop_after)
    fit_seconds = time.perf_counter() - began
    fit_cpu_seconds = time.process_time() - began_cpu  # all threads: benchmarks/bench_train.py
    finished = len(trainer.history) >= recipe.epochs or (
        recipe.early_stop is not None and trainer.stale >= recipe.early_stop.patience)
    extra: dict[str, Any] = {"finished": finished, "device": str(trainer.device),
                             "fit_seconds": fit_seconds, "fit_cpu_seconds": fit_cpu_seconds,
                             "epochs_this_call": len(trainer.history) - trainer.start_epoch}
    if group is not None:
        # the final weights of every rank, compared for real: DDP keeps them equal
        checksums = distributed.gather(distributed.parameter_checksum(trainer.module), group)
        extra.update(_group_record(group, recipe, len(job.data.train[0])),
                     ranks_equal=len(set(checksums)) == 1, checksums=checksums, rank=group.rank)
    test: dict[str, Any] = trainer.finish() if finished else {}
    if group is not None and group.main:
        _write_group_record(job.directory, extra, fit_seconds)
    return trainer, test, extra


def _group_record(group: distributed.Group, recipe: Recipe, n_train: int) -> dict[str, Any]:
    batch = recipe.batch or n_train
    return {"world_size": group.world_size, "backend": group.backend, "launcher": group.launcher,
            "global_batch": batch, "batch_per_process": -(-batch // group.world_size)}


def _group_line(group: distributed.Group, recipe: Recipe, n_train: int) -> str:
    record = _group_record(group, recipe, n_train)
    return (f"{group.world_size} processes ({group.backend}, started by {group.launcher}); global "
            f"batch {record['global_batch']} = {record['batch_per_process']} per process")


def _write_group_record(directory: Path, extra: dict[str, Any], fit_seconds: float) -> None:
    """distributed.json: this call's processes and checksums; earlier calls (a resumed run)
    are kept under "previous"."""
    path = directory / "distributed.json"
    previous: list[Any] = []
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            previous = [*old.pop("previous", []), old]
        except (OSError, ValueError):
            previous = []
    keys = ("world_size", "backend", "launcher", "global_batch", "batch_per_process",
            "ranks_equal", "checksums", "epochs_this_call")
    record = {k: extra[k] for k in keys}
    record["fit_seconds"] = round(fit_seconds, 3)
    record["checksum"] = "sha256 of each rank's parameters (name, dtype, shape, bytes) after the " \
                         "last epoch of this call"
    record["validation"] = "sharded over the ranks, sums all-reduced"
    record["test"] = "rank 0"
    if previous:
        record["previous"] = previous
    ckpt.write_text(path, json.dumps(record, indent=2) + "\n")


def _quiet(line: str) -> None:
    return None
