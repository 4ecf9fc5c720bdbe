"""Checkpoints that lose nothing: written atomically (temporary file, fsync, rename), and
committed as one generation (the protocol below; docs/runs.md).

Weights are safetensors with a JSON sidecar (spec hash, epoch, metrics). The training state
(optimizer moments, RNG states, history) is a torch file of tensors and plain values only,
loaded with ``weights_only=True``: nothing is ever unpickled.

torch is imported by the functions that need it: exporting a run (``load_arrays``, the
checks, which weights files a run holds) reads the same files without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnspec.spec.recipe.rundir import ENSEMBLE_FILE, model_weights

if TYPE_CHECKING:
    import numpy as np
    import torch


class CheckpointError(Exception):
    """A weights or state file is missing, corrupt, or belongs to another spec."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None, help: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = os.fspath(path) if path is not None else None
        self.help = help


def atomic_write(path: Path, write: Callable[[Path], None], pause: str | None = None) -> None:
    """Write through ``write(tmp)``, fsync, then rename over ``path`` (never half a file).
    ``pause`` names this write for the crash tests' hook (``pause_point``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        if pause is not None:
            pause_point(pause)  # the file is written but neither synced nor in place
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is an ordinary file
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_directory(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def fsync_directory(directory: Path) -> None:
    """A rename is durable only once its directory is synced."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


PAUSE_VARIABLE = "NNSPEC_TEST_PAUSE_AT"
PAUSED_MARKER = "NNSPEC_PAUSED"


def pause_point(point: str) -> None:
    """The crash tests' hook: with NNSPEC_TEST_PAUSE_AT=<suffix>:<generation> set, the
    writer whose point (``<run dir>/<file>:<generation>``) ends with it prints a marker on
    stderr and sleeps, so that a test can SIGKILL the process exactly there. Unset (always,
    outside the tests) it costs one environment look-up."""
    wanted = os.environ.get(PAUSE_VARIABLE)
    if not wanted or not point.endswith(wanted):
        return
    cut = len(point) - len(wanted)
    if cut > 0 and point[cut - 1] not in "/\\":  # whole names only: `t.json` is no `last.json`
        return
    sys.stderr.write(f"{PAUSED_MARKER} {wanted}\n")
    sys.stderr.flush()
    time.sleep(600)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str, pause: str | None = None) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), pause=pause)


def save_weights(path: Path, state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """``path``.safetensors plus ``path``.json; the safetensors header carries the meta too."""
    for suffix, write in weights_writers(state, meta):
        atomic_write(path.with_suffix(suffix), write)


def weights_writers(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any],
                    ) -> list[tuple[str, Callable[[Path], None]]]:
    """(suffix, writer) of the safetensors file and its JSON sidecar."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    header = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in meta.items()}
    sidecar = json.dumps(dict(meta), indent=2) + "\n"
    return [(".safetensors", lambda tmp: save_file(tensors, str(tmp), metadata=header)),
            (".json", lambda tmp: tmp.write_text(sidecar, encoding="utf-8"))]


def state_writer(state: Mapping[str, Any]) -> Callable[[Path], None]:
    import torch

    return lambda tmp: torch.save(dict(state), tmp)


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a safetensors file and its header's metadata."""
    return _read_safetensors(path, "pt")


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """As ``load_weights``, as numpy arrays (no torch: an export reads weights this way)."""
    return _read_safetensors(path, "numpy")


def _read_safetensors(path: Path, framework: str) -> tuple[dict[str, Any], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CheckpointError(f"weights file `{path}` does not exist", path)
    try:
        tensors: dict[str, Any] = {}
        with safe_open(str(path), framework=framework) as handle:
            meta = dict(handle.metadata() or {})
            for key in handle.keys():
                tensors[key] = handle.get_tensor(key)
        return tensors, meta
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"`{path}` is not a readable safetensors file: {exc}", path,
                              help="the file is corrupt or truncated; use another checkpoint") from None


def check_state_dict(expected: Mapping[str, Any], found: Mapping[str, Any], path: Path) -> None:
    """Same names and shapes, or a CheckpointError naming the first mismatch. ``expected``
    holds tensors (a module's state_dict) or shapes (``Graph.state_shapes()``); ``found``
    tensors or arrays."""
    for name, tensor in expected.items():
        if name not in found:
            raise CheckpointError(f"`{path}` has no tensor `{name}`", path,
                                  help="the weights come from another spec")
        shape = tuple(getattr(tensor, "shape", tensor))
        if tuple(found[name].shape) != shape:
            raise CheckpointError(
                f"`{name}` in `{path}` has shape {list(found[name].shape)}, the spec needs "
                f"{list(shape)}", path, help="the weights come from another spec")
    extra = sorted(set(found) - set(expected))
    if extra:
        raise CheckpointError(f"`{path}` has a tensor `{extra[0]}` the spec does not define", path,
                              help="the weights come from another spec")


def find_weights(source: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """(the weights file, the run directory it belongs to, if any) of a run directory (the
    weights its test report describes: spec/recipe/rundir.py) or a .safetensors file."""
    path = Path(source)
    if path.is_dir():
        weights = model_weights(path)
        if not weights.is_file():
            raise CheckpointError(f"`{path}` is not a run directory (it has no {weights.name})",
                                  path, help="give the directory `nnspec train` wrote, or a "
                                  ".safetensors file")
        return weights, path
    if not path.exists():
        raise CheckpointError(f"weights `{path}` do not exist", path,
                              help="give a run directory or a .safetensors file")
    return path, path.parent if (path.parent / "recipe.json").is_file() else None


def ensemble_weights(run: Path) -> list[Path] | None:
    """The members' weights (spec/recipe/rundir.py) of an ensemble run directory, in member
    order; None when ``run`` is no ensemble run."""
    record = run / ENSEMBLE_FILE
    if not record.is_file():
        return None
    try:
        members = int(json.loads(record.read_text(encoding="utf-8"))["members"])
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"`{record}` is not an ensemble record", record,
                              help="train the ensemble again") from None
    paths = [model_weights(run / "members" / str(k)) for k in range(members)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise CheckpointError(f"the ensemble in `{run}` lacks `{missing[0]}`", missing[0],
                              help="the run was interrupted: train the ensemble again")
    return paths


def save_state(path: Path, state: Mapping[str, Any]) -> None:
    atomic_write(path, state_writer(state))


def load_state(path: Path) -> dict[str, Any]:
    import torch

    if not path.is_file():
        raise CheckpointError(f"training state `{path}` does not exist", path,
                              help="resume needs a run directory written by `nnspec train`")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read is a corrupt file to the user
        raise CheckpointError(f"`{path}` is not a readable training state: {type(exc).__name__}",
                              path, help="the file is corrupt or not from nnspec") from None


# -- generations: the files of one checkpoint, committed together (docs/runs.md) -----------------
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
GENERATION_FILES = ("last.safetensors", "last.json", "best.safetensors", "best.json",
                    "metrics.jsonl", "state.pt")
_STAGE = re.compile(r"^\.generation-(\d+)$")


def stage_directory(directory: Path, generation: int) -> Path:
    return directory / f".generation-{generation}"


def file_entry(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def _matches(path: Path, entry: Mapping[str, Any]) -> bool:
    # the size first: a truncated file is told without reading it
    return path.is_file() and path.stat().st_size == entry["size"] and \
        file_entry(path)["sha256"] == entry["sha256"]


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The committed generation of ``directory`` (None when it has no manifest.json)."""
    path = directory / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        ok = (manifest["format"] == MANIFEST_FORMAT and isinstance(manifest["generation"], int)
              and isinstance(manifest["epoch"], int) and isinstance(manifest["files"], dict)
              and all(isinstance(e["size"], int) and isinstance(e["sha256"], str)
                      for e in manifest["files"].values()))
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise CheckpointError(f"`{path}` is not a readable manifest", path,
                              help="the file is damaged or not from nnspec: start a new run")
    return manifest


def next_generation(directory: Path) -> int:
    """One past the committed generation; 1 without a manifest (0 is a new run's inputs)."""
    manifest = read_manifest(directory)
    return manifest["generation"] + 1 if manifest is not None else 1


def commit_generation(directory: Path, generation: int, epoch: int,
                      writes: list[tuple[str, Callable[[Path], None]]],
                      summary: Mapping[str, Any] | None = None) -> None:
    """Stage, commit, install: the protocol that makes a checkpoint's files one unit.

    1. Each file is written (atomically, fsync'd) into RUN/.generation-<g>/; the files of the
       committed generation stay untouched in RUN/.
    2. manifest.json (generation, epoch, and the size and sha256 of every file of the
       generation, the ones not rewritten carried over) replaces the old one atomically and
       is fsync'd with its directory: the commit point.
    3. The staged files are renamed into RUN/ and the stage removed.
    A crash before 2 leaves the previous generation whole (the stage is discarded on
    resume); after 2, ``recover`` finishes the renames from the stage.
    """
    previous = read_manifest(directory)
    carried: dict[str, Any] = dict(previous["files"]) if previous is not None else {
        name: file_entry(directory / name) for name in GENERATION_FILES
        if (directory / name).is_file()}  # an older run's files, or a Trainer's own folder
    stage = stage_directory(directory, generation)
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    entries: dict[str, Any] = {}
    for name, write in writes:
        atomic_write(stage / name, write, pause=f"{directory / name}:{generation}")
        entries[name] = file_entry(stage / name)
    fsync_directory(stage)
    manifest = {"format": MANIFEST_FORMAT, "generation": generation, "epoch": epoch,
                "files": {**carried, **entries}}
    if summary is not None:
        manifest["summary"] = dict(summary)
    write_text(directory / MANIFEST, json.dumps(manifest, indent=2) + "\n",
               pause=f"{directory / MANIFEST}:{generation}")
    for name in entries:
        pause_point(f"{directory / ('install-' + name)}:{generation}")
        os.replace(stage / name, directory / name)
    fsync_directory(directory)
    shutil.rmtree(stage)


class Recovered:
    """What ``recover`` found: the committed generation, what it finished, what it dropped."""

    def __init__(self, manifest: dict[str, Any], installed: list[str], discarded: list[str]):
        self.generation: int = manifest["generation"]
        self.epoch: int = manifest["epoch"]
        self.files: dict[str, Any] = manifest["files"]
        self.installed, self.discarded = installed, discarded

    def line(self, directory: Path) -> str:
        """The one line a resume prints about the directory."""
        found = (f"generation {self.generation} (epoch {self.epoch}) is complete: "
                 f"{len(self.files)} file{'' if len(self.files) == 1 else 's'} verified by sha256"
                 if self.files else f"generation {self.generation} holds no checkpoint yet "
                 "(the run stopped in its first epoch): training starts from epoch 1")
        if self.installed:
            found += f", {len(self.installed)} put in place from its stage ({', '.join(self.installed)})"
        dropped = "; discarded " + "; ".join(self.discarded) if self.discarded else "; nothing discarded"
        return f"resume: `{directory}`: {found}{dropped}"


def recover(directory: Path) -> Recovered | None:
    """Make ``directory`` its committed generation again, or a CheckpointError naming the
    files that cannot be made so. Stages of a later, uncommitted generation and temporary
    files of interrupted writes are removed; the committed generation's staged files are
    put in place. None when there is no manifest (a run of an older nnspec)."""
    manifest = read_manifest(directory)
    installed: list[str] = []
    discarded: list[str] = []
    stages = sorted((int(m.group(1)), p) for p in directory.iterdir()
                    if (m := _STAGE.match(p.name)) is not None and p.is_dir())
    for generation, stage in stages:
        if manifest is not None and generation == manifest["generation"]:
            for name, entry in manifest["files"].items():
                staged = stage / name
                if staged.is_file() and not _matches(directory / name, entry) and _matches(staged, entry):
                    os.replace(staged, directory / name)
                    installed.append(name)
            fsync_directory(directory)
        elif manifest is None or generation > manifest["generation"]:
            names = sorted(p.name for p in stage.iterdir() if not p.name.startswith("."))
            written = ", ".join(names) if names else "no file finished"
            discarded.append(f"generation {generation}, uncommitted ({written})")
        shutil.rmtree(stage)
    for path in directory.iterdir():  # an atomic write cut short leaves its temporary file
        if path.is_file() and path.name.startswith(".") and path.name.endswith(".tmp"):
            path.unlink()
    if manifest is None:
        return None
    problems = []
    for name, entry in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            problems.append((name, "is missing"))
        elif not _matches(path, entry):
            problems.append((name, "differs from it (size or sha256)"))
    if problems:
        listed = "; ".join(f"`{name}` {why}" for name, why in problems)
        raise CheckpointError(
            f"`{directory}` cannot be resumed: its manifest.json commits generation "
            f"{manifest['generation']} (epoch {manifest['epoch']}), and {listed}",
            directory / problems[0][0],
            help="the files were changed or damaged after the run wrote them: start a new run "
            "(another --out)")
    return Recovered(manifest, installed, discarded)


def check_epochs(directory: Path, state: Mapping[str, Any]) -> None:
    """The epoch of the training state agrees with the weights' sidecars, metrics.jsonl and
    the manifest; else a CheckpointError naming the files that disagree."""
    epoch = int(state["epoch"])
    found: dict[str, Any] = {"state.pt": epoch}
    manifest = read_manifest(directory)
    if manifest is not None:
        found[MANIFEST] = manifest["epoch"]
    history = state.get("history")
    for name in ("last.json", "best.json"):
        try:
            found[name] = int(json.loads((directory / name).read_text(encoding="utf-8"))["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            found[name] = "unreadable"
    best_epoch = int(state.get("best_epoch") or 0)
    wanted = {"state.pt": epoch, MANIFEST: epoch, "last.json": epoch,
              "best.json": best_epoch if best_epoch else found["best.json"]}
    try:
        lines = (directory / "metrics.jsonl").read_text(encoding="utf-8")
        rows = [json.loads(line) for line in lines.splitlines()]
        found["metrics.jsonl"] = int(rows[-1]["epoch"]) if rows else 0
        if len(rows) != found["metrics.jsonl"] or (
                isinstance(history, str) and json.loads(history) != rows):
            found["metrics.jsonl"] = f"{len(rows)} lines that are not the state's history"
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        found["metrics.jsonl"] = "unreadable"
    wanted["metrics.jsonl"] = epoch
    wrong = [name for name in found if found[name] != wanted[name]]
    if isinstance(found["best.json"], int) and found["best.json"] > epoch and "best.json" not in wrong:
        wrong.append("best.json")
    if wrong:
        shown = ", ".join(f"{name}: {found[name]}" for name in found)
        raise CheckpointError(
            f"`{directory}` cannot be resumed: the epochs of its files disagree ({shown}); "
            f"{', '.join(f'`{n}`' for n in wrong)} {'does' if len(wrong) == 1 else 'do'} not "
            f"belong to the state's epoch {epoch}", directory / wrong[0],
            help="the run was interrupted while its checkpoint was written by an nnspec without "
            "manifests, or the files were changed: start a new run (another --out)")
