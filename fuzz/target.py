"""What one fuzz input is run through: what `nnspec check` does, in-process.

The steps mirror nnspec/cli.py's `_check` (load, elaborate each model, lint, summarise,
check the recipes and searches) and then do what check does with the results: render every
diagnostic and serialise every summary and recipe, since printing is where an unbounded number
used to fail (Python refuses to turn a 4,301-digit integer into a string).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

VALID, LOCATED, UNLOCATED, EXCEPTION, TIMEOUT = "valid", "located", "unlocated", "exception", "timeout"
CLASSES = (VALID, LOCATED, UNLOCATED, EXCEPTION, TIMEOUT)


@dataclass(frozen=True)
class Outcome:
    kind: str  # one of CLASSES
    signature: str  # what makes two failures the same bug: the reducer keeps it unchanged
    detail: str = ""


def check_text(text: str, name: str = "fuzz.nn") -> Outcome:
    """Check ``text`` as `nnspec check` would; exceptions propagate to the caller."""
    from nnspec.spec.diagnostics import DiagnosticError, render_all
    from nnspec.spec.elaborate import Elaborator
    from nnspec.spec.loader import load_text
    from nnspec.spec.models import model_names
    from nnspec.spec.passes.lint import lint
    from nnspec.spec.passes.summary import summarize
    from nnspec.spec.recipe.elaborate import check_recipes

    try:
        loaded = load_text(text, name)
    except DiagnosticError as exc:
        render_all(exc.diagnostics, exc.sources)
        return _classify(exc.diagnostics)
    diags: list[Any] = []
    graphs: dict[str, Any] = {}
    for model in model_names(loaded):
        elaborator = Elaborator(loaded)
        try:
            graph = elaborator.model(model, {})
        except DiagnosticError as exc:
            diags.extend(exc.diagnostics)
            graphs[model] = None
            continue
        graphs[model] = graph
        diags.extend(elaborator.warnings + lint(graph))
        summary = summarize(graph)
        json.dumps(summary.model_dump(mode="json") if hasattr(summary, "model_dump") else repr(summary))
        graph.model_dump_json()
    recipes, recipe_diags = check_recipes(loaded, graphs)
    diags.extend(recipe_diags)
    for recipe in recipes:
        recipe.describe()
        json.dumps(recipe.model_dump(mode="json"))
    if loaded.root.searches:
        from nnspec.spec.search.elaborate import check_searches

        searches, search_diags = check_searches(loaded)
        diags.extend(search_diags)
        for found in searches:
            found.describe()
            json.dumps(found.model_dump(mode="json"))
    render_all(diags, loaded.sources)
    return _classify(diags)


def _classify(diags: Any) -> Outcome:
    unlocated = [d for d in diags if d.span is None]
    if unlocated:
        d = unlocated[0]
        return Outcome(UNLOCATED, f"unlocated {d.code}", d.message[:200])
    errors = [d for d in diags if d.severity == "error"]
    if errors:
        return Outcome(LOCATED, "located", errors[0].code)
    return Outcome(VALID, "valid")


def exception_outcome(exc: BaseException) -> Outcome:
    """An exception's signature: its type and the innermost frame of nnspec that raised it."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/nnspec/" in f.filename or "/spec/" in f.filename] or frames
    where = f"{ours[-1].filename.rsplit('/', 2)[-1]}:{ours[-1].name}" if ours else "?"
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Outcome(EXCEPTION, f"{type(exc).__name__} at {where}", text[-3000:])
