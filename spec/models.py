"""Which model of a spec file: the one it defines, or the one asked for by name."""

from __future__ import annotations

from typing import Any

from . import codes
from .diagnostics import Diagnostic, DiagnosticError, error
from .elaborate import DEFAULT_MAX_PARAMS, elaborate
from .ir import Graph
from .loader import Loaded


def model_names(loaded: Loaded) -> list[str]:
    """Models defined in the root file, in order (imported files contribute blocks)."""
    return [d.name for d in loaded.root.definitions if d.kind == "model"]


def elaborate_model(loaded: Loaded, model: str | None = None, args: dict[str, Any] | None = None,
                    *, max_params: int = DEFAULT_MAX_PARAMS) -> tuple[Graph, list[Diagnostic]]:
    """Elaborate ``model`` of ``loaded``, or its only model when ``model`` is None; a file
    with no model or several is a diagnostic that lists them."""
    names = model_names(loaded)
    if model is None:
        if len(names) != 1:
            raise DiagnosticError([error(
                codes.NO_MODEL,
                "the file defines no model" if not names else f"the file defines {len(names)} models",
                None,
                notes=[f"models: {', '.join(names)}"] if names else (),
                help="choose one with model=..." if names else "define one with `model Name { ... }`",
            )], loaded.sources)
        model = names[0]
    return elaborate(loaded, model, args, max_params=max_params)


__all__ = ["elaborate_model", "model_names"]
