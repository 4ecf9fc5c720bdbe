"""Train recipes: a `train` block -> a checked, complete :class:`Recipe` (spec/recipe/ir.py).

Every setting is read on its own and every error is collected (spec/recipe/builder.py); the
settings are then checked against each other, against the data known at compile time and
against the model's graph (spec/recipe/checks.py). A setting that failed is POISON and the
checks that need it stay silent, so one mistake gives one error. What each setting accepts
is in spec/recipe/tables.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nnspec.spec import ast, codes
from nnspec.spec.diagnostics import Diagnostic, DiagnosticError, error
from nnspec.spec.elaborate import DEFAULT_MAX_PARAMS, Elaborator
from nnspec.spec.ir import Graph
from nnspec.spec.loader import Loaded
from nnspec.spec.passes.lint import lint
from nnspec.spec.recipe.builder import RecipeBuilder
from nnspec.spec.recipe.ir import Recipe
from nnspec.spec.source import Span
from nnspec.spec.suggest import did_you_mean

__all__ = ["check_recipes", "elaborate_recipe", "find_recipe"]


def _elaborate_model(loaded: Loaded, train: ast.TrainDef, args: dict[str, Any],
                     max_params: int) -> tuple[Graph | None, list[Diagnostic]]:
    """The recipe's model with its arguments; its errors carry a note naming the recipe."""
    elaborator = Elaborator(loaded, max_params=max_params)
    try:
        graph = elaborator.model(train.model, args)
    except DiagnosticError as exc:
        where = f"in model `{train.model}` as trained by the recipe at {train.model_span}"
        return None, [d.model_copy(update={"notes": (*d.notes, where)}) for d in exc.diagnostics]
    return graph, elaborator.warnings + lint(graph)


def _build(
    loaded: Loaded, train: ast.TrainDef, graph: Graph | None, *, known: bool, max_params: int,
) -> tuple[Graph | None, Recipe | None, list[Diagnostic], list[Diagnostic]]:
    """(graph, recipe, the recipe's diagnostics, the model's). ``known``: ``graph`` is the
    model as the recipe trains it (None: it failed, and that was reported)."""
    builder = RecipeBuilder(loaded, train)
    args = builder.model_args()
    model_diags: list[Diagnostic] = []
    if args is not None and not known:
        graph, model_diags = _elaborate_model(loaded, train, args, max_params)
    builder.read_settings()
    builder.fill_defaults()
    builder.cross_check()
    if graph is not None and args is not None:
        builder.check_model(graph)
    recipe = builder.recipe(args) if args is not None and graph is not None else None
    builder.diags.sort(key=lambda d: (d.span.file, d.span.start) if d.span else ("", -1))
    return graph, recipe, builder.diags, model_diags


def elaborate_recipe(
    loaded: Loaded, train: ast.TrainDef, graph: Graph | None = None, *,
    max_params: int = DEFAULT_MAX_PARAMS,
) -> tuple[Graph, Recipe, list[Diagnostic]]:
    """Check one `train` block against its model; return the model's graph, the recipe and
    the warnings (the model's and the recipe's), or raise DiagnosticError with every error.

    ``graph``: the model already elaborated with the recipe's arguments; elaborated here if None.
    """
    graph, recipe, diags, model_diags = _build(loaded, train, graph, known=graph is not None,
                                               max_params=max_params)
    everything = model_diags + diags
    if recipe is None or graph is None:
        raise DiagnosticError(everything, loaded.sources)
    return graph, recipe, everything


def check_recipes(loaded: Loaded, graphs: Mapping[str, Graph | None] | None = None, *,
                  model: str | None = None, max_params: int = DEFAULT_MAX_PARAMS,
                  ) -> tuple[list[Recipe], list[Diagnostic]]:
    """Check every `train` block of the root file (only those of ``model`` if given).

    ``graphs``: models already elaborated with their default arguments, by name (None for one
    that failed, whose errors were reported): a recipe without arguments reuses them and adds
    no model diagnostics. Returns the valid recipes and every diagnostic of the recipes (with
    the errors, not the warnings, of the models elaborated here).
    """
    graphs = graphs or {}
    recipes: list[Recipe] = []
    diags: list[Diagnostic] = []
    first: dict[str, Span] = {}
    for train in loaded.root.trains:
        if model is not None and train.model != model:
            continue
        name, name_span = train.name or train.model, train.name_span or train.model_span
        if name in first:
            diags.append(error(codes.DUPLICATE, f"a recipe named `{name}` is already defined",
                               name_span, "defined again",
                               secondary=[(first[name], "first defined here")],
                               help=f"name it: `train {train.model} as {name}_2 {{ ... }}`"))
        known = not train.args and train.model in graphs
        _, recipe, recipe_diags, model_diags = _build(loaded, train, graphs.get(train.model),
                                                      known=known, max_params=max_params)
        diags += [d for d in model_diags if d.severity == "error"] + recipe_diags
        if recipe is not None and name not in first:
            recipes.append(recipe)
        first.setdefault(name, name_span)
    return recipes, diags


def find_recipe(loaded: Loaded, name: str | None = None) -> ast.TrainDef:
    """The `train` block of the root file named ``name`` (or the only one)."""
    trains = loaded.root.trains
    return pick_named(loaded, trains, [t.name or t.model for t in trains], name, "recipe",
                      codes.NO_RECIPE, "add one: `train Model { data ... loss ... }`")


def pick_named(loaded: Loaded, blocks: Sequence[Any], names: list[str], name: str | None,
               what: str, code: str, example: str) -> Any:
    """The block named ``name`` among ``blocks`` (or the only one); else a DiagnosticError
    that lists the names: none of that name (did you mean), none at all, or several."""
    if name is None and len(blocks) == 1:
        return blocks[0]
    if name is not None and name in names:
        return blocks[names.index(name)]
    if name is not None:
        message, help = f"no {what} named `{name}`", did_you_mean(name, names)
    elif not blocks:
        message, help = f"the file has no {what}", example
    else:
        message, help = f"the file has {len(blocks)} {what}{'es' if what.endswith('h') else 's'}", \
            "choose one by name"
    notes = [f"{what}{'es' if what.endswith('h') else 's'}: {', '.join(names)}"] if names else []
    raise DiagnosticError([error(code, message, None, notes=notes, help=help)], loaded.sources)
