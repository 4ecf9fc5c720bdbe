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
    from nnspec.api import load, load_recipe, open_spec
    from nnspec.exporting import expected_state, find_weights
    from nnspec.runtime.checkpoint import check_state_dict, load_weights
    from nnspec.runtime.prepare import load_dataset, prepare

    from .model import CHECKS, ModelVerifier, Options

    path = Path(path)
    chosen_recipe = None
    if recipe is None:
        loaded = open_spec(path)
        trains = [t for t in loaded.root.trains if model is None or t.model == model]
        if len(trains) == 1:
            recipe = trains[0].name or trains[0].model
    if recipe is not None:
        spec, chosen_recipe = load_recipe(path, recipe)
    else:
        spec = load(path, model)
    data = None
    if chosen_recipe is not None:
        dataset = load_dataset(chosen_recipe, path.parent)
        data = prepare(chosen_recipe, spec.graph, dataset)
    state = None
    if weights is not None:
        file, _run = find_weights(weights)
        state, _meta = load_weights(file)
        check_state_dict(expected_state(spec.graph), state, file)
    opts = Options(checks=tuple(checks) if checks else CHECKS, **options)
    verifier = ModelVerifier(spec.graph, chosen_recipe, state, data, opts, log)
    return verifier.run()


__all__ = ["verify_file"]
