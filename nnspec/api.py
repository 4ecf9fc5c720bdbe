"""The public face: load a spec, get its IR and summary, its torch and ONNX models."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnspec.spec.diagnostics import Diagnostic
from nnspec.spec.elaborate import DEFAULT_MAX_PARAMS
from nnspec.spec.ir import Graph, Program, SourceInfo
from nnspec.spec.loader import Loaded, load_file, load_text
from nnspec.spec.models import elaborate_model, model_names
from nnspec.spec.passes.summary import Summary, summarize
from nnspec.spec.recipe.elaborate import elaborate_recipe, find_recipe
from nnspec.spec.recipe.ir import Recipe


@dataclass
class Model:
    """One elaborated model of a spec file."""

    graph: Graph
    loaded: Loaded
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.graph.name

    def summary(self) -> Summary:
        return summarize(self.graph)

    def program(self) -> Program:
        sources = tuple(SourceInfo(file=f, sha256=h) for f, h in self.loaded.hashes.items())
        return Program(sources=sources, models={self.graph.name: self.graph})

    def ir_json(self, indent: int | None = 2) -> str:
        return self.program().model_dump_json(indent=indent)

    def to_onnx(self, weights: Any = None, *, fold_bn: bool = False,
                metadata: dict[str, Any] | None = None, seed: int = 0) -> Any:
        """The ONNX ModelProto (opset 21) with ``weights``: a state_dict or {name: array}, a
        .safetensors path, or None for torch's default initialisation under ``seed``.
        Raises CheckpointError when the weights' names or shapes differ from the spec's."""
        return onnx_model(self, weights, fold_bn=fold_bn, metadata=metadata, seed=seed)


Weights = Mapping[str, Any] | str | os.PathLike[str] | None


def onnx_model(model: Model, weights: Weights = None, *, fold_bn: bool = False,
               metadata: Mapping[str, Any] | None = None, seed: int = 0,
               source: Path | None = None) -> Any:
    """The ONNX model of ``model`` with ``weights``: a state_dict or {name: array}, a
    .safetensors file, or None for torch's default initialisation under ``seed``.
    ``source`` names the weights in error messages. torch is imported only to initialise:
    trained weights are read and checked as numpy arrays against the IR's state shapes."""
    return onnx_parts(model, weights, fold_bn=fold_bn, metadata=metadata, seed=seed,
                      source=source).model()


def onnx_parts(model: Model, weights: Weights = None, *, fold_bn: bool = False,
               metadata: Mapping[str, Any] | None = None, seed: int = 0,
               source: Path | None = None) -> Any:
    """As `onnx_model`, the skeleton and the weights apart (compiler/onnx_build.OnnxFile):
    what writing a file streams without copying the weights."""
    from nnspec.compiler.onnx_build import onnx_file
    from nnspec.runtime.loop.checkpoint import check_state_dict, load_arrays

    where = source or Path("<weights>")
    if weights is None:
        from nnspec.compiler.torch_build import initial_weights

        tensors: Mapping[str, Any] = initial_weights(model.graph, seed)
    elif isinstance(weights, (str, os.PathLike)):
        where = Path(weights)
        tensors, _ = load_arrays(where)
    else:
        tensors = weights
    check_state_dict(model.graph.state_shapes(), tensors, where)
    props = {"spec_sha256": model.loaded.spec_hash(), **(metadata or {})}
    return onnx_file(model.graph, tensors, fold_bn=fold_bn, metadata=props)


def open_spec(path: str | os.PathLike[str] | None = None, *, text: str | None = None,
              name: str = "<string>") -> Loaded:
    if text is not None:
        return load_text(text, name)
    assert path is not None
    return load_file(path)


def load(
    path: str | os.PathLike[str] | None = None,
    model: str | None = None,
    args: dict[str, Any] | None = None,
    *,
    text: str | None = None,
    max_params: int = DEFAULT_MAX_PARAMS,
) -> Model:
    """Parse and elaborate one model of a spec file (or of ``text``).

    Raises :class:`DiagnosticError` (render it with ``.render()``) when the spec is invalid.
    """
    loaded = open_spec(path, text=text)
    graph, warnings = elaborate_model(loaded, model, args, max_params=max_params)
    return Model(graph, loaded, warnings)


def load_recipe(
    path: str | os.PathLike[str] | None = None,
    name: str | None = None,
    *,
    text: str | None = None,
    max_params: int = DEFAULT_MAX_PARAMS,
) -> tuple[Model, Recipe]:
    """Parse a spec file (or ``text``) and check one `train` recipe against its model.

    ``name`` is the recipe's name (`train Model as name`, else the model's name); it may be
    left out when the file has one recipe. The model is elaborated with the recipe's
    arguments; ``Model.warnings`` holds the model's and the recipe's warnings. Raises
    :class:`DiagnosticError` when the spec or the recipe is invalid.
    """
    loaded = open_spec(path, text=text)
    train = find_recipe(loaded, name)
    graph, recipe, warnings = elaborate_recipe(loaded, train, max_params=max_params)
    return Model(graph, loaded, warnings), recipe


__all__ = ["Model", "Weights", "load", "load_recipe", "model_names", "onnx_model", "onnx_parts", "open_spec"]
