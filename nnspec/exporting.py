"""`nnspec.export(...)`: a spec's model with trained (or initial) weights -> an ONNX file.

Weights come from a run directory (its ``best.safetensors``), a ``.safetensors`` file, a
state_dict, or torch's default initialisation. They are checked against the spec (names
and shapes: a :class:`CheckpointError` names the first mismatch) before anything is built.
An export from a run carries what inference needs in the model's metadata: the task, the
class names and the input normaliser of the training split.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnspec.api import Model, load, model_names, onnx_model, onnx_parts, open_spec
from nnspec.runtime.loop.checkpoint import (
    atomic_write,
    check_state_dict,
    ensemble_weights,
    find_weights,
    load_arrays,
)
from nnspec.spec.recipe.ir import CLASSIFICATION_LOSSES

if TYPE_CHECKING:
    import onnx

    from nnspec.compiler.onnx_build import OnnxFile


@dataclass
class Exported:
    """What `export` wrote: the file, the model built, and the run the weights came from."""

    path: Path
    built: OnnxFile  # the skeleton and the weights that were streamed to ``path``
    run: Path | None
    weights: Path | None

    @cached_property
    def model(self) -> onnx.ModelProto:
        """The whole ModelProto, the weights included (put together on first use)."""
        return self.built.model(check=False)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_metadata(run: Path) -> dict[str, Any]:
    """task, classes and normalizer of a training run, as far as the run recorded them."""
    meta: dict[str, Any] = {}
    recipe = _read_json(run / "recipe.json")
    if isinstance(recipe, dict) and "loss" in recipe:
        labels = recipe.get("target", "labels") == "labels"
        meta["task"] = "classification" if recipe["loss"] in CLASSIFICATION_LOSSES and labels \
            else "regression"
    classes = _read_json(run / "classes.json")
    if isinstance(classes, list):
        meta["classes"] = [str(c) for c in classes]
    normalizer = _read_json(run / "normalizer.json")
    if isinstance(normalizer, dict):
        meta["normalizer"] = normalizer
    return meta


def export(
    spec: str | os.PathLike[str],
    weights: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    *,
    model: str | None = None,
    args: dict[str, Any] | None = None,
    fold_bn: bool = False,
    log: Callable[[str], None] = print,
) -> Exported:
    """Write ``out`` (.onnx): the model of ``spec`` with the weights of a run directory or a
    .safetensors file (None: initial weights, seed 0). From a run, the model is elaborated
    with the run's arguments unless ``args`` are given, and its metadata carries the task,
    class names and normaliser. Raises DiagnosticError (spec) or CheckpointError (weights)."""
    members = ensemble_weights(Path(weights)) if weights is not None and Path(weights).is_dir() \
        else None
    if members is not None:  # an ensemble run: every member in one graph
        file, run = None, Path(weights)
    else:
        file, run = find_weights(weights) if weights is not None else (None, None)
    metadata: dict[str, Any] = run_metadata(run) if run is not None else {}
    trained = _read_json(run / "ir.json") if run is not None else None
    if isinstance(trained, dict) and trained.get("name") in model_names(open_spec(spec)):
        model = model or trained["name"]  # the run's model, when the spec defines it
        if args is None and trained["name"] == model and isinstance(trained.get("args"), dict):
            args = trained["args"]  # the arguments it was trained with
    compiled = load(spec, model, args)
    tensors: Mapping[str, Any] | None = None
    header: dict[str, str] = {}
    if members is not None:
        built, header = _ensemble_model(compiled, members, fold_bn=fold_bn, metadata=metadata)
    else:
        if file is not None:
            tensors, header = load_arrays(file)
        built = onnx_parts(compiled, tensors, fold_bn=fold_bn, metadata=metadata, source=file)
    trained_hash = header.get("spec_sha256")
    if trained_hash and trained_hash != compiled.loaded.spec_hash():
        log(f"warning: `{file or run}` was trained from another version of the spec (its hash "
            "differs); the names and shapes agree")
    path = Path(out)
    built.check()
    atomic_write(path, lambda tmp: built.write(tmp, check=False))
    return Exported(path=path, built=built, run=run, weights=file or run)


def _ensemble_model(model: Model, members: list[Path], *, fold_bn: bool,
                    metadata: dict[str, Any]) -> tuple[OnnxFile, dict[str, str]]:
    """The ONNX model of an ensemble run (compiler/onnx_build.py build_ensemble_onnx), each
    member's weights checked against the spec; and the first member's header."""
    from nnspec.compiler.onnx_build import ensemble_onnx_file
    expected = model.graph.state_shapes()
    weights, headers = [], []
    for path in members:
        tensors, header = load_arrays(path)
        check_state_dict(expected, tensors, path)
        weights.append(tensors)
        headers.append(header)
    props = {"spec_sha256": model.loaded.spec_hash(), **metadata}
    built = ensemble_onnx_file(model.graph, weights, task=metadata.get("task"), fold_bn=fold_bn,
                               metadata=props)
    return built, headers[0]


__all__ = ["Exported", "export", "find_weights", "onnx_model", "run_metadata"]
