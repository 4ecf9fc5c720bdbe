"""A run directory: a new one's name, the inputs written into it, and opening one to resume.

The files a run directory holds are listed in run.py; which weights are the run's model is
spec/recipe/rundir.py's to say.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from nnspec.runtime.data.prepare import PreparedData
from nnspec.runtime.loop import checkpoint as ckpt
from nnspec.runtime.loop.trainer import TrainingError
from nnspec.spec.ir import Graph
from nnspec.spec.loader import Loaded
from nnspec.spec.recipe.ir import Recipe


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
    if data.vocab is not None:  # text: id k is the k-th character (runtime/inference/generate.py)
        ckpt.write_text(directory / "vocab.json", json.dumps(list(data.vocab)) + "\n")
    return directory
