"""`search` blocks: which values of a recipe to vary, checked before anything trains.

    search LinReg as lr {
        strategy  refine(rounds=2, points=5)    # grid (default), random(trials=20), refine
        optimizer.lr in log(1e-3, 1)            # a range: log(a, b) or linear(a, b), points=n
        batch        in [32, 64, full]          # a choice: the items as a recipe would write them
        model.hidden in [64, 128]               # a model argument
        cv        kfold(5)                      # score by cross-validation (else: the val split)
        objective val_loss                      # or val_accuracy, val_mae... (the recipe's metrics)
    }

An axis path names a recipe setting (`batch`, `optimizer`), an argument of a setting's choice
(`optimizer.lr`, `schedule.factor`, `early_stop.patience`), a regularizer or augmentation of a
list setting (`regularize.l2`), or a model argument (`model.hidden`).

A trial is the recipe with each axis's value put in place of what the recipe wrote, in the
syntax tree (:func:`trial_recipe`): the recipe stage then checks it like any recipe, and an
error in a searched value is located at the value in the search block. Every value an axis
can take (each choice; a range's ends) is checked that way at compile time. The best trial
is written back as spec text (:func:`trial_text`), the same edits applied to the source.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nnspec.spec import ast, codes
from nnspec.spec.diagnostics import Diagnostic, DiagnosticError, Label, error
from nnspec.spec.ir import Graph
from nnspec.spec.loader import Loaded
from nnspec.spec.recipe.args import Param, Signature, bind, constant
from nnspec.spec.recipe.checks import training_size
from nnspec.spec.recipe.elaborate import elaborate_recipe, find_recipe, pick_named
from nnspec.spec.recipe.ir import Recipe
from nnspec.spec.recipe.tables import (
    AUGMENTS,
    CLIPS,
    CV,
    DATA,
    DATA_PATHS,
    EARLY_STOP,
    ENSEMBLE,
    INITS,
    METRICS,
    OPTIMIZERS,
    REGULARIZERS,
    SCHEDULES,
    SETTINGS,
)
from nnspec.spec.search.ir import (
    DEFAULT_POINTS,
    Axis,
    Point,
    PointValue,
    Search,
    Space,
    Strategy,
    nice,
    show,
)
from nnspec.spec.source import Span
from nnspec.spec.suggest import did_you_mean

__all__ = ["check_searches", "find_search", "imported_files", "load_search", "trial_recipe",
           "trial_text"]

MAX_TRIALS = 10_000
# the signatures of the choices of each setting whose value is a call: `optimizer adam(lr=...)`
CHOICES: dict[str, dict[str, Signature]] = {
    "data": DATA, "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "regularize": REGULARIZERS,
    "init": INITS, "clip": CLIPS, "augment": AUGMENTS,
}
# settings written as `name key=value, ...` without a call
FLAT: dict[str, Signature] = {"early_stop": EARLY_STOP, "ensemble": ENSEMBLE}
STRATEGIES = {
    "grid": Signature("grid", (Param("points", "int", None, "[2, 1000]", positional=False),)),
    "random": Signature("random", (Param("trials", "int", 20, "[1, 10000]", positional=False),
                                   Param("seed", "int", 0, "[0, inf)", positional=False))),
    "refine": Signature("refine", (Param("rounds", "int", 2, "[2, 10]", positional=False),
                                   Param("points", "int", None, "[3, 1000]", positional=False))),
}
RANGES = {k: Signature(k, (Param("low", "float"), Param("high", "float"),
                           Param("points", "int", None, "[2, 1000]", positional=False)))
          for k in ("log", "linear")}
SEARCH_SETTINGS = {"strategy": "strategy random(trials=20)", "cv": "cv kfold(5)",
                   "objective": "objective val_loss"}


# == where a value goes: one edit of the `train` block ============================================
@dataclass(frozen=True)
class _Edit:
    """Where one axis's value goes in the `train` block.

    replace: the expression ``target`` is replaced by the value;
    argument: ``name=value`` is added to the call ``target`` (a Call, or a Name that becomes
        one), or to the flat setting ``setting``;
    setting: the setting ``setting`` (None: a new line) takes the value as its only value;
    model: ``name=value`` is added to the recipe's model arguments.
    """

    kind: str
    name: str = ""
    target: ast.Expr | None = None
    setting: ast.Setting | None = None


class _NotFound(Exception):
    def __init__(self, message: str, span: Span, label: str, help: str | None = None,
                 notes: tuple[str, ...] = ()):
        self.message, self.span, self.label, self.help, self.notes = message, span, label, help, notes


def _locate(loaded: Loaded, train: ast.TrainDef, axis: Axis) -> _Edit:
    head, *rest = axis.path
    if head == "model":
        return _locate_model_arg(loaded, train, axis)
    settings = [s for s in train.settings if s.name == head]
    setting = settings[-1] if settings else None
    if not rest:
        return _Edit("setting", setting=setting)
    (name,) = rest
    if setting is None:
        raise _NotFound(f"recipe `{train.name or train.model}` has no `{head}` line to set "
                        f"`{name}` in", axis.span, "not in the recipe",
                        help=f"write the `{head}` line in the recipe; the search varies its `{name}`")
    for arg in setting.args:  # `early_stop patience=5`: a flat setting's own argument
        if arg.name == name:
            return _Edit("replace", target=arg.value)
    values = [a.value for a in setting.args if a.name is None]
    if head in FLAT:  # ... or given by position: `early_stop 5`
        slots = [p.name for p in FLAT[head].positional]
        if name in slots and slots.index(name) < len(values):
            return _Edit("replace", target=values[slots.index(name)])
    table = CHOICES.get(head, {})
    calls = [v for v in values if isinstance(v, (ast.Call, ast.Name))]
    if len(values) == 1 and calls:  # `optimizer adam(lr=...)`: an argument of the one choice
        call = calls[0]
        func = call.func if isinstance(call, ast.Call) else call.id
        signature = table.get(func)
        if signature is not None and any(p.name == name for p in signature.params):
            return _argument_edit(call, signature, name)
    for call in calls:  # `regularize l2(1e-4), max_norm(3)`: the value of one item
        func = call.func if isinstance(call, ast.Call) else call.id
        if func == name and func in table:
            given = [a.value for a in call.args if a.name is None] if isinstance(call, ast.Call) else []
            if given:
                return _Edit("replace", target=given[0])
            first = table[func].positional
            if first:
                return _Edit("argument", name=first[0].name, target=call)
    if head in FLAT and any(p.name == name for p in FLAT[head].params):
        return _Edit("argument", name=name, setting=setting)
    known = _known_arguments(head, calls, table)
    raise _NotFound(f"`{head}` has no `{name}` to vary", axis.span, "not an argument",
                    help=did_you_mean(name, known),
                    notes=(f"`{head}` can vary: {', '.join(known) or 'nothing by name'}",))


def _known_arguments(head: str, calls: list[ast.Expr], table: dict[str, Signature]) -> list[str]:
    names: list[str] = []
    for call in calls:
        func = call.func if isinstance(call, ast.Call) else call.id
        if func in table:
            names += [p.name for p in table[func].params if p.shown] if len(calls) == 1 else [func]
    if head in FLAT:
        names += [p.name for p in FLAT[head].params]
    return list(dict.fromkeys(names))


def _argument_edit(call: ast.Expr, signature: Signature, name: str) -> _Edit:
    if isinstance(call, ast.Call):
        for arg in call.args:
            if arg.name == name:
                return _Edit("replace", target=arg.value)
        positional = [a.value for a in call.args if a.name is None]
        slots = [p.name for p in signature.positional]
        if name in slots and slots.index(name) < len(positional):
            return _Edit("replace", target=positional[slots.index(name)])
    return _Edit("argument", name=name, target=call)


def _locate_model_arg(loaded: Loaded, train: ast.TrainDef, axis: Axis) -> _Edit:
    name = axis.path[1]
    definition = loaded.definitions.get(train.model)
    params = [p.name for p in definition.params] if definition is not None else []
    if name not in params:
        raise _NotFound(f"model `{train.model}` has no parameter `{name}`", axis.span,
                        "not a parameter", help=did_you_mean(name, params),
                        notes=(f"parameters: {', '.join(params) or 'none'}",))
    for arg in train.args:
        if arg.name == name:
            return _Edit("replace", target=arg.value)
    positional = [a.value for a in train.args if a.name is None]
    if params.index(name) < len(positional):
        return _Edit("replace", target=positional[params.index(name)])
    return _Edit("model", name=name)


# == the trial's `train` block, as syntax ========================================================
def _value_node(loaded: Loaded, search_def: ast.SearchDef, axis: Axis, value: PointValue) -> ast.Expr:
    """The value as the recipe stage reads it, located in the search block: a choice is the
    item itself; a range value is a number at the range."""
    space = next(a for a in search_def.axes if a.span == axis.span).space
    if axis.space.kind == "choice":
        assert isinstance(space, ast.Tuple)
        for item in space.items:
            if _text(item, loaded) == value:
                return item
        raise KeyError(f"{axis.key} has no choice {value!r}")
    return ast.Number(span=space.span, value=value, text=show(value))  # type: ignore[arg-type]


def _text(node: ast.Node, loaded: Loaded) -> str:
    """The source text of a node."""
    source = loaded.sources.get(node.span.file)
    assert source is not None
    return source.text[node.span.start:node.span.end]


def _swap(expr: Any, target: ast.Expr, new: Any) -> Any:
    """``expr`` with the node ``target`` (by identity) replaced by ``new``."""
    if expr is target:
        return new
    if isinstance(expr, ast.Node):
        changes = {}
        for field in expr.__dataclass_fields__:
            old = getattr(expr, field)
            swapped = _swap(old, target, new)
            if swapped is not old:
                changes[field] = swapped
        return replace(expr, **changes) if changes else expr
    if isinstance(expr, tuple):
        items = tuple(_swap(x, target, new) for x in expr)
        return items if any(a is not b for a, b in zip(items, expr)) else expr
    return expr


def _apply(train: ast.TrainDef, edit: _Edit, axis: Axis, node: ast.Expr) -> ast.TrainDef:
    """``train`` with one axis's value in place."""
    span = node.span
    if edit.kind == "setting":  # the setting's only value; a new line when it had none
        line = ast.Setting(span=edit.setting.span if edit.setting else axis.span,
                           name=axis.path[0], args=(ast.Arg(span=span, name=None, value=node),))
        if edit.setting is None:
            return replace(train, settings=(*train.settings, line))
        return _swap(train, edit.setting, line)
    if edit.kind == "replace":
        assert edit.target is not None
        return _swap(train, edit.target, node)
    if edit.kind == "model":
        return replace(train, args=(*train.args, ast.Arg(span=span, name=edit.name, value=node,
                                                         name_span=span)))
    if edit.kind == "argument":
        arg = ast.Arg(span=span, name=edit.name, value=node, name_span=span)
        if edit.setting is not None:
            return _swap(train, edit.setting, replace(edit.setting, args=(*edit.setting.args, arg)))
        target = edit.target
        if isinstance(target, ast.Name):
            call = ast.Call(span=target.span, func=target.id, func_span=target.span, args=(arg,))
        else:
            assert isinstance(target, ast.Call)
            call = replace(target, args=(*target.args, arg))
        return _swap(train, target, call)


def trial_recipe(loaded: Loaded, search: Search, point: Point) -> tuple[Graph, Recipe]:
    """The recipe (and its model) of one trial, checked like any recipe; DiagnosticError
    if a value does not fit, located at that value in the search block."""
    search_def = find_search(loaded, search.name)
    train = find_recipe(loaded, search.recipe)
    patched = train
    for axis in search.axes:  # each located in the block as patched so far (two axes may
        if axis.key in point:  # add arguments to one call), applied by node identity
            node = _value_node(loaded, search_def, axis, point[axis.key])
            patched = _apply(patched, _locate(loaded, patched, axis), axis, node)
    graph, recipe, _ = elaborate_recipe(loaded, patched)
    return graph, recipe


# == the trial's spec, as text =================================================================
def trial_text(loaded: Loaded, search: Search, point: Point, relocate: Path | None = None) -> str:
    """The root spec file with the trial's values written into its recipe and every `search`
    block removed: a complete spec that trains the trial with `nnspec train` (beside the files
    it imports, at the same relative paths: see :func:`imported_files`).

    ``relocate``: the folder the text will be saved in; the recipe's relative file paths (its
    data files, `init from(...)`) are rewritten to reach the same files from there.
    """
    train = find_recipe(loaded, search.recipe)
    root = loaded.sources.get(loaded.root.file)
    assert root is not None
    text = root.text
    edits: list[tuple[int, int, str]] = []  # (start, end, new text), applied from the end
    new_lines: list[str] = []
    model_args: list[str] = []
    added: dict[int, tuple[ast.Expr, list[str]]] = {}  # call -> `name=value` to add to it
    for axis in search.axes:
        value = show(point[axis.key])
        edit = _locate(loaded, train, axis)
        if edit.kind == "replace":
            assert edit.target is not None
            edits.append((edit.target.span.start, edit.target.span.end, value))
        elif edit.kind == "model":
            model_args.append(f"{edit.name}={value}")
        elif edit.kind == "argument" and edit.setting is not None:
            end = edit.setting.span.end
            edits.append((end, end, f", {edit.name}={value}" if edit.setting.args else f" {edit.name}={value}"))
        elif edit.kind == "argument":
            assert edit.target is not None
            added.setdefault(id(edit.target), (edit.target, []))[1].append(f"{edit.name}={value}")
        elif edit.setting is not None:
            first, last = edit.setting.args[0].span, edit.setting.args[-1].span
            edits.append((first.start, last.end, value))
        else:
            new_lines.append(f"{axis.path[0]} {value}")
    for target, arguments in added.values():
        joined = ", ".join(arguments)
        if isinstance(target, ast.Name):
            edits.append((target.span.start, target.span.end, f"{target.id}({joined})"))
        else:
            assert isinstance(target, ast.Call)
            end = target.span.end - 1  # before `)`
            edits.append((end, end, f", {joined}" if target.args else joined))
    if model_args:
        edits.append(_model_args_edit(text, train, model_args))
    if new_lines:
        indent = _indent(text, train.settings[0].span.start) if train.settings else "    "
        close = train.span.end - 1  # the `}` of the block
        line_start = text.rfind("\n", 0, close) + 1
        added = "".join(f"{indent}{line}  # searched: {search.name}\n" for line in new_lines)
        if text[line_start:close].strip():  # `}` shares its line with the last setting
            added = "\n" + added
        edits.append((line_start if not text[line_start:close].strip() else close,
                      line_start if not text[line_start:close].strip() else close, added))
    if relocate is not None and root.path is not None:
        edits += _relocated_paths(train, root.path.parent, relocate)
    for search_def in loaded.root.searches:  # the blocks go, with their line and comments above
        start, end = _block_lines(text, search_def.span)
        edits.append((start, end, ""))
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        text = text[:start] + new + text[end:]
    return text.rstrip("\n") + "\n"


def _relocated_paths(train: ast.TrainDef, origin: Path, folder: Path) -> list[tuple[int, int, str]]:
    """Edits that make the recipe's relative paths (data files, `init from`) relative to
    ``folder`` instead of ``origin``."""
    strings: list[ast.String] = []
    for setting in train.settings:
        for arg in setting.args:
            call = arg.value
            if not isinstance(call, ast.Call):
                continue
            if setting.name == "data" and call.func in DATA_PATHS:
                names = DATA_PATHS[call.func]
                slots = [p.name for p in DATA[call.func].positional]
                for position, given in enumerate(a for a in call.args if a.name is None):
                    if position < len(slots) and slots[position] in names:
                        strings.append(given.value)
                strings += [a.value for a in call.args if a.name in names]
            elif setting.name == "init" and call.func == "from" and call.args:
                strings.append(call.args[0].value)
    edits = []
    for node in strings:
        if isinstance(node, ast.String) and not os.path.isabs(node.value):
            moved = Path(os.path.relpath(origin.resolve() / node.value, folder.resolve())).as_posix()
            edits.append((node.span.start, node.span.end, json.dumps(moved)))
    return edits


def imported_files(loaded: Loaded) -> dict[str, str]:
    """The text of every file the root spec imports (directly or not), by its path relative to
    the root's folder; imports never leave that folder (spec/loader.py)."""
    folder = os.path.dirname(loaded.root.file) or "."
    files = {}
    for name in loaded.hashes:
        source = loaded.sources.get(name)
        if name != loaded.root.file and source is not None:
            files[Path(os.path.relpath(name, folder)).as_posix()] = source.text
    return files


def _model_args_edit(text: str, train: ast.TrainDef, args: list[str]) -> tuple[int, int, str]:
    joined = ", ".join(args)
    if train.args:
        end = train.args[-1].span.end
        return end, end, f", {joined}"
    after = train.model_span.end
    rest = text[after:]
    stripped = rest.lstrip(" \t")
    if stripped.startswith("("):  # `train M() {`
        at = after + (len(rest) - len(stripped)) + 1
        return at, at, joined
    return after, after, f"({joined})"


def _indent(text: str, offset: int) -> str:
    line_start = text.rfind("\n", 0, offset) + 1
    return text[line_start:offset]


def _block_lines(text: str, span: Span) -> tuple[int, int]:
    """A block's text from the start of its line (with the comment lines right above it) to
    the end of its last line."""
    start = text.rfind("\n", 0, span.start) + 1
    while start > 0:
        previous = text.rfind("\n", 0, start - 1) + 1
        if not text[previous:start].lstrip().startswith("#"):
            break
        start = previous
    end = text.find("\n", span.end)
    end = len(text) if end < 0 else end + 1
    if end < len(text) and text[end:text.find("\n", end) + 1].strip() == "":
        end = text.find("\n", end) + 1 or len(text)
    return start, end


# == reading and checking a `search` block ======================================================
class _Reader:
    def __init__(self, loaded: Loaded, search_def: ast.SearchDef):
        self.loaded, self.block = loaded, search_def
        self.diags: list[Diagnostic] = []

    def _err(self, message: str, span: Span | None, label: str = "", **kw: Any) -> None:
        self.diags.append(error(codes.SEARCH, message, span, label, **kw))

    def read(self) -> Search | None:
        block = self.block
        names = [t.name or t.model for t in self.loaded.root.trains]
        if block.recipe not in names:
            self._err(f"no recipe named `{block.recipe}` to search", block.recipe_span,
                      "not a recipe", notes=[f"recipes: {', '.join(names) or 'none'}"],
                      help=did_you_mean(block.recipe, names) or
                      "a search varies a `train` recipe of this file: `search Recipe { ... }`")
            return None
        train = find_recipe(self.loaded, block.recipe)
        try:
            base = elaborate_recipe(self.loaded, train)[1]
        except DiagnosticError:
            return None  # the recipe's own errors are reported by the recipe check
        strategy, folds, objective = Strategy(), None, None
        seen: dict[str, Span] = {}
        for setting in block.settings:
            if setting.name not in SEARCH_SETTINGS:
                hint = did_you_mean(setting.name, SEARCH_SETTINGS)
                if setting.name in SETTINGS:
                    hint = f"to vary `{setting.name}` write `{setting.name} in [...]`; to fix it, " \
                           "set it in the recipe"
                self._err(f"unknown search setting `{setting.name}`", setting.span,
                          "not a search setting", notes=[f"settings: {', '.join(SEARCH_SETTINGS)}"],
                          help=hint)
                continue
            if setting.name in seen:
                self._err(f"`{setting.name}` is given twice", setting.span, "given again",
                          secondary=[(seen[setting.name], "first given here")])
                continue
            seen[setting.name] = setting.span
            if len(setting.args) != 1 or setting.args[0].name is not None:
                self._err(f"`{setting.name}` takes one value", setting.span,
                          help=f"e.g. `{SEARCH_SETTINGS[setting.name]}`")
                continue
            value = setting.args[0].value
            if setting.name == "strategy":
                strategy = self._strategy(value) or strategy
            elif setting.name == "cv":
                folds = self._folds(value)
            else:
                objective = self._objective(value, base)
        axes = self._axes(train)  # the axes that read well (each bad one has its error)
        objective = objective or ("val_loss", "min", None)
        search = Search(name=block.name or block.recipe, recipe=block.recipe, strategy=strategy,
                        axes=tuple(axes), folds=folds, objective=objective[0], mode=objective[1],
                        span=block.span)
        self._check_plan(search, base, seen)
        self._check_values(search)
        self.diags.sort(key=lambda d: (d.span.line, d.span.col) if d.span else (0, 0))
        return None if any(d.severity == "error" for d in self.diags) else search

    def _strategy(self, expr: ast.Expr) -> Strategy | None:
        func = expr.func if isinstance(expr, ast.Call) else expr.id if isinstance(expr, ast.Name) else None
        if func not in STRATEGIES:
            self._err(f"unknown strategy `{func or _text(expr, self.loaded)}`", expr.span,
                      "not a strategy", notes=[f"strategies: {', '.join(STRATEGIES)}"],
                      help=did_you_mean(func, STRATEGIES) if func else None)
            return None
        args = expr.args if isinstance(expr, ast.Call) else ()
        bound = bind(STRATEGIES[func], args, expr.span, self.diags, what=f"`{func}`")
        if bound is None:
            return None
        v = bound.values
        if func == "random":
            return Strategy(kind="random", trials=v["trials"], seed=v["seed"])
        if func == "refine":
            return Strategy(kind="refine", rounds=v["rounds"], points=v["points"])
        return Strategy(kind="grid", points=v["points"])

    def _folds(self, expr: ast.Expr) -> int | None:
        if not (isinstance(expr, ast.Call) and expr.func == "kfold"):
            self._err("expected `kfold(n)`", expr.span, "not a cross-validation",
                      help="e.g. `cv kfold(5)`")
            return None
        bound = bind(CV, expr.args, expr.span, self.diags, what="`kfold`")
        if bound is None:
            return None
        if bound.values["k"] is not None:
            self._err("a search scores every trial by k-fold cross-validation; `k=` chooses "
                      "kNN's neighbours in a recipe", bound.spans["k"], "not here",
                      help="vary k as an axis: `model.k in [1, 3, 5, 7]`")
            return None
        return bound.values["folds"]

    def _objective(self, expr: ast.Expr, recipe: Recipe) -> tuple[str, str, Span] | None:
        allowed = ["val_loss", *(f"val_{m}" for m in recipe.metrics)]
        name = expr.id if isinstance(expr, ast.Name) else None
        if name not in allowed:
            known = [f"val_{m}" for m in METRICS]
            why = f"recipe `{recipe.name}` does not compute `{name}`" if name in known else \
                f"unknown objective `{name or _text(expr, self.loaded)}`"
            self._err(why, expr.span, "not an objective", notes=[f"objectives: {', '.join(allowed)}"],
                      help=did_you_mean(name, allowed) if name and name not in known else None)
            return None
        return name, "max" if name in ("val_accuracy", "val_iou") else "min", expr.span

    def _axes(self, train: ast.TrainDef) -> list[Axis]:
        axes: list[Axis] = []
        keys: dict[str, Span] = {}
        for axis_def in self.block.axes:
            path = tuple(p for p, _ in axis_def.path)
            key = ".".join(path)
            head_span = axis_def.path[0][1]
            if path[0] != "model" and path[0] not in SETTINGS:
                self._err(f"unknown setting `{path[0]}`", head_span, "not a recipe setting",
                          notes=[f"settings: {', '.join(SETTINGS)}; `model.NAME` for a model argument"],
                          help=did_you_mean(path[0], [*SETTINGS, "model"]))
                continue
            if len(path) > 2 or (path[0] == "model" and len(path) != 2):
                self._err(f"`{key}` is not a value of the recipe", axis_def.span, "too deep" if
                          len(path) > 2 else "which argument?",
                          help="write `setting`, `setting.argument` or `model.argument`")
                continue
            if key in keys:
                self._err(f"`{key}` is searched twice", axis_def.span, "again",
                          secondary=[(keys[key], "first here")])
                continue
            overlap = next((k for k in keys if k.startswith(key + ".") or key.startswith(k + ".")), None)
            if overlap is not None:
                self._err(f"`{key}` and `{overlap}` vary the same setting", axis_def.span,
                          "overlaps", secondary=[(keys[overlap], "also varied here")],
                          help="vary the whole setting as a choice, or one argument of it")
                continue
            keys[key] = axis_def.span
            space = self._space(axis_def.space)
            if space is None:
                continue
            axis = Axis(key=key, path=path, space=space, span=axis_def.span)
            try:
                _locate(self.loaded, train, axis)
            except _NotFound as exc:
                span = axis_def.path[-1][1] if exc.span == axis.span else exc.span
                self._err(exc.message, span, exc.label, help=exc.help, notes=list(exc.notes))
                continue
            axes.append(axis)
        if not self.block.axes:
            self._err(f"search `{self.block.name or self.block.recipe}` varies nothing",
                      self.block.recipe_span, "no axis",
                      help="add a line such as `optimizer.lr in log(1e-4, 1e-1)`")
        return axes

    def _space(self, expr: ast.Expr) -> Space | None:
        text = _text(expr, self.loaded)
        if isinstance(expr, ast.Tuple) and text.startswith("["):
            items = [_text(i, self.loaded) for i in expr.items]
            if not items:
                self._err("an empty choice", expr.span, "no values", help="e.g. `[32, 64, 128]`")
                return None
            repeated = next((i for n, i in enumerate(items) if i in items[:n]), None)
            if repeated is not None:
                self._err(f"`{repeated}` is listed twice", expr.span, "repeated")
                return None
            return Space(kind="choice", choices=tuple(items))
        if not (isinstance(expr, ast.Call) and expr.func in RANGES):
            self._err("expected the values to search: `log(a, b)`, `linear(a, b)` or a list "
                      "`[a, b, c]`", expr.span, "not a range or a list",
                      help="e.g. `optimizer.lr in log(1e-4, 1e-1)` or `batch in [32, 64, 128]`")
            return None
        bound = bind(RANGES[expr.func], expr.args, expr.span, self.diags, what=f"`{expr.func}`")
        if bound is None:
            return None
        low, high = bound.values["low"], bound.values["high"]
        if not low < high:
            self._err(f"a range needs low < high, got {show(low)} and {show(high)}", expr.span,
                      "empty range", help=f"`{expr.func}({show(high)}, {show(low)})`"
                      if high < low else None)
            return None
        if expr.func == "log" and low <= 0:
            self._err(f"a log range needs low > 0, got {show(low)}", bound.spans["low"],
                      "not positive", help="use `linear(...)` for a range through zero")
            return None
        integer = all(isinstance(constant(a.value, []), int) for a in expr.args if a.name is None)
        return Space(kind=expr.func, low=low, high=high,
                     points=bound.values["points"] or DEFAULT_POINTS, integer=integer)

    def _check_plan(self, search: Search, base: Recipe, seen: dict[str, Span]) -> None:
        block, strategy = self.block, search.strategy
        if search.folds and base.data.samples:
            stored = training_size(base.data.samples, base.split, base.seed)
            if search.folds > stored:
                self._err(f"{search.folds} folds need at least {search.folds} training samples, "
                          f"but recipe `{base.name}`'s split holds {stored}",
                          seen.get("cv"), "too many folds")
        if search.folds is None and base.split[1] == 0:
            self._err(f"the search scores each trial on the validation split, but recipe "
                      f"`{base.name}` has none (split {' / '.join(f'{f:g}' for f in base.split)})",
                      block.recipe_span, "no validation split",
                      help="add `cv kfold(5)` to the search, or give the recipe's split a "
                      "validation part: `split 0.7 / 0.15 / 0.15`")
        if base.ensemble is not None:
            self._err(f"a search trains one model per trial, but recipe `{base.name}` trains an "
                      f"ensemble of {base.ensemble.members}", block.recipe_span, "an ensemble",
                      help="search the recipe without `ensemble`, then train the best as one")
        if strategy.kind == "refine" and not any(a.numeric for a in search.axes):
            self._err("`refine` narrows a log or linear range, but every axis is a list",
                      seen.get("strategy"), "nothing to refine", help="use `strategy grid`")
        if strategy.kind != "random":
            size = search.grid_size(strategy.points)
            if size > MAX_TRIALS:
                self._err(f"the grid has {size:,} points (more than {MAX_TRIALS:,})",
                          seen.get("strategy") or block.recipe_span, "too many trials",
                          help="use `strategy random(trials=50)`, or fewer points")

    def _check_values(self, search: Search) -> None:
        """Every value an axis can take compiles: each choice, and a range's ends. An error
        found elsewhere (in the model, for a model argument) also points at the value."""
        block = self.block.span
        for axis in search.axes:
            values = axis.space.grid() if axis.space.kind == "choice" else \
                [nice(axis.space.low or 0, axis.space.integer), nice(axis.space.high or 0, axis.space.integer)]
            for value in values:
                try:
                    trial_recipe(self.loaded, search, {axis.key: value})
                except DiagnosticError as exc:
                    note = f"with {axis.key} = {show(value)} (search `{search.name}`)"
                    at = Label(span=_value_node(self.loaded, self.block, axis, value).span,
                               message="the value searched", primary=False)
                    for d in exc.diagnostics:
                        if d.severity != "error":
                            continue
                        inside = d.span is not None and d.span.file == block.file and \
                            block.start <= d.span.start < block.end
                        labels = d.labels if inside else (*d.labels, at)
                        self.diags.append(d.model_copy(update={"notes": (*d.notes, note),
                                                               "labels": labels}))
                    break


def check_searches(loaded: Loaded, only: str | None = None) -> tuple[list[Search], list[Diagnostic]]:
    """Check every `search` block of the root file (only the one named ``only`` if given)."""
    searches: list[Search] = []
    diags: list[Diagnostic] = []
    first: dict[str, Span] = {}
    for block in loaded.root.searches:
        name = block.name or block.recipe
        if only is not None and name != only:
            continue
        if name in first:
            diags.append(error(codes.DUPLICATE, f"a search named `{name}` is already defined",
                               block.name_span or block.recipe_span, "defined again",
                               secondary=[(first[name], "first defined here")],
                               help=f"name it: `search {block.recipe} as {name}_2 {{ ... }}`"))
            continue
        first[name] = block.name_span or block.recipe_span
        reader = _Reader(loaded, block)
        search = reader.read()
        diags += reader.diags
        if search is not None:
            searches.append(search)
    return searches, diags


def find_search(loaded: Loaded, name: str | None = None) -> ast.SearchDef:
    """The `search` block of the root file named ``name`` (or the only one)."""
    blocks = loaded.root.searches
    return pick_named(loaded, blocks, [b.name or b.recipe for b in blocks], name, "search",
                      codes.SEARCH, "add one: `search Recipe { optimizer.lr in log(1e-4, 1e-1) }`")


def load_search(loaded: Loaded, name: str | None = None) -> Search:
    """The checked search named ``name`` (or the file's only one); DiagnosticError otherwise."""
    block = find_search(loaded, name)
    searches, diags = check_searches(loaded, only=block.name or block.recipe)
    errors = [d for d in diags if d.severity == "error"]
    if errors or not searches:
        raise DiagnosticError(errors, loaded.sources)
    return searches[0]

