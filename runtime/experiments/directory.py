"""A run directory: a new one's name, the inputs written into it, opening one to resume,
and the lock that keeps a second training out of it.

The files a run directory holds are listed in run.py and docs/runs.md; which weights are the
run's model is spec/recipe/rundir.py's to say; how a checkpoint is committed,
runtime/loop/checkpoint.py (``commit_generation``, ``recover``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
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



LOCK_FILE = ".lock"


class RunLock:
    """An exclusive ``fcntl.flock`` on RUN/.lock, held for a whole training or search: a
    second one into the same directory is refused. The kernel drops the lock with its
    process, so the file a killed training leaves behind blocks nobody."""

    def __init__(self, directory: Path, *, create: bool = True):
        self.directory, self.create = directory, create
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        import fcntl

        if self.directory.exists() and not self.directory.is_dir():
            raise TrainingError(f"`{self.directory}` is a file, not a run directory",
                                help="give a directory (a new or empty one for a new run)")
        if not self.directory.is_dir():
            if not self.create:
                return self  # nothing to protect: opening it reports that it is no run
            self.directory.mkdir(parents=True)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip()
            os.close(fd)
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise TrainingError(
                f"`{self.directory}` is in use: {who} is training into it (it holds "
                f"`{self.directory / LOCK_FILE}`)",
                help="wait until that training ends, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))  # who holds it, for the message above
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


def check_new_directory(directory: Path, kind: str = "run") -> None:
    """``directory`` is missing or empty (its lock aside); a run directory holding a run, or
    any folder with other files, is refused: a user's files are never written over."""
    if not directory.exists():
        return
    if not directory.is_dir():
        raise TrainingError(f"`{directory}` is a file, not a {kind} directory",
                            help="choose another --out")
    entries = sorted(p.name for p in directory.iterdir() if p.name != LOCK_FILE)
    if not entries:
        return
    if {ckpt.MANIFEST, "state.pt"} & set(entries):
        raise TrainingError(f"`{directory}` already holds a run",
                            help=f"continue it with --resume {directory}, or choose another --out")
    shown = ", ".join(f"`{name}`" for name in entries[:3]) + (", ..." if len(entries) > 3 else "")
    raise TrainingError(
        f"`{directory}` is not empty and is not a {kind} directory (it holds {shown})",
        help=f"nnspec writes a new {kind} only into a new or empty folder: choose another --out")


def start_run_directory(directory: Path, loaded: Loaded, graph: Graph, recipe: Recipe,
                        data: PreparedData, *, trains: bool = True) -> None:
    """A new run directory's inputs, committed as generation 0 (no checkpoint yet): from
    then on it is a run directory that `--resume` accepts. An ensemble's own directory
    (``trains=False``) holds no checkpoint of its own: its members' folders do."""
    directory.mkdir(parents=True, exist_ok=True)
    write_inputs(directory, loaded, graph, recipe)
    write_data_files(directory, data)
    if trains:
        ckpt.commit_generation(directory, 0, 0, [])


def resume_run_directory(directory: Path, log: Callable[[str], None]) -> ckpt.Recovered | None:
    """Recover and verify the committed generation of ``directory`` (see
    ``ckpt.recover``) and say in one line what was found and what was discarded."""
    given = "give the directory `nnspec train` printed at the start of the run"
    if not directory.is_dir():
        raise TrainingError(f"`{directory}` is not a run directory (it does not exist)", help=given)
    if not (directory / ckpt.MANIFEST).is_file() and not (directory / "state.pt").is_file():
        if (directory / "recipe.json").is_file() and (directory / LOCK_FILE).is_file():
            raise TrainingError(
                f"`{directory}` holds no committed generation: its training was stopped while "
                f"it wrote its inputs, before {ckpt.MANIFEST}",
                help=f"nothing was trained there: remove `{directory}` and train again")
        raise TrainingError(f"`{directory}` is not a run directory (no {ckpt.MANIFEST})", help=given)
    recovered = ckpt.recover(directory)
    if recovered is not None:
        log(recovered.line(directory))
    else:
        log(f"resume: `{directory}` has no {ckpt.MANIFEST} (a run of an older nnspec): "
            "its files are checked by their epochs only")
    return recovered


def open_run_directory(loaded: Loaded, graph: Graph, recipe: Recipe, data: PreparedData, *,
                       out: Path | None, resume: Path | None,
                       log: Callable[[str], None] = print, recovered: bool = False,
                       trains: bool = True) -> Path:
    """The run directory: the one to resume (recovered and verified, unless ``recovered``
    says the caller did it), or a new one with the inputs."""
    if resume is not None:
        directory = resume
        if not recovered:
            resume_run_directory(directory, log)
    else:
        directory = out if out is not None else new_run_directory(Path("runs"), graph.name)
        check_new_directory(directory)
        start_run_directory(directory, loaded, graph, recipe, data, trains=trains)
        return directory
    write_data_files(directory, data)
    return directory


def write_data_files(directory: Path, data: PreparedData) -> None:
    if data.normalizer is not None:
        ckpt.write_text(directory / "normalizer.json", json.dumps(data.normalizer) + "\n")
    if data.class_names is not None:
        ckpt.write_text(directory / "classes.json", json.dumps(list(data.class_names)) + "\n")
    if data.vocab is not None:  # text: id k is the k-th character (runtime/inference/generate.py)
        ckpt.write_text(directory / "vocab.json", json.dumps(list(data.vocab)) + "\n")


def fresh_run_directory(directory: Path, loaded: Loaded, graph: Graph, recipe: Recipe,
                        data: PreparedData) -> None:
    """A run directory inside an experiment's own (a fold, a trial, a member) started
    again: what an interrupted attempt left there is the experiment's, so it goes."""
    if directory.exists():
        shutil.rmtree(directory)
    start_run_directory(directory, loaded, graph, recipe, data)
