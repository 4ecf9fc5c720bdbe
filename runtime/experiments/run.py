"""A training run: its directory, what is written there, and resume.

    RUN/spec/...       the spec source files, as compiled
    RUN/ir.json        the resolved model IR        RUN/recipe.json  the resolved recipe
    RUN/metrics.jsonl  one line per epoch           RUN/state.pt     optimizer, RNG, history
    RUN/best.safetensors + best.json, RUN/last.safetensors + last.json
    RUN/manifest.json  the committed generation: the checkpoint's files, sizes, sha256
    RUN/.lock          held (flock) by the training writing into RUN (docs/runs.md)
    RUN/normalizer.json  statistics of the training split (reused by inference)
    RUN/classes.json   the class names of the data, when it has them (reused by inference)
    RUN/curves.png, RUN/summary.md, RUN/test.json
    RUN/solver.json    `solver normal_equation`: θ in float64, rank and condition of [1 X]
    RUN/cv.json, RUN/knn.json  `solver knn`: each k's cross-validation accuracies, what was stored
    RUN/cv.json, RUN/folds/<f>/  `cv kfold(n)`: every fold's validation metrics and their mean ±
                       std (runtime/experiments/cv.py), each fold a run directory; then the final model
    RUN/distributed.json  with many processes: their number, backend, batch per process, and a
                          checksum of every rank's final parameters ("ranks_equal")
    RUN/members/<k>/, RUN/ensemble.json  `ensemble n`: a run directory per member (runtime/experiments/ensemble.py);
                       resumed and stopped (stop_after) like one run, in one process only
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nnspec.compiler.torch_build import build_module
from nnspec.runtime.data.prepare import load_dataset, prepare
from nnspec.runtime.data.sources import Dataset
from nnspec.runtime.experiments import distributed, knn
from nnspec.runtime.experiments.directory import RunLock, new_run_directory, open_run_directory
from nnspec.runtime.experiments.rank import Job, train_rank
from nnspec.runtime.loop.trainer import Run, TrainingError
from nnspec.spec.ir import Graph
from nnspec.spec.loader import Loaded
from nnspec.spec.recipe.ir import Recipe


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
    hash_ = loaded.spec_hash()
    if nproc is not None and nproc < 1:
        raise TrainingError(f"the number of processes must be at least 1, got {nproc}",
                            help="--nproc 1 (the default) trains in this process")
    launch = distributed.from_environment()
    requested = device or recipe.device
    if recipe.ensemble is not None:
        from nnspec.runtime.experiments.ensemble import check_supported

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
    if resume is None and out is None:
        out = new_run_directory(Path("runs"), graph.name)
    # one training at a time writes into a run directory, for the whole of it
    with RunLock(resume if resume is not None else out, create=resume is None):
        return _run_here(loaded, graph, recipe, data, loaded_data, hash_, out=out, resume=resume,
                         requested=requested, kind=kind, nproc=nproc, amp=amp, compile=compile,
                         progress=progress, stop_after=stop_after, log=log)


def _run_here(loaded: Loaded, graph: Graph, recipe: Recipe, data: Any, loaded_data: Dataset,
              hash_: str, *, out: Path | None, resume: Path | None, requested: str,
              kind: str | None, nproc: int | None, amp: bool, compile: bool, progress: bool,
              stop_after: int | None, log: Callable[[str], None]) -> Run:
    if recipe.ensemble is not None:  # n members, one after the other: runtime/experiments/ensemble.py
        from nnspec.runtime.experiments.ensemble import train_ensemble

        return train_ensemble(loaded, graph, recipe, data, out=out, spec_hash=hash_,
                              device=requested, amp=amp, compile=compile, progress=progress,
                              log=log, resume=resume, stop_after=stop_after)
    cv = None
    if recipe.solver == "knn":  # k by cross-validation, before the IR is written: runtime/experiments/knn.py
        graph, cv = knn.cross_validate(loaded, graph, recipe, data, log)
    directory = open_run_directory(loaded, graph, recipe, data, out=out, resume=resume, log=log)
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
        from nnspec.runtime.experiments.cv import append_summary

        extra["cv"] = append_summary(directory)
    return Run(directory=directory, module=trainer.module, history=trainer.history, test=test,
               best_epoch=trainer.best_epoch, recipe=recipe, extra=extra)


def _cross_validate(loaded: Loaded, graph: Graph, recipe: Recipe, dataset: Dataset,
                    directory: Path, spec_hash: str, device: str, resuming: bool,
                    log: Callable[[str], None]) -> None:
    """The folds of `cv kfold(n)` into RUN/folds/, their record in RUN/cv.json; a resumed run
    whose cross-validation finished keeps it."""
    from nnspec.runtime.experiments.cv import CV_FILE, cross_validate, write_cv

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
    lock: RunLock | None = None
    try:
        # each rank loads and checks the data; any rank's error stops every rank
        data = distributed.agreed(group, lambda: prepare(recipe, graph, load_dataset(recipe, base_dir, dataset)))
        if group.main and resume is None and out is None:
            out = new_run_directory(Path("runs"), graph.name)
        if group.main:  # rank 0 alone writes
            lock = RunLock(resume if resume is not None else out, create=resume is None)
        directory = distributed.agreed(
            group, lambda: _locked_open(lock, lambda: open_run_directory(
                loaded, graph, recipe, data, out=out, resume=resume, log=log)), main_only=True)
        job = Job(graph=graph, recipe=recipe, data=data, directory=directory, spec_hash=hash_,
                  device=kind, amp=amp, compile=compile, progress=progress, stop_after=stop_after,
                  resume=resume is not None)
        trainer, test, extra = train_rank(group, log, job)
        return Run(directory=directory, module=trainer.module, history=trainer.history, test=test,
                   best_epoch=trainer.best_epoch, recipe=recipe, extra=extra)
    finally:
        if lock is not None:
            lock.__exit__()
        distributed.teardown()


def _locked_open(lock: RunLock | None, open_: Callable[[], Path]) -> Path:
    """Take rank 0's lock, then open the directory (the lock is released by the caller)."""
    if lock is not None:
        lock.__enter__()
    return open_()
