"""A training run: its directory, what is written there, and resume.

    RUN/spec/...       the spec source files, as compiled
    RUN/ir.json        the resolved model IR        RUN/recipe.json  the resolved recipe
    RUN/metrics.jsonl  one line per epoch           RUN/state.pt     optimizer, RNG, history
    RUN/best.safetensors + best.json, RUN/last.safetensors + last.json
    RUN/normalizer.json  statistics of the training split (reused by inference)
    RUN/classes.json   the class names of the data, when it has them (reused by inference)
    RUN/curves.png, RUN/summary.md, RUN/test.json
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nnspec.spec.ir import Graph
from nnspec.spec.loader import Loaded
from nnspec.spec.recipe_ir import Recipe

from . import checkpoint as ckpt
from .data import Dataset
from .prepare import load_dataset, prepare
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
    log: Callable[[str], None] = print,
) -> Run:
    """Train ``graph`` by ``recipe``; write everything into a run directory."""
    hash_ = spec_hash(loaded)
    # the data is checked before anything is written: a bad data file leaves no half run
    data = prepare(recipe, graph, load_dataset(recipe, base_dir, dataset))
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
    trainer = Trainer(recipe, graph, data, directory, spec_hash=hash_, device=device or recipe.device,
                      amp=amp, compile=compile, progress=progress, log=log)
    if resume is not None:
        trainer.resume(directory)
        log(f"resuming {directory} after epoch {trainer.start_epoch}")
    else:
        log(f"run directory: {directory}")
    began = time.perf_counter()
    trainer.fit(stop_after=stop_after)
    fit_seconds = time.perf_counter() - began
    finished = len(trainer.history) >= recipe.epochs or (
        recipe.early_stop is not None and trainer.stale >= recipe.early_stop.patience)
    test: dict[str, Any] = trainer.finish() if finished else {}
    return Run(directory=directory, module=trainer.module, history=trainer.history, test=test,
               best_epoch=trainer.best_epoch, recipe=recipe,
               extra={"finished": finished, "device": str(trainer.device), "fit_seconds": fit_seconds,
                      "epochs_this_call": len(trainer.history) - trainer.start_epoch})
