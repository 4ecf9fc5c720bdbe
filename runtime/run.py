"""A training run: its directory, what is written there, and resume.

    RUN/spec/...       the spec source files, as compiled
    RUN/ir.json        the resolved model IR        RUN/recipe.json  the resolved recipe
    RUN/metrics.jsonl  one line per epoch           RUN/state.pt     optimizer, RNG, history
    RUN/best.safetensors + best.json, RUN/last.safetensors + last.json
    RUN/normalizer.json  statistics of the training split (reused by inference)
    RUN/classes.json   the class names of the data, when it has them (reused by inference)
    RUN/curves.png, RUN/summary.md, RUN/test.json
    RUN/solver.json    `solver normal_equation`: θ in float64, rank and condition of [1 X]
    RUN/cv.json, RUN/knn.json  `solver knn`: each k's cross-validation accuracies, what was stored
    RUN/cv.json, RUN/folds/<f>/  `cv kfold(n)`: every fold's validation metrics and their mean ±
                       std (runtime/cv.py), each fold a run directory; then the final model
    RUN/distributed.json  with many processes: their number, backend, batch per process, and a
                          checksum of every rank's final parameters ("ranks_equal")
    RUN/members/<k>/, RUN/ensemble.json  `ensemble n`: a run directory per member (runtime/ensemble.py);
                       resumed and stopped (stop_after) like one run, in one process only
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnspec.compiler.torch_build import build_module
from nnspec.spec.ir import Graph
from nnspec.spec.loader import Loaded
from nnspec.spec.recipe_ir import Recipe

from . import checkpoint as ckpt
from . import distributed, knn
from .data import Dataset
from .prepare import PreparedData, load_dataset, prepare
from .train import Run, Trainer, TrainingError


def spec_hash(loaded: Loaded) -> str:
    """One hash over every source file of the spec (the root and its imports)."""
    digest = hashlib.sha256()
    for name in sorted(loaded.hashes):
        digest.update(f"{name}\0{loaded.hashes[name]}\0".encode())
    return digest.hexdigest()


def new_run_directory(root: Path, model: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, k = root / f"{model}-{stamp}", 2
    while candidate.exists():
        candidate, k = root / f"{model}-{stamp}-{k}", k + 1
    return candidate


def write_inputs(directory: Path, loaded: Loaded, graph: Graph, recipe: Recipe) -> None:
    for name in loaded.hashes:
        source = loaded.sources.get(name)
        if source is not None:
            ckpt.write_text(directory / "spec" / Path(name).name, source.text)
    ckpt.write_text(directory / "ir.json", graph.model_dump_json(indent=2) + "\n")
    ckpt.write_text(directory / "recipe.json", recipe.model_dump_json(indent=2) + "\n")


def run_training(
    loaded: Loaded, graph: Graph, recipe: Recipe, *, base_dir: Path | None, out: Path | None = None,
    resume: Path | None = None, device: str | None = None, amp: bool = False, compile: bool = False,
    dataset: Dataset | None = None, progress: bool = True, stop_after: int | None = None,
    log: Callable[[str], None] = print, nproc: int | None = None,
) -> Run:
    """Train ``graph`` by ``recipe``; write everything into a run directory.

    ``nproc=N`` > 1 trains N processes with DistributedDataParallel, started here; in a
    process started by torchrun (RANK / WORLD_SIZE / ... in the environment) this process
    joins the launched group. Either way there is one run directory, written by rank 0.
    """
    hash_ = spec_hash(loaded)
    if nproc is not None and nproc < 1:
        raise TrainingError(f"the number of processes must be at least 1, got {nproc}",
                            help="--nproc 1 (the default) trains in this process")
    launch = distributed.from_environment()
    requested = device or recipe.device
    if recipe.ensemble is not None:
        from .ensemble import check_supported

        check_supported(recipe, nproc=nproc, launched=launch is not None)
    if recipe.cv is not None and recipe.solver != "knn" and (launch is not None or (nproc or 1) > 1):
        raise TrainingError("cross-validation trains its folds in one process",
                            help="train without --nproc or torchrun, or remove `cv`")
    if recipe.solver == "knn" and (launch is not None or (nproc or 1) > 1):
        raise TrainingError("`solver knn` stores the training split in one process: there is "
                            "nothing to distribute", help="train it without --nproc or torchrun")
    if launch is not None:
        if nproc is not None and nproc != 1:
            raise TrainingError(
                f"--nproc {nproc} inside a launch of {launch.world_size} processes (torchrun)",
                help="let torchrun start the processes (--nproc-per-node N), or drop torchrun and "
                "use --nproc N")
        return _run_launched(launch, loaded, graph, recipe, hash_, base_dir=base_dir, out=out,
                             resume=resume, device=requested, amp=amp, compile=compile,
                             dataset=dataset, progress=progress, stop_after=stop_after, log=log)
    kind = distributed.resolve_device(requested, nproc) if nproc is not None and nproc > 1 else None
    # the data is checked before anything is written: a bad data file leaves no half run
    loaded_data = load_dataset(recipe, base_dir, dataset)
    data = prepare(recipe, graph, loaded_data)
    if recipe.ensemble is not None:  # n members, one after the other: runtime/ensemble.py
        from .ensemble import train_ensemble

        return train_ensemble(loaded, graph, recipe, data, out=out, spec_hash=hash_,
                              device=requested, amp=amp, compile=compile, progress=progress,
                              log=log, resume=resume, stop_after=stop_after)
    cv = None
    if recipe.solver == "knn":  # k by cross-validation, before the IR is written: runtime/knn.py
        graph, cv = knn.cross_validate(loaded, graph, recipe, data, log)
    directory = open_run_directory(loaded, graph, recipe, data, out=out, resume=resume)
    knn.write_cv(directory, cv)
    if recipe.cv is not None and cv is None:  # `cv kfold(n)`: the folds, then the final model
        _cross_validate(loaded, graph, recipe, loaded_data, directory, hash_, requested,
                        resume is not None, log)
    job = Job(graph=graph, recipe=recipe, data=data, directory=directory, spec_hash=hash_,
              device=kind or requested, amp=amp, compile=compile, progress=progress,
              stop_after=stop_after, resume=resume is not None)
    if kind is not None:
        return _run_spawned(job, nproc, kind, log)
    trainer, test, extra = train_rank(None, log, job)
    if recipe.cv is not None and cv is None and extra["finished"]:
        from .cv import append_summary

        extra["cv"] = append_summary(directory)
    return Run(directory=directory, module=trainer.module, history=trainer.history, test=test,
               best_epoch=trainer.best_epoch, recipe=recipe, extra=extra)


def _cross_validate(loaded: Loaded, graph: Graph, recipe: Recipe, dataset: Dataset,
                    directory: Path, spec_hash: str, device: str, resuming: bool,
                    log: Callable[[str], None]) -> None:
    """The folds of `cv kfold(n)` into RUN/folds/, their record in RUN/cv.json; a resumed run
    whose cross-validation finished keeps it."""
    from .cv import CV_FILE, cross_validate, write_cv

    assert recipe.cv is not None
    if resuming and (directory / CV_FILE).is_file():
        return
    log(f"cross-validation: {recipe.cv.folds} folds of the training split")
    result = cross_validate(graph, recipe, dataset, directory, recipe.cv.folds, loaded=loaded,
                            spec_hash=spec_hash, device=device, log=log)
    if result.diverged:
        raise TrainingError(f"cross-validation stopped: {result.diverged}",
                            help="lower the learning rate or clip gradients (`clip norm(1.0)`)"
                            if "the loss became" in result.diverged else None)
    write_cv(directory, result, recipe)
    log(f"cross-validation: {result.line()}; now the final model on the whole training split")


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


def open_run_directory(loaded: Loaded, graph: Graph, recipe: Recipe, data: PreparedData, *,
                       out: Path | None, resume: Path | None) -> Path:
    """The run directory: the one to resume (checked), or a new one with the inputs."""
    if resume is not None:
        directory = resume
        if not (directory / "state.pt").is_file():
            raise TrainingError(f"`{directory}` is not a run directory (no state.pt)",
                                help="give the directory `nnspec train` printed at the start of the run")
    else:
        directory = out if out is not None else new_run_directory(Path("runs"), graph.name)
        if (directory / "state.pt").exists():
            raise TrainingError(f"`{directory}` already holds a run",
                                help=f"continue it with --resume {directory}, or choose another --out")
        directory.mkdir(parents=True, exist_ok=True)
        write_inputs(directory, loaded, graph, recipe)
    if data.normalizer is not None:
        ckpt.write_text(directory / "normalizer.json", json.dumps(data.normalizer) + "\n")
    if data.class_names is not None:
        ckpt.write_text(directory / "classes.json", json.dumps(list(data.class_names)) + "\n")
    return directory


def train_rank(group: distributed.Group | None, log: Callable[[str], None], job: Job,
               ) -> tuple[Trainer, dict[str, Any], dict[str, Any]]:
    """Train in this process (one rank of ``group``, or alone): the trainer, the test
    metrics (empty when the run stopped early by ``stop_after``) and the run's extras."""
    main = group is None or group.main
    say = log if main else _quiet
    recipe = job.recipe
    trainer = Trainer(recipe, job.graph, job.data, job.directory, spec_hash=job.spec_hash,
                      device=job.device, amp=job.amp, compile=job.compile,
                      progress=job.progress and main, log=say, group=group)
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


# -- nnspec train --nproc N: the workers are started here ----------------------------------------
def _spawned_rank(group: distributed.Group, log: Callable[[str], None], job: Job) -> dict[str, Any] | None:
    """A spawned worker's training; rank 0 sends back what the parent's Run needs."""
    trainer, test, extra = train_rank(group, log, job)
    if not group.main:
        return None
    return {"state": distributed.state_bytes(trainer.module), "training": trainer.module.training,
            "history": trainer.history, "test": test, "best_epoch": trainer.best_epoch,
            "extra": extra}


def _run_spawned(job: Job, nproc: int, kind: str, log: Callable[[str], None]) -> Run:
    job.progress = False  # rank 0's lines are printed here; a bar from a worker would garble them
    try:
        results = distributed.spawn(nproc, _spawned_rank, (job,), device=kind, log=log)
    except TrainingError as exc:
        if exc.help is None and (job.directory / "state.pt").is_file():
            exc.help = f"the last checkpoint is kept: continue with --resume {job.directory}"
        raise
    main = results[0]
    module = build_module(job.graph)
    module.load_state_dict(distributed.load_state_bytes(main["state"]))
    module.train(main["training"])
    extra = dict(main["extra"], device="cpu" if kind == "cpu" else "cuda")
    return Run(directory=job.directory, module=module, history=main["history"], test=main["test"],
               best_epoch=main["best_epoch"], recipe=job.recipe, extra=extra)


# -- torchrun: this process is one rank of a launched group ------------------------------------
def _run_launched(launch: distributed.Launch, loaded: Loaded, graph: Graph, recipe: Recipe,
                  hash_: str, *, base_dir: Path | None, out: Path | None, resume: Path | None,
                  device: str, amp: bool, compile: bool, dataset: Dataset | None, progress: bool,
                  stop_after: int | None, log: Callable[[str], None]) -> Run:
    kind = distributed.resolve_device(device, launch.world_size, local_rank=launch.local_rank)
    group = distributed.setup(launch.rank, launch.world_size, launch.local_rank, kind,
                              launcher="torchrun", init_method="env://")
    try:
        # each rank loads and checks the data; any rank's error stops every rank
        data = distributed.agreed(group, lambda: prepare(recipe, graph, load_dataset(recipe, base_dir, dataset)))
        directory = distributed.agreed(
            group, lambda: open_run_directory(loaded, graph, recipe, data, out=out, resume=resume),
            main_only=True)
        job = Job(graph=graph, recipe=recipe, data=data, directory=directory, spec_hash=hash_,
                  device=kind, amp=amp, compile=compile, progress=progress, stop_after=stop_after,
                  resume=resume is not None)
        trainer, test, extra = train_rank(group, log, job)
        return Run(directory=directory, module=trainer.module, history=trainer.history, test=test,
                   best_epoch=trainer.best_epoch, recipe=recipe, extra=extra)
    finally:
        distributed.teardown()
