"""From a spec file to a verification report: the model, its recipe and data, the weights."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .results import Report


def verify_file(
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    recipe: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    checks: Sequence[str] | None = None,
    log: Callable[[str], None] = lambda _line: None,
    **options: Any,
) -> Report:
    """Verify one model of a spec file; see verify/model.py for the checks.

    The model is the file's only one or ``model``. A recipe for it (``recipe`` by name, or
    the file's only recipe for that model) supplies the data, loss, optimizer and
    initialisation; without one, inputs are seeded normal values and the loss fits the
    output. ``weights`` (a run directory or a .safetensors file) replaces the
    initialisation. Raises DiagnosticError (spec), DataError (data) or CheckpointError
    (weights), each with a located message.
    """
    from nnspec.runtime.data.prepare import load_dataset, prepare
    from nnspec.runtime.loop.checkpoint import check_state_dict, find_weights, load_weights
    from nnspec.spec.loader import load_file
    from nnspec.spec.models import elaborate_model
    from nnspec.spec.recipe import elaborate_recipe, find_recipe

    from .model import CHECKS, ModelVerifier, Options

    path = Path(path)
    chosen_recipe = None
    loaded = load_file(path)
    if recipe is None:
        trains = [t for t in loaded.root.trains if model is None or t.model == model]
        if len(trains) == 1:
            recipe = trains[0].name or trains[0].model
    if recipe is not None:
        graph, chosen_recipe, _warnings = elaborate_recipe(loaded, find_recipe(loaded, recipe))
    else:
        graph, _warnings = elaborate_model(loaded, model)
    data = None
    if chosen_recipe is not None:
        dataset = load_dataset(chosen_recipe, path.parent)
        data = prepare(chosen_recipe, graph, dataset)
    state = None
    if weights is not None:
        file, _run = find_weights(weights)
        state, _meta = load_weights(file)
        check_state_dict(graph.state_shapes(), state, file)
    opts = Options(checks=tuple(checks) if checks else CHECKS, **options)
    verifier = ModelVerifier(graph, chosen_recipe, state, data, opts, log)
    return verifier.run()


__all__ = ["verify_file"]
