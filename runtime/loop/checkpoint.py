"""Checkpoints that lose nothing: written atomically (temporary file, fsync, rename).

Weights are safetensors with a JSON sidecar (spec hash, epoch, metrics). The training state
(optimizer moments, RNG states, history) is a torch file of tensors and plain values only,
loaded with ``weights_only=True``: nothing is ever unpickled.

torch is imported by the functions that need it: exporting a run (``load_arrays``, the
checks, which weights files a run holds) reads the same files without it.
"""

from __future__ import annotations

import json
import os
import tempfile
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


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(tmp)``, fsync, then rename over ``path`` (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is an ordinary file
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_weights(path: Path, state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """``path``.safetensors plus ``path``.json; the safetensors header carries the meta too."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    header = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in meta.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    write_text(path.with_suffix(".json"), json.dumps(dict(meta), indent=2) + "\n")


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
    import torch

    atomic_write(path, lambda tmp: torch.save(dict(state), tmp))


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
