"""Checkpoints that lose nothing: written atomically (temporary file, fsync, rename).

Weights are safetensors with a JSON sidecar (spec hash, epoch, metrics). The training state
(optimizer moments, RNG states, history) is a torch file of tensors and plain values only,
loaded with ``weights_only=True``: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from nnspec.spec.recipe.rundir import model_weights


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
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    if not path.is_file():
        raise CheckpointError(f"weights file `{path}` does not exist", path)
    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt") as handle:
            meta = dict(handle.metadata() or {})
            for key in handle.keys():
                tensors[key] = handle.get_tensor(key)
        return tensors, meta
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"`{path}` is not a readable safetensors file: {exc}", path,
                              help="the file is corrupt or truncated; use another checkpoint") from None


def check_state_dict(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor],
                     path: Path) -> None:
    """Same names and shapes, or a CheckpointError naming the first mismatch."""
    for name, tensor in expected.items():
        if name not in found:
            raise CheckpointError(f"`{path}` has no tensor `{name}`", path,
                                  help="the weights come from another spec")
        if tuple(found[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"`{name}` in `{path}` has shape {list(found[name].shape)}, the spec needs "
                f"{list(tensor.shape)}", path, help="the weights come from another spec")
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


def save_state(path: Path, state: Mapping[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(dict(state), tmp))


def load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"training state `{path}` does not exist", path,
                              help="resume needs a run directory written by `nnspec train`")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read is a corrupt file to the user
        raise CheckpointError(f"`{path}` is not a readable training state: {type(exc).__name__}",
                              path, help="the file is corrupt or not from nnspec") from None
