"""Reading one `train` block: its model's arguments and every setting, each on its own,
collecting every error. What each setting accepts is in spec/recipe/tables.py; the checks
that follow are in spec/recipe/checks.py; spec/recipe/elaborate.py runs the whole.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from nnspec.spec import ast, codes
from nnspec.spec.arguments import Symbol, describe, positional_after_keyword
from nnspec.spec.diagnostics import Diagnostic
from nnspec.spec.loader import Loaded
from nnspec.spec.ops import REGISTRY
from nnspec.spec.recipe.args import (
    POISON,
    Bound,
    Signature,
    article,
    bind,
    call_parts,
    check_value,
    choose,
    constant,
    plural,
)
from nnspec.spec.recipe.checks import Checks
from nnspec.spec.recipe.ir import (
    CLASSIFICATION_LOSSES,
    AugmentSpec,
    ClipSpec,
    CvSpec,
    DataSpec,
    EarlyStopSpec,
    EnsembleSpec,
    InitSpec,
    LrGroup,
    OptimizerSpec,
    Recipe,
    Regularizer,
    ScheduleSpec,
    WeightsSource,
)
from nnspec.spec.recipe.tables import (
    AUGMENTS,
    CLIPS,
    CV,
    DATA,
    EARLY_STOP,
    ELSEWHERE,
    ENSEMBLE,
    EXAMPLES,
    FRACTION,
    FREEZE,
    INITS,
    LOSSES,
    LR_GROUP,
    METRICS,
    OPTIMIZERS,
    REGULARIZERS,
    SCALARS,
    SCHEDULES,
    SETTINGS,
    WEIGHTS_FROM,
    data_facts,
)
from nnspec.spec.source import Span
from nnspec.spec.suggest import did_you_mean

DEFAULTS: dict[str, Any] = {
    "split": (0.8, 0.1, 0.1), "epochs": 10, "target": "labels", "optimizer":
    OptimizerSpec(kind="sgd", lr=0.01), "schedule": None, "regularize": (), "init": InitSpec(),
    "clip": None, "augment": (), "early_stop": None, "seed": 0, "device": "auto",
    "solver": "gradient", "freeze": (), "lr_groups": (), "ensemble": None,
    "cv": None,
}  # batch (32; full with gd) and metrics (by the loss) are filled in by `fill_defaults`
_PARAM_TYPES = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
}


def _join(a: Span, b: Span) -> Span:
    return Span(file=a.file, start=a.start, end=b.end, line=a.line, col=a.col,
                end_line=b.end_line, end_col=b.end_col)


def _name_span(setting: ast.Setting) -> Span:
    s, n = setting.span, len(setting.name)
    return Span(file=s.file, start=s.start, end=s.start + n, line=s.line, col=s.col,
                end_line=s.line, end_col=s.col + n)


def _slashes(expr: ast.Expr) -> list[ast.Expr]:
    """`0.7 / 0.15 / 0.15` parses as ((0.7 / 0.15) / 0.15): read it as a list."""
    if isinstance(expr, ast.BinOp) and expr.op == "/":
        return [*_slashes(expr.left), expr.right]
    return [expr]


def _found(expr: ast.Expr) -> str:
    if isinstance(expr, ast.Number):
        return f"the number {expr.text}"
    if isinstance(expr, ast.String):
        return f'the string "{expr.value}"'
    return "an expression"


def _pattern_spans(expr: ast.Expr) -> list[Span]:
    """Where each pattern of a `patterns` value is: the items of a tuple, else the value."""
    return [i.span for i in expr.items] if isinstance(expr, ast.Tuple) else [expr.span]


def _is_from(expr: ast.Expr) -> bool:
    """`from(...)` among init's schemes: the weights to load, not a scheme."""
    parts = call_parts(expr)
    return parts is not None and parts[0] == "from"


def _argument(args: tuple[ast.Arg, ...], name: str, position: int | None) -> ast.Expr | None:
    """The expression given for one parameter of a call, by keyword or by position."""
    named = [a.value for a in args if a.name == name]
    positional = [a.value for a in args if a.name is None]
    if named:
        return named[0]
    return positional[position] if position is not None and position < len(positional) else None


class RecipeBuilder(Checks):
    """Reads one `train` block: `model_args`, `read_settings`, `fill_defaults`, the checks
    (`cross_check`, `check_model`), then `recipe`."""

    def __init__(self, loaded: Loaded, train: ast.TrainDef):
        self.loaded, self.train = loaded, train
        self.diags: list[Diagnostic] = []
        self.values: dict[str, Any] = {}
        self.spans: dict[str, Span] = {}
        self.items: dict[str, list[Span]] = {}
        self.init_spans: dict[str, Span] = {}
        self.given: dict[str, ast.Setting] = {}
        self.patterns: dict[str, list[tuple[str, Span]]] = {}
        self.groups: list[tuple[Span, list[tuple[str, Span]]]] = []
        self.source_spans: dict[str, Span] = {}

    @property
    def name(self) -> str:
        return self.train.name or self.train.model

    # == the model and its arguments ====================================================
    def model_args(self) -> dict[str, Any] | None:
        """The arguments of `train Model(...)`, checked against the model's parameters;
        None when the model is unknown or an argument is wrong."""
        train = self.train
        definition = self.loaded.definitions.get(train.model)
        if definition is None or definition.kind != "model":
            models = [d.name for d in self.loaded.definitions.values() if d.kind == "model"]
            self._err(codes.RECIPE_MODEL, f"no model named `{train.model}`", train.model_span,
                      "a block, not a model" if definition is not None else "not defined",
                      notes=[f"models: {', '.join(models) or 'none'}"],
                      help=did_you_mean(train.model, models))
            return None
        params = {p.name: p for p in definition.params}
        misplaced = positional_after_keyword(train.args, list(params))
        if misplaced is not None:  # `train MLP(features=4, 3)` must not quietly take 3 as classes
            self.diags.append(misplaced)
            return None
        before = len(self.diags)
        positional = [a for a in train.args if a.name is None]
        if len(positional) > len(params):
            self._err(codes.TOO_MANY_ARGS, f"`{train.model}` takes {len(params)} argument"
                      f"{'s' if len(params) != 1 else ''} but {len(positional)} {'was' if len(positional) == 1 else 'were'} given",
                      positional[len(params)].span, "extra argument")
        args = dict(zip(params, positional))
        for arg in train.args:
            if arg.name is None:
                continue
            span = arg.name_span or arg.span
            if arg.name not in params:
                self._err(codes.UNKNOWN_ARG, f"model `{train.model}` has no parameter `{arg.name}`",
                          span, "unknown argument",
                          notes=[f"parameters: {', '.join(params) or 'none'}"],
                          help=did_you_mean(arg.name, params))
            elif arg.name in args:
                self._err(codes.DUPLICATE, f"argument `{arg.name}` given twice", span,
                          "given again", secondary=[(args[arg.name].span, "first given here")])
            else:
                args[arg.name] = arg
        values: dict[str, Any] = {}
        for name, arg in args.items():
            value, kind = constant(arg.value, self.diags), params[name].type
            if value is not POISON and kind in _PARAM_TYPES and not _PARAM_TYPES[kind](value):
                self._err(codes.RECIPE_MODEL, f"`{name}` of `{train.model}` must be {kind}, got "
                          f"{describe(value)}", arg.value.span, f"expected {kind}",
                          notes=[f"declared at {params[name].span}"])
                value = POISON
            values[name] = float(value) if kind == "float" and value is not POISON else value
        if len(self.diags) > before or POISON in values.values():
            return None
        return {k: str(v) if isinstance(v, Symbol) else v for k, v in values.items()}

    # == settings =========================================================================
    def read_settings(self) -> None:
        for setting in self.train.settings:
            name, name_span = setting.name, _name_span(setting)
            if name not in SETTINGS:
                self._err(codes.RECIPE_SETTING, f"unknown setting `{name}`", name_span,
                          "not a setting", notes=[f"settings: {', '.join(SETTINGS)}"],
                          help=did_you_mean(name, SETTINGS) or ELSEWHERE.get(name))
            elif name in self.given:
                self._err(codes.DUPLICATE, f"`{name}` is given twice", name_span, "given again",
                          secondary=[(_name_span(self.given[name]), "first given here")])
            elif not setting.args:
                self.given[name], self.values[name] = setting, POISON
                self._err(codes.RECIPE_MISSING, f"`{name}` needs a value", name_span, "no value",
                          help=f"e.g. `{EXAMPLES[name]}`")
            else:
                self.given[name] = setting
                self.spans[name] = _join(setting.args[0].span, setting.args[-1].span)
                self.values[name] = getattr(self, f"_s_{name}")(setting)
        for required in ("data", "loss"):
            if required == "loss" and self.values.get("solver") == "knn":
                # a vote has no loss; nll on the vote fractions p is what gets reported:
                # −mean p_y, minus the mean share of the k neighbours voting for the truth
                self.values["loss"] = "nll"
            elif required not in self.given:
                self._err(codes.RECIPE_MISSING, f"recipe `{self.name}` has no `{required}`",
                          self.train.model_span, f"`{required}` missing",
                          help=f"add a line `{EXAMPLES[required]}`")
                self.values[required] = POISON

    def _one(self, setting: ast.Setting) -> ast.Expr | None:
        """The single positional value of a setting such as `epochs 30`."""
        first, example = setting.args[0], f"e.g. `{EXAMPLES[setting.name]}`"
        if first.name is not None:
            self._err(codes.RECIPE_VALUE, f"`{setting.name}` takes a value, not `{first.name}=...`",
                      first.span, help=example)
            return None
        if len(setting.args) > 1:
            self._err(codes.TOO_MANY_ARGS, f"`{setting.name}` takes one value, got "
                      f"{len(setting.args)}", setting.args[1].span, "extra value", help=example)
            return None
        return first.value

    def _items(self, setting: ast.Setting, what: str) -> list[ast.Expr]:
        """The comma-separated items of a list setting (`augment`, `regularize`, `metrics`)."""
        exprs, spans = [], []
        for arg in setting.args:
            if arg.name is not None:
                self._err(codes.RECIPE_VALUE, f"`{setting.name}` takes {plural(what)}, not "
                          f"`{arg.name}=...`", arg.span, help=f"e.g. `{EXAMPLES[setting.name]}`")
            else:
                exprs.append(arg.value)
                spans.append(arg.span)
        self.items[setting.name] = spans
        return exprs

    def _choice(self, expr: ast.Expr | None, table: Mapping[str, Signature],
                what: str) -> tuple[Signature, Bound] | None:
        """`adam(lr=1e-3)` -> (adam's signature, its bound arguments); None after an error."""
        if expr is None:
            return None
        parts = call_parts(expr)
        if parts is None:
            self._err(codes.RECIPE_CHOICE, f"expected {article(what)}, found {_found(expr)}",
                      expr.span, f"not {article(what)}",
                      notes=[f"{plural(what)}: {', '.join(table)}"])
            return None
        kind, span, args = parts
        sig = choose(kind, span, dict(table), what, self.diags, ELSEWHERE)
        if sig is POISON:
            return None
        bound = bind(sig, args, expr.span, self.diags)
        return (sig, bound) if bound is not None else None

    def _list(self, setting: ast.Setting, read: Any, what: str) -> Any:
        """A list setting of ``what`` items: each read by ``read(expr)`` (POISON on error)."""
        exprs = self._items(setting, what)
        out = [read(expr) for expr in exprs]
        return POISON if POISON in out or len(exprs) < len(setting.args) else tuple(out)

    def _s_data(self, setting: ast.Setting) -> Any:
        chosen = self._choice(self._one(setting), DATA, "data source")
        if chosen is None:
            return POISON
        sig, bound = chosen
        args = {k: v for k, v in bound.values.items() if v is not None}
        if sig.kind == "digits" and not self._digits(args, bound.spans):
            return POISON
        facts = data_facts(sig.kind, args)
        if sig.kind == "text":
            text = self._text_facts(args, bound.spans)
            if text is POISON:
                return POISON
            facts.update(text)
        return DataSpec(kind=sig.kind, args=args, **facts)

    def _text_facts(self, args: dict[str, Any], spans: dict[str, Span]) -> Any:
        """`text("file.txt", context=n)`: when the file is there (resolved against the spec
        file's folder, as the runtime resolves it), its vocabulary size and windows, so the
        model's output [context, vocab] is checked now; a file that is not UTF-8 or is too
        short is an error here. A missing file is the runtime's to report."""
        from nnspec.spec.recipe.textdata import TextDataError, read_facts

        source = self.loaded.sources.get(self.train.span.file)
        folder = source.path.parent if source is not None and source.path is not None else None
        path = args["path"] if folder is None else os.path.join(folder, args["path"])
        if not os.path.isfile(path):
            return {}
        try:
            facts = read_facts(path, args["context"], args.get("stride"))
        except OSError:
            return {}  # unreadable now: training says why
        except TextDataError as exc:
            self._err(codes.RECIPE_DATA, f"text: {exc.message}", spans["path"],
                      exc.location.replace(str(path), args["path"]), help=exc.help)
            return POISON
        return {"classes": len(facts.vocab), "samples": facts.windows}

    def _digits(self, args: dict[str, Any], spans: dict[str, Span]) -> bool:
        if args["sequence"] and args["as_image"]:
            key, problem = "sequence", "`sequence` and `as_image` exclude each other"
        elif args.get("resize") and not args["as_image"]:
            key = "resize"
            problem = "`resize` applies to images" + (", not sequences" if args["sequence"] else "")
        else:
            return True
        size = f", resize={args['resize']}" if args.get("resize") else ""
        self._err(codes.RECIPE_VALUE, f"digits: {problem}", spans[key], help="as_image=true gives "
                  f"[1, 8, 8] (use digits(as_image=true{size})); sequence=true gives [8, 8]")
        return False

    def _s_split(self, setting: ast.Setting) -> Any:
        first = setting.args[0].value
        if len(setting.args) == 1 and setting.args[0].name is None:
            exprs = list(first.items) if isinstance(first, ast.Tuple) else _slashes(first)
        else:
            exprs = self._items(setting, "fraction")
        fractions = [check_value(FRACTION, constant(e, self.diags), e.span, "`split`", self.diags)
                     for e in exprs]
        if POISON in fractions or len(exprs) < len(setting.args):
            return POISON
        span, total = self.spans["split"], sum(fractions)
        if len(fractions) not in (2, 3):
            self._err(codes.RECIPE_SPLIT, f"`split` takes 2 or 3 fractions (train / val / test), "
                      f"got {len(fractions)}", span, help="e.g. `split 0.7 / 0.15 / 0.15`, or "
                      "`split 0.8 / 0.2` for no test part")
            return POISON
        if abs(total - 1) > 1e-6:
            rest = 1 - sum(fractions[:-1])
            self._err(codes.RECIPE_SPLIT, f"split fractions sum to {total:g}, not 1", span,
                      f"sums to {total:g}",
                      notes=[f"{' + '.join(f'{f:g}' for f in fractions)} = {total:g}"],
                      help=f"a last part of {rest:g} makes it 1" if rest >= 0 else None)
            return POISON
        if fractions[0] == 0:
            self._err(codes.RECIPE_SPLIT, "the training part of the split is 0", exprs[0].span,
                      "no training data")
            return POISON
        return (*fractions, 0.0)[:3]

    def _s_batch(self, setting: ast.Setting) -> Any:
        expr = self._one(setting)
        if expr is None:
            return POISON
        value = constant(expr, self.diags)
        if isinstance(value, Symbol) and value == "full":
            return None
        if isinstance(value, Symbol):
            self._err(codes.RECIPE_VALUE, f"`batch` must be a size or `full`, got `{value}`",
                      expr.span, "not a size", help=did_you_mean(value, ["full"]))
            return POISON
        return check_value(SCALARS["batch"], value, expr.span, None, self.diags)

    def _scalar(self, setting: ast.Setting) -> Any:
        expr = self._one(setting)
        if expr is None:
            return POISON
        return check_value(SCALARS[setting.name], constant(expr, self.diags), expr.span, None,
                           self.diags)

    _s_epochs = _s_seed = _s_target = _s_device = _s_solver = _scalar

    def _s_loss(self, setting: ast.Setting) -> Any:
        expr = self._one(setting)
        parts = call_parts(expr) if expr is not None else None
        if parts is None:
            if expr is not None:
                self._err(codes.RECIPE_CHOICE, f"expected a loss, found {_found(expr)}", expr.span,
                          notes=[f"losses: {', '.join(LOSSES)}"])
            return POISON
        kind, span, args = parts
        loss = choose(kind, span, {k: k for k in LOSSES}, "loss", self.diags, ELSEWHERE)
        if args and loss is not POISON:
            self._err(codes.TOO_MANY_ARGS, f"`{kind}` takes no arguments", args[0].span,
                      help=f"write `loss {kind}`")
            return POISON
        return loss

    def _s_optimizer(self, setting: ast.Setting) -> Any:
        chosen = self._choice(self._one(setting), OPTIMIZERS, "optimizer")
        if chosen is None:
            return POISON
        sig, bound = chosen
        values = dict(bound.values)
        beta1, beta2 = values.pop("beta1", None), values.pop("beta2", None)
        if beta1 is not None or beta2 is not None:
            if "betas" in bound.spans:
                key = "beta1" if beta1 is not None else "beta2"
                self._err(codes.DUPLICATE, f"`betas` and `{key}` both given", bound.spans[key],
                          "given too", secondary=[(bound.spans["betas"], "betas given here")],
                          help="give `betas=(b1, b2)` or `beta1=`/`beta2=`, not both")
                return POISON
            values["betas"] = (0.9 if beta1 is None else beta1, 0.999 if beta2 is None else beta2)
        return OptimizerSpec.model_validate({"kind": sig.kind, **values})

    def _s_schedule(self, setting: ast.Setting) -> Any:
        return self._schedule(self._one(setting), nested=False)

    def _schedule(self, expr: ast.Expr | None, nested: bool) -> Any:
        chosen = self._choice(expr, SCHEDULES, "schedule")
        if chosen is None or expr is None:
            return POISON
        sig, bound = chosen
        args = dict(bound.values)
        then = args.pop("then", None)
        if sig.kind == "warmup" and nested:
            self._err(codes.RECIPE_VALUE, "a warm-up cannot follow a warm-up", expr.span,
                      help="give one warmup(epochs=...) with the whole warm-up length")
            return POISON
        follow = self._schedule(then, nested=True) if then is not None else None
        if follow is POISON:
            return POISON
        return ScheduleSpec.model_validate({"kind": sig.kind, "args": args, "then": follow})

    def _s_regularize(self, setting: ast.Setting) -> Any:
        seen: dict[str, Span] = {}

        def read(expr: ast.Expr) -> Any:
            chosen = self._choice(expr, REGULARIZERS, "regularizer")
            if chosen is None:
                return POISON
            sig, bound = chosen
            if sig.kind in seen:
                self._err(codes.DUPLICATE, f"`{sig.kind}` is given twice", expr.span, "given again",
                          secondary=[(seen[sig.kind], "first given here")])
                return POISON
            seen[sig.kind] = expr.span
            return Regularizer.model_validate({"kind": sig.kind, "value": bound.values["value"]})

        return self._list(setting, read, "regularizer")

    def _scheme(self, expr: ast.Expr) -> Any:
        chosen = self._choice(expr, INITS, "init scheme")
        if chosen is None:
            return POISON
        sig, bound = chosen
        return (sig.kind, dict(bound.values))

    def _s_init(self, setting: ast.Setting) -> Any:
        default, per_kind, ok, source = None, {}, True, None
        sources = [a for a in setting.args if a.name is None and _is_from(a.value)]
        positional = [a for a in setting.args if a.name is None and a not in sources]
        for extra in positional[1:]:
            self._err(codes.TOO_MANY_ARGS, "`init` takes one default scheme", extra.span,
                      "second scheme", help="give schemes per op kind by name: "
                      "`init kaiming, linear=xavier`")
            ok = False
        for extra in sources[1:]:
            self._err(codes.TOO_MANY_ARGS, "`init` takes one `from(...)`", extra.span,
                      "second source", help='give several patterns to one source: '
                      '`from("base/", match=("features.*", "conv_1.*"))`')
            ok = False
        if sources:
            source = self._weights_source(sources[0].value)
        if positional:
            self.init_spans[""] = positional[0].span
            default = self._scheme(positional[0].value)
            default = None if default not in (POISON, None) and default[0] == "default" else default
        kinds = sorted({op.kind for op in REGISTRY.values()})
        for arg in setting.args:
            if arg.name is None:
                continue
            op, name_span = REGISTRY.get(arg.name), arg.name_span or arg.span
            if op is None:
                self._err(codes.RECIPE_CHOICE, f"unknown op kind `{arg.name}`", name_span,
                          "not an op", notes=["`init kind=scheme` names an op kind, such as conv "
                                              "or linear"], help=did_you_mean(arg.name, kinds))
                ok = False
            elif op.kind in per_kind:
                self._err(codes.DUPLICATE, f"init for `{op.kind}` given twice", name_span,
                          "given again", secondary=[(self.init_spans[op.kind], "first given here")])
                ok = False
            else:
                self.init_spans[op.kind] = arg.span
                per_kind[op.kind] = self._scheme(arg.value)
        if not ok or POISON in (default, source) or POISON in per_kind.values():
            return POISON
        return InitSpec(default=default, per_kind=per_kind, source=source)

    def _weights_source(self, expr: ast.Expr) -> Any:
        """`from("base.safetensors", match="features.*")`: the path is resolved against the
        spec file's folder now, as data paths are, so training finds the same file."""
        _, _, args = call_parts(expr) or ("", expr.span, ())
        bound = bind(WEIGHTS_FROM, args, expr.span, self.diags)
        if bound is None:
            return POISON
        written, match = bound.values["path"], bound.values["match"]
        match = match if isinstance(match, tuple) else (match,)
        given = _argument(args, "match", None)
        spans = _pattern_spans(given) if given is not None else [expr.span]
        self.patterns["from"] = list(zip(match, spans))
        self.source_spans = {"call": expr.span, "path": bound.spans["path"]}
        source = self.loaded.sources.get(self.train.span.file)
        folder = source.path.parent if source is not None and source.path is not None else None
        path = os.path.abspath(written if folder is None else folder / written)
        return WeightsSource(path=path, written=written, match=match)

    def _s_freeze(self, setting: ast.Setting) -> Any:
        found: list[tuple[str, Span]] = []

        def read(expr: ast.Expr) -> Any:
            value = constant(expr, self.diags)
            if isinstance(value, Symbol):  # `freeze features`: a name, not a pattern
                self._err(codes.RECIPE_VALUE, f"`freeze` takes \"patterns\", got the name "
                          f"`{value}`", expr.span, "not a string",
                          help=f'quote it, with `.*` for everything under a layer: '
                          f'`freeze "{value}.*"`')
                return POISON
            value = check_value(FREEZE, value, expr.span, "`freeze`", self.diags)
            if value is not POISON:
                found.extend(zip(value, _pattern_spans(expr)))
            return value

        items = self._list(setting, read, "pattern")
        self.patterns["freeze"] = found
        return POISON if items is POISON else tuple(p for item in items for p in item)

    def _s_lr_groups(self, setting: ast.Setting) -> Any:
        def read(expr: ast.Expr) -> Any:
            parts = call_parts(expr)
            if parts is None:
                self._err(codes.RECIPE_CHOICE, f"expected a learning-rate group, found "
                          f"{_found(expr)}", expr.span, "not a group",
                          help=f"e.g. `{EXAMPLES['lr_groups']}`")
                return POISON
            chosen = self._choice(expr, {"group": LR_GROUP}, "learning-rate group")
            if chosen is None:
                return POISON
            _, bound = chosen
            match = bound.values["match"]
            given = _argument(parts[2], "match", 0)
            spans = _pattern_spans(given) if given is not None else [expr.span]
            self.groups.append((expr.span, list(zip(match, spans))))
            return LrGroup(match=match, lr=bound.values["lr"])

        return self._list(setting, read, "group")

    def _s_clip(self, setting: ast.Setting) -> Any:
        chosen = self._choice(self._one(setting), CLIPS, "clipping")
        if chosen is None:
            return POISON
        return ClipSpec.model_validate({"kind": chosen[0].kind, "value": chosen[1].values["value"]})

    def _s_augment(self, setting: ast.Setting) -> Any:
        def read(expr: ast.Expr) -> Any:
            chosen = self._choice(expr, AUGMENTS, "augmentation")
            if chosen is None:
                return POISON
            sig, bound = chosen
            args = dict(bound.values)
            if sig.kind == "normalize" and (args["mean"] is None) != (args["std"] is None):
                given = "mean" if args["mean"] is not None else "std"
                self._err(codes.RECIPE_VALUE, "normalize needs both `mean` and `std`, or neither",
                          bound.spans[given], help="without them, both are measured on the "
                          "training split")
                return POISON
            return AugmentSpec(kind=sig.kind, args=args)

        return self._list(setting, read, "augmentation")

    def _s_early_stop(self, setting: ast.Setting) -> Any:
        span = self.spans["early_stop"]
        bound = bind(EARLY_STOP, setting.args, span, self.diags, what="`early_stop`")
        if bound is None:
            return POISON
        self.items["early_stop"] = [bound.spans.get(k, span) for k in ("patience", "monitor")]
        v = bound.values
        return EarlyStopSpec(patience=v["patience"], monitor=v["monitor"], min_delta=v["min_delta"],
                             mode="max" if v["monitor"] == "val_accuracy" else "min")

    def _s_ensemble(self, setting: ast.Setting) -> Any:
        bound = bind(ENSEMBLE, setting.args, self.spans["ensemble"], self.diags,
                     what="`ensemble`")
        if bound is None:
            return POISON
        return EnsembleSpec(members=bound.values["members"], mode=bound.values["mode"])

    def _s_cv(self, setting: ast.Setting) -> Any:
        chosen = self._choice(self._one(setting), {"kfold": CV}, "cross-validation")
        if chosen is None:
            return POISON
        _, bound = chosen
        if bound.values["k"] is None:  # an estimate of the recipe's own model
            self.items["cv"] = [bound.spans["folds"], None]
            return CvSpec(folds=bound.values["folds"])
        values = bound.values["k"] if isinstance(bound.values["k"], tuple) else (bound.values["k"],)
        # "numbers" reads every value as a float (its range [1, inf) is checked): 3.0 is 3
        wrong = next((v for v in values if not float(v).is_integer()), None)
        if wrong is not None:
            self._err(codes.RECIPE_VALUE, f"`k` takes whole numbers of neighbours, got {wrong:g}",
                      bound.spans["k"], "not an integer", help="e.g. `k=(1, 3, 5, 7)`")
            return POISON
        values = tuple(int(v) for v in values)
        if len(set(values)) != len(values):
            self._err(codes.DUPLICATE, "a value of `k` is given twice", bound.spans["k"],
                      "repeated", help=f"list each once: k={tuple(sorted(set(values)))}")
            return POISON
        self.items["cv"] = [bound.spans["folds"], bound.spans["k"]]
        return CvSpec(folds=bound.values["folds"], k=values)

    def _s_metrics(self, setting: ast.Setting) -> Any:
        seen: dict[str, Span] = {}

        def read(expr: ast.Expr) -> Any:
            if not isinstance(expr, ast.Name):
                self._err(codes.RECIPE_CHOICE, f"expected a metric, found {_found(expr)}",
                          expr.span, notes=[f"metrics: {', '.join(METRICS)}"])
                return POISON
            metric = choose(expr.id, expr.span, {m: m for m in METRICS}, "metric", self.diags,
                            ELSEWHERE)
            if metric in seen:
                self._err(codes.DUPLICATE, f"metric `{metric}` is given twice", expr.span,
                          "given again", secondary=[(seen[metric], "first given here")])
                return POISON
            if metric is not POISON:
                seen[metric] = expr.span
            return metric

        return self._list(setting, read, "metric")

    # == defaults and the result ========================================================
    def fill_defaults(self) -> None:
        v = self.values
        for key, value in DEFAULTS.items():
            v.setdefault(key, value)
        if v["solver"] in ("normal_equation", "knn"):
            # one exact solve (or storing the split) on the whole training split: one "epoch"
            v["epochs"], v["batch"] = 1, None
        if "batch" not in v:
            gd = v["optimizer"] is not POISON and v["optimizer"].kind == "gd"
            v["batch"] = None if gd else 32
        if "metrics" not in v:
            classify = v["loss"] in CLASSIFICATION_LOSSES and v["target"] == "labels"
            v["metrics"] = ("accuracy",) if classify else ("mae",)
            v["metrics"] = POISON if v["loss"] is POISON else v["metrics"]

    def recipe(self, model_args: dict[str, Any]) -> Recipe | None:
        if any(d.severity == "error" for d in self.diags) or POISON in self.values.values():
            return None
        keys = ("data", "split", "batch", "epochs", "loss", "target", "optimizer", "schedule",
                "regularize", "init", "clip", "augment", "early_stop", "metrics", "seed", "device",
                "solver", "freeze", "lr_groups", "ensemble", "cv")
        return Recipe(name=self.name, model=self.train.model, model_args=model_args,
                      span=self.train.span, **{k: self.values[k] for k in keys})
