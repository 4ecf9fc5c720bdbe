"""Elaboration: AST -> IR. Resolves blocks, parameters, expressions, repeats and names, binds
arguments to ops, runs every shape rule, and collects all errors without cascades.

A value that failed is POISON; anything computed from it is POISON too and reports nothing,
so one mistake gives one error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from . import ast, bounds, codes
from .arguments import (
    Symbol,
    bind_op_args,
    describe,
    op_fields,
    option_words,
    positional_after_keyword,
    validation_diagnostics,
)
from .diagnostics import Diagnostic, DiagnosticError, error, warning
from .ir import Graph, GraphInput, GraphOutput, Node, ReceptiveField, TensorType
from .loader import Loaded
from .ops import REGISTRY, Op, ShapeError, receptive_field
from .ops.axes import MULTI_OUTPUT
from .passes.lint import lint
from .passes.summary import field_lost
from .source import Span
from .suggest import did_you_mean

DEFAULT_MAX_PARAMS = 10 * 10**9
MAX_ELEMENTS = 2**31
MAX_REPEAT = 10_000
MAX_NODES = 1_000_000  # layers per model, repeats included
MAX_BLOCK_DEPTH = 64  # blocks used inside blocks
BYTES = {"float32": 4, "int64": 8}
BUDGET_NAMES = ("params", "trainable_params", "buffers", "macs", "memory", "receptive_field")
TENSOR_FACTS = ("channels", "shape", "rank", "numel")
TENSOR_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div"}  # spec/ops/arithmetic.py
BUILTINS = {"min": min, "max": max, "abs": abs, "int": int, "round": round, "float": float}


class _Poison:
    def __repr__(self) -> str:
        return "POISON"


POISON: Any = _Poison()


class Abort(Exception):
    """Stops evaluating the current statement after its error was recorded."""


@dataclass(frozen=True)
class Tensor:
    """A tensor value while the graph is built: the IR value it names, its type and field.

    ``unknown`` is set once the receptive field is unknown (not merely absent): the layer that
    lost it, as (name, op, span). It stays set downstream, so no total shrinks to a smaller
    known field.
    """

    ref: str
    type: TensorType
    rf: ReceptiveField | None
    span: Span
    unknown: tuple[str, str, Span] | None = None


@dataclass
class Scope:
    definition: ast.Definition
    prefix: str
    names: dict[str, Any]
    name_spans: dict[str, Span]
    rounding: str
    first_node: int
    used: set[str] = field(default_factory=set)
    tensor_bindings: dict[str, Span] = field(default_factory=dict)

    def child(self, prefix: str) -> Scope:
        """Same names, deeper module path: the layers of `name = chain` live under `name.`."""
        return Scope(self.definition, prefix, self.names, self.name_spans, self.rounding,
                     self.first_node, self.used, self.tensor_bindings)


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def snake(name: str) -> str:
    """`BasicBlock` -> `basic_block`, `ConvBNReLU` -> `conv_bn_re_lu`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class Elaborator:
    def __init__(self, loaded: Loaded, *, max_params: int = DEFAULT_MAX_PARAMS):
        self.loaded = loaded
        self.max_params = max_params
        self.diags: list[Diagnostic] = []
        self.nodes: list[Node] = []
        self.node_names: set[str] = set()
        self.label_spans: dict[str, Span] = {}
        self.counters: dict[tuple[str, str], int] = {}
        self.block_stack: list[str] = []
        self.reported_asserts: set[int] = set()
        self.where: Span | None = None  # the innermost statement being elaborated
        self.too_many_nodes = False

    # == entry ====================================================================
    def model(self, name: str, args: dict[str, Any] | None = None) -> Graph:
        definition = self.loaded.definitions.get(name)
        if definition is None or definition.kind != "model":
            models = [d.name for d in self.loaded.definitions.values() if d.kind == "model"]
            raise DiagnosticError([error(
                codes.NO_MODEL, f"no model named `{name}`", None,
                notes=[f"models: {', '.join(models) or 'none'}"], help=did_you_mean(name, models),
            )], self.loaded.sources)
        scope = Scope(definition, "", {}, {}, "exact", 0)
        try:
            return self._model(name, definition, scope, args or {})
        except RecursionError:  # a last resort: the limits on nesting should come first
            self.diags.append(error(codes.TOO_DEEP, "spec nested too deeply to elaborate", self.where,
                                    "while elaborating this", help="split deep expressions and blocks"))
            raise DiagnosticError(self.diags, self.loaded.sources) from None

    def _model(self, name: str, definition: ast.Definition, scope: Scope, args: dict[str, Any]) -> Graph:
        self.where = definition.name_span
        self._bind_params(definition, [], args, definition.name_span, scope, from_cli=True)
        inputs: list[GraphInput] = []
        for stmt in definition.body:
            if isinstance(stmt, ast.InputDecl):
                try:
                    graph_input = self._model_input(stmt, scope)
                except Abort:
                    scope.names[stmt.name] = POISON
                    continue
                if graph_input is not None:
                    inputs.append(graph_input)
        if not inputs and not any(isinstance(s, ast.InputDecl) for s in definition.body):
            self.diags.append(error(codes.BAD_INPUT, f"model `{name}` has no input", definition.name_span,
                                    help="declare one, e.g. `input x: [1, 28, 28]`"))
        outputs = self._body(definition, scope)
        self._check_total(definition, scope)
        self.diags.sort(key=lambda d: (d.span.file, d.span.start) if d.span else ("", -1))
        errors = [d for d in self.diags if d.severity == "error"]
        if errors:
            raise DiagnosticError(self.diags, self.loaded.sources)
        graph_outputs = tuple(
            GraphOutput(name=out_name, value=value.ref, type=value.type) for out_name, value in outputs
        )
        params = {p.name for p in definition.params}
        return Graph(
            name=name,
            args={k: _plain(v) for k, v in scope.names.items() if not isinstance(v, Tensor) and k in params},
            inputs=tuple(inputs), nodes=tuple(self.nodes), outputs=graph_outputs, span=definition.span,
        )

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diags if d.severity == "warning"]

    # == definitions ====================================================================
    def _bind_params(self, definition, positional, keywords: dict[str, Any], call_span, scope, *,
                     from_cli=False, keyword_spans=None) -> bool:
        params = definition.params
        names = [p.name for p in params]
        ok = True
        seen: set[str] = set()
        for p in params:
            if p.name in seen:
                self._error(codes.DUPLICATE, f"parameter `{p.name}` declared twice", p.span)
                ok = False
            seen.add(p.name)
        if len(positional) > len(params):
            self._error(codes.TOO_MANY_ARGS,
                        f"`{definition.name}` takes {len(params)} arguments but {len(positional)} {'was' if len(positional) == 1 else 'were'} given",
                        positional[len(params)][1], "extra argument")
            ok = False
        given: dict[str, tuple[Any, Span]] = {}
        for p, (value, span) in zip(params, positional):
            given[p.name] = (value, span)
        for key, value in keywords.items():
            span = (keyword_spans or {}).get(key, call_span)
            if from_cli and _not_finite(value):
                self._error(codes.BAD_ARG, f"invalid value for `{key}` of `{definition.name}`: {value}", span,
                            "not a finite number")
                ok = False
                continue
            if from_cli and isinstance(value, int) and not isinstance(value, bool) and not bounds.int_in_range(value):
                self._error(codes.NUMBER_RANGE, f"value for `{key}` of `{definition.name}` out of range: "
                            f"{bounds.show(value)}", span, "too large", notes=[bounds.RANGE_NOTE])
                ok = False
                continue
            if key not in names:
                what = "model" if definition.kind == "model" else "block"
                self._error(codes.UNKNOWN_ARG, f"{what} `{definition.name}` has no parameter `{key}`", span,
                            "unknown argument", notes=[f"parameters: {', '.join(names) or 'none'}"],
                            help=did_you_mean(key, names))
                ok = False
                continue
            if key in given:  # `Block(8, 3, k=5)`: given by position too
                self._error(codes.DUPLICATE, f"argument `{key}` given twice", span, "given again",
                            secondary=[(given[key][1], "first given here")])
                ok = False
                continue
            given[key] = (value, span)
        for p in params:
            if p.name in given:
                value, span = given[p.name]
            elif p.default is not None:
                try:
                    value, span = self._expr(p.default, scope), p.default.span
                except Abort:
                    scope.names[p.name] = POISON
                    ok = False
                    continue
            else:
                self._error(codes.MISSING_ARG,
                            f"`{definition.name}` needs a value for `{p.name}`", call_span,
                            f"`{p.name}` missing",
                            notes=[f"declared at {p.span}"],
                            help="pass it with `--set name=value`" if from_cli else None)
                scope.names[p.name] = POISON
                ok = False
                continue
            scope.names[p.name] = self._check_param_type(p, value, span, definition)
        return ok

    def _check_param_type(self, p: ast.Param, value: Any, span: Span, definition) -> Any:
        if value is POISON or p.type is None:
            return value
        checks = {
            "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "bool": lambda v: isinstance(v, bool),
            "str": lambda v: isinstance(v, str),
            "tensor": lambda v: isinstance(v, Tensor),
        }
        check = checks.get(p.type)
        if check is None:
            self._error(codes.BAD_ARG, f"unknown parameter type `{p.type}`", p.span,
                        help=did_you_mean(p.type, checks) or f"types: {', '.join(checks)}")
            return POISON
        if not check(value):
            self._error(codes.BAD_ARG, f"`{p.name}` of `{definition.name}` must be {p.type}, got {self._show(value)}",
                        span, f"expected {p.type}")
            return POISON
        if p.type == "float":
            try:
                return float(value)
            except OverflowError:
                self._error(codes.BAD_ARG, f"`{p.name}` of `{definition.name}` is too large for a float", span,
                            "too large")
                return POISON
        return value

    def _model_input(self, stmt: ast.InputDecl, scope: Scope) -> GraphInput | None:
        if stmt.type is None:
            self._error(codes.BAD_INPUT, f"model input `{stmt.name}` needs a shape", stmt.span,
                        help=f"e.g. `input {stmt.name}: [1, 28, 28]` (channels, height, width)")
            scope.names[stmt.name] = POISON
            return None
        dtype = {None: "float32", "float": "float32", "int": "int64"}.get(stmt.type.dtype)
        if dtype is None:
            self._error(codes.BAD_INPUT, f"unknown element type `{stmt.type.dtype}`", stmt.type.span,
                        help="use `int[...]` for token ids, or no prefix for floats")
            scope.names[stmt.name] = POISON
            return None
        dims = []
        for dim in stmt.type.dims:
            value = self._expr(dim, scope)
            if value is POISON:
                scope.names[stmt.name] = POISON
                return None
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                self._error(codes.BAD_INPUT, f"input sizes must be positive integers, got {self._show(value)}",
                            dim.span)
                scope.names[stmt.name] = POISON
                return None
            dims.append(value)
        input_type = TensorType(shape=tuple(dims), dtype=dtype)
        if input_type.numel > MAX_ELEMENTS:
            self._error(codes.LIMIT, f"input `{stmt.name}` has {input_type.numel:,} elements per sample",
                        stmt.type.span, notes=[f"limit: {MAX_ELEMENTS:,} elements per tensor"])
            scope.names[stmt.name] = POISON
            return None
        if stmt.name in scope.names:
            self._error(codes.DUPLICATE, f"`{stmt.name}` is already defined", stmt.span)
        rf = ReceptiveField(size=1, jump=1.0) if len(dims) >= 2 and dtype == "float32" else None
        scope.names[stmt.name] = Tensor(stmt.name, input_type, rf, stmt.span)
        scope.name_spans[stmt.name] = stmt.span
        return GraphInput(name=stmt.name, type=input_type, span=stmt.span)

    def _body(self, definition: ast.Definition, scope: Scope) -> list[tuple[str, Tensor]]:
        """Run a model or block body; return its outputs as (name, value)."""
        outputs: list[tuple[str, Tensor]] = []
        output_spans: dict[str, Span] = {}
        asserts: list[ast.Assert] = []
        poisoned_output = False
        errors_before = sum(d.severity == "error" for d in self.diags)

        def add_output(name: str, value: Any, span: Span) -> None:
            nonlocal poisoned_output
            if name in output_spans:
                self._error(codes.DUPLICATE, f"output `{name}` given twice", span,
                            secondary=[(output_spans[name], "first given here")])
                return
            output_spans[name] = span
            if value is POISON:
                poisoned_output = True
            elif not isinstance(value, Tensor):
                self._error(codes.BAD_EXPR, f"an output must be a tensor, got {self._show(value)}", span)
            else:
                outputs.append((name, value))

        for stmt in definition.body:
            self.where = stmt.span
            first_diag = len(self.diags)
            try:
                if isinstance(stmt, ast.InputDecl):
                    continue  # bound before the body runs
                if isinstance(stmt, ast.Binding):
                    self._binding(stmt, scope)
                elif isinstance(stmt, ast.ChainStmt):
                    chain = stmt.chain
                    try:
                        value = self._expr(chain, scope, top=True)
                    except Abort:
                        value = POISON
                    if isinstance(chain, ast.Chain) and chain.output_span is not None:
                        add_output("output", value, chain.output_span)
                    elif isinstance(value, Tensor):
                        self.diags.append(warning(
                            codes.UNUSED, "the result of this chain is never used", stmt.span,
                            help="end it with `-> output`, or bind it with `name = chain`"))
                elif isinstance(stmt, ast.OutputStmt):
                    for name, span in stmt.names:
                        add_output(name, self._lookup(name, span, scope), span)
                elif isinstance(stmt, ast.Assert):
                    asserts.append(stmt)
                elif isinstance(stmt, ast.RoundingStmt):
                    if stmt.mode not in ("exact", "floor"):
                        self._error(codes.BAD_ARG, f"unknown rounding `{stmt.mode}`", stmt.mode_span,
                                    "expected `exact` or `floor`",
                                    help="`ceil` exists per pooling layer: `maxpool(3, stride=2, rounding=ceil)`")
                    else:
                        scope.rounding = stmt.mode
            except Abort:
                pass
            finally:
                # a statement that failed may have stopped before looking its names up (an
                # unknown layer's arguments, a value bound twice): what it names counts as used,
                # so the unused-value warning does not add noise to the real error
                if any(d.severity == "error" for d in self.diags[first_diag:]):
                    scope.used.update(_names(stmt))
        if not outputs and not poisoned_output and not output_spans:
            self._error(codes.MISSING_OUTPUT, f"{definition.kind} `{definition.name}` has no output",
                        definition.name_span, help="end a chain with `-> output`")
        for name, span in scope.tensor_bindings.items():
            if name not in scope.used and name not in output_spans:
                self.diags.append(warning(codes.UNUSED, f"value `{name}` is never used", span,
                                          help="use it, output it, or remove it"))
        # a layer that failed counts nothing: its budget assertions would only echo the error
        incomplete = sum(d.severity == "error" for d in self.diags) > errors_before
        for stmt in asserts:
            if incomplete and any(_mentions(stmt.expr, key) for key in BUDGET_NAMES):
                continue
            self.where = stmt.span
            self._assert(stmt, scope, outputs)
        return outputs

    def _binding(self, stmt: ast.Binding, scope: Scope) -> None:
        parts = _parts_call(stmt.value)
        if stmt.more or parts is not None:
            self._tuple_binding(stmt, parts, scope)
            return
        if stmt.name in scope.names:
            self._error(codes.DUPLICATE, f"`{stmt.name}` is already defined", stmt.name_span, "defined again",
                        secondary=[(scope.name_spans[stmt.name], "first defined here")]
                        if stmt.name in scope.name_spans else ())
            return
        if isinstance(stmt.value, ast.Chain) and stmt.value.output_span is not None:
            self._error(codes.SYNTAX, "a bound value cannot end in `-> output`", stmt.value.output_span,
                        help=f"write `output {stmt.name}` on its own line")
        scope.name_spans[stmt.name] = stmt.name_span
        try:
            value = self._expr(stmt.value, scope.child(join(scope.prefix, stmt.name)), top=True)
        except Abort:
            value = POISON
        scope.names[stmt.name] = value
        if isinstance(value, Tensor):
            scope.tensor_bindings[stmt.name] = stmt.name_span

    def _tuple_binding(self, stmt: ast.Binding, parts: ast.Call | ast.Name | None, scope: Scope) -> None:
        """``a, b = x -> ... -> split(2)``: the chain before the split runs under the prefix
        ``a_b.``; part i is a `slice` node named after the i-th name."""
        names = stmt.names
        ok = True
        seen: dict[str, Span] = {}
        for name, span in names:
            first = seen.get(name) or scope.name_spans.get(name)
            if name in seen or name in scope.names:
                self._error(codes.DUPLICATE, f"`{name}` is already defined", span, "defined again",
                            secondary=[(first, "first defined here")] if first else ())
                ok = False
            seen[name] = span
        names_span = _cover(names[0][1], names[-1][1])
        if parts is None:
            self._error(codes.BAD_EXPR, f"{len(names)} names are bound to one value", names_span,
                        f"{len(names)} names", secondary=[(stmt.value.span, "one value")],
                        help="a layer with several outputs ends the chain: `split(k)`, "
                        "`split([sizes])` or `chunk(n)`")
            ok = False
        if not ok:
            for name, _ in names:
                scope.names.setdefault(name, POISON)
            return
        assert parts is not None and isinstance(stmt.value, ast.Chain)
        for name, span in names:
            scope.name_spans[name] = span
            scope.names[name] = POISON  # until the parts exist
        chain = stmt.value
        before = ast.Chain(span=chain.span, head=chain.head, layers=chain.layers[:-1]) \
            if len(chain.layers) > 1 else chain.head
        inner = scope.child(join(scope.prefix, "_".join(n for n, _ in names)))
        try:
            x = self._expr(before, inner, top=True)
        except Abort:
            x = POISON
        if x is not POISON and not isinstance(x, Tensor):
            self._error(codes.BAD_EXPR, f"only a tensor can flow into a layer, got {self._show(x)}",
                        chain.head.span)
            x = POISON
        values = self._parts(parts, x, names, names_span, scope)
        for (name, _), value in zip(names, values, strict=True):
            scope.names[name] = value
            if isinstance(value, Tensor):
                scope.tensor_bindings[name] = scope.name_spans[name]

    def _parts(self, node: ast.Call | ast.Name, x: Any, names, names_span: Span, scope: Scope) -> list[Any]:
        """Bind a split's arguments, compute its parts and make one slice per name."""
        poison = [POISON] * len(names)
        kind = node.func if isinstance(node, ast.Call) else node.id
        cls = MULTI_OUTPUT[kind]
        args = node.args if isinstance(node, ast.Call) else ()
        slots = iter(cls.positional)
        positional = [(self._arg_value(a.value, scope, symbols=True, options=option_words(cls, next(slots, None))), a)
                      for a in args if a.name is None]
        keywords = [(self._arg_value(a.value, scope, symbols=True, options=option_words(cls, a.name)), a)
                    for a in args if a.name is not None]
        misplaced = positional_after_keyword(args, cls.positional)
        if misplaced is not None:
            self.diags.append(misplaced)
            return poison
        try:
            layer, spans = self._bind(cls, node.span, positional, keywords, scope)
        except Abort:
            return poison
        if layer is POISON:
            return poison
        if x is POISON:
            return poison
        try:
            axis, pieces = layer.pieces(x.type)
        except ShapeError as exc:
            self._shape_error(cls, exc, node, [x], [None], spans)
            return poison
        if len(pieces) != len(names):
            sizes = ", ".join(str(b - a) for a, b in pieces)
            self._error(codes.BAD_EXPR, f"`{kind}` gives {len(pieces)} parts but {len(names)} "
                        f"name{'s are' if len(names) != 1 else ' is'} bound", names_span,
                        f"{len(names)} name{'s' if len(names) != 1 else ''}",
                        secondary=[(node.span, f"{len(pieces)} parts of sizes {sizes}")],
                        notes=[f"input {x.type}, split along axis {axis}"],
                        help=f"bind {len(pieces)} names, or ask for {len(names)} part{'s' if len(names) != 1 else ''}")
            return poison
        out = []
        for (name, span), (start, stop) in zip(names, pieces, strict=True):
            keywords = {key: (value, ast.Arg(node.span, key, node))
                        for key, value in (("start", start), ("stop", stop), ("axis", axis))}
            out.append(self._apply(REGISTRY["slice"], node, [x], [None], [], keywords, name, span, scope))
        return out

    # == expressions ===================================================================
    def _expr(self, node: ast.Expr, scope: Scope, top: bool = False) -> Any:
        method = getattr(self, "_e_" + type(node).__name__)
        return method(node, scope)

    def _e_Number(self, node: ast.Number, scope):
        return node.value

    def _e_String(self, node: ast.String, scope):
        return node.value

    def _e_Bool(self, node: ast.Bool, scope):
        return node.value

    def _e_Name(self, node: ast.Name, scope):
        return self._lookup(node.id, node.span, scope)

    def _lookup(self, name: str, span: Span, scope: Scope, symbol_ok: bool = False) -> Any:
        if name in scope.names:
            scope.used.add(name)
            return scope.names[name]
        if symbol_ok:
            return Symbol(name)
        candidates = list(scope.names)
        hint = did_you_mean(name, candidates)
        if name in REGISTRY or name in self.loaded.definitions:
            hint = f"`{name}` is a layer: apply it with `->`, e.g. `x -> {name}`"
        self._error(codes.UNKNOWN_NAME, f"unknown name `{name}`", span, "not defined here",
                    notes=[f"defined here: {', '.join(candidates)}"] if candidates else (), help=hint)
        raise Abort

    def _e_Tuple(self, node: ast.Tuple, scope):
        values = tuple(self._expr(item, scope) for item in node.items)
        return POISON if any(v is POISON for v in values) else values

    def _e_Attribute(self, node: ast.Attribute, scope):
        obj = self._expr(node.obj, scope)
        if obj is POISON:
            return POISON
        if not isinstance(obj, Tensor):
            self._error(codes.BAD_EXPR, f"`.{node.attr}` needs a tensor, got {self._show(obj)}", node.span)
            raise Abort
        facts = {"channels": obj.type.shape[0] if obj.type.shape else 1, "shape": obj.type.shape,
                 "rank": obj.type.rank, "numel": obj.type.numel}
        if node.attr not in facts:
            self._error(codes.BAD_EXPR, f"a tensor has no fact `{node.attr}`", node.attr_span,
                        notes=[f"facts: {', '.join(TENSOR_FACTS)}"], help=did_you_mean(node.attr, facts))
            raise Abort
        return facts[node.attr]

    def _e_Index(self, node: ast.Index, scope):
        obj, index = self._expr(node.obj, scope), self._expr(node.index, scope)
        if POISON in (obj, index):
            return POISON
        if not isinstance(obj, tuple) or not isinstance(index, int) or isinstance(index, bool):
            self._error(codes.BAD_EXPR, f"cannot index {self._show(obj)} with {self._show(index)}", node.span)
            raise Abort
        if not -len(obj) <= index < len(obj):
            self._error(codes.BAD_EXPR, f"index {index} is out of range for {self._show(obj)}",
                        node.index.span, f"valid: 0 to {len(obj) - 1}",
                        notes=["shapes exclude the batch dimension: x.shape[0] is the channels"])
            raise Abort
        return obj[index]

    def _e_Unary(self, node: ast.Unary, scope):
        value = self._expr(node.operand, scope)
        if value is POISON:
            return POISON
        if node.op == "not":
            return not self._bool(value, node.operand.span)
        if isinstance(value, Tensor):  # `-x` is `x * -1`
            arg = ast.Arg(node.span, "scalar", node)
            return self._apply(REGISTRY["mul"], node, [value], [node.operand], [], {"scalar": (-1.0, arg)},
                               None, None, scope)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self._error(codes.BAD_EXPR, f"cannot negate {self._show(value)}", node.span)
            raise Abort
        return -value

    def _e_If(self, node: ast.If, scope):
        cond = self._expr(node.cond, scope)
        if cond is POISON:
            return POISON
        if not isinstance(cond, bool):
            self._error(codes.BAD_EXPR, f"the condition of `if` must be true or false, got {self._show(cond)}",
                        node.cond.span, "not a condition", help="compare it, e.g. `if c > 0 { ... }`")
            raise Abort
        branch = node.then if cond else node.orelse
        return self._expr(branch, scope)

    def _e_BinOp(self, node: ast.BinOp, scope):
        if node.op in ("and", "or"):
            left = self._expr(node.left, scope)
            if left is POISON:
                return POISON
            if self._bool(left, node.left.span) == (node.op == "or"):
                return node.op == "or"
            right = self._expr(node.right, scope)
            return POISON if right is POISON else self._bool(right, node.right.span)
        left, right = self._expr(node.left, scope), self._expr(node.right, scope)
        if left is POISON or right is POISON:
            return POISON
        if isinstance(left, Tensor) or isinstance(right, Tensor):
            return self._tensor_arith(node, left, right, scope)
        return self._arith(node, left, right)

    def _tensor_arith(self, node: ast.BinOp, left: Any, right: Any, scope: Scope) -> Any:
        """`a + b`, `x * s`, `x * 0.5`, `1 - x`: an elementwise layer (spec/ops/arithmetic.py)."""
        kind = TENSOR_OPS.get(node.op)
        number = next((v for v in (left, right) if not isinstance(v, Tensor)), None)
        if kind is None or number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))):
            self._error(codes.BAD_EXPR, f"cannot apply `{node.op}` to {self._show(left)} and {self._show(right)}",
                        node.op_span, help="tensors take `+`, `-`, `*` and `/` with a tensor or a number")
            raise Abort
        if number is None:
            return self._apply(REGISTRY[kind], node, [left, right], [node.left, node.right], {}, {},
                               None, None, scope)
        first = not isinstance(left, Tensor)
        tensor, number_node = (right, node.left) if first else (left, node.right)
        if node.op == "/" and number == 0 and not first:
            self._error(codes.BAD_EXPR, "division by zero", number_node.span, "this is 0")
            raise Abort
        keywords = {"scalar": (float(number), ast.Arg(number_node.span, "scalar", number_node))}
        if first and kind in ("sub", "div"):
            keywords["scalar_first"] = (True, ast.Arg(number_node.span, "scalar_first", number_node))
        return self._apply(REGISTRY[kind], node, [tensor], [node.right if first else node.left],
                           [], keywords, None, None, scope)

    def _arith(self, node: ast.BinOp, left: Any, right: Any) -> Any:
        op = node.op
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right))
        if op in ("==", "!="):
            return (left == right) == (op == "==")
        if not numbers:
            self._error(codes.BAD_EXPR, f"cannot apply `{op}` to {self._show(left)} and {self._show(right)}",
                        node.op_span)
            raise Abort
        try:
            if op == "+":
                result = left + right
            elif op == "-":
                result = left - right
            elif op == "*":
                result = left * right
            elif op == "/":
                exact = isinstance(left, int) and isinstance(right, int) and right and left % right == 0
                result = left // right if exact else left / right
            elif op == "//":
                result = left // right
            elif op == "%":
                result = left % right
            elif op == "**":
                if not bounds.fits_pow(left, right):  # judged before computing: it could take minutes
                    self._error(codes.NUMBER_RANGE, "integer result out of range", node.span,
                                f"about {_pow_digits(left, right)} digits", notes=[bounds.RANGE_NOTE])
                    raise Abort
                result = left**right
            else:
                return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
        except ZeroDivisionError:
            self._error(codes.BAD_EXPR, "division by zero", node.right.span, "this is 0")
            raise Abort from None
        except OverflowError:
            self._error(codes.BAD_EXPR, "number too large", node.span)
            raise Abort from None
        self._check_number(result, node)
        return result

    def _check_number(self, value: Any, node: ast.Node) -> None:
        """Only finite real numbers are values: infinities, NaN and complex numbers do not fit
        the IR (nor JSON)."""
        if isinstance(value, complex):
            self._error(codes.BAD_EXPR, "the result is not a real number", node.span, f"this is {value:.3g}",
                        help="a negative number has no real fractional power")
            raise Abort
        if isinstance(value, int) and not isinstance(value, bool) and not bounds.int_in_range(value):
            self._error(codes.NUMBER_RANGE, "integer result out of range", node.span,
                        f"this is {bounds.show(value)}", notes=[bounds.RANGE_NOTE])
            raise Abort
        if isinstance(value, float) and not math.isfinite(value):
            self._error(codes.BAD_EXPR, "number too large" if not math.isnan(value) else "not a number",
                        node.span, f"this is {value}")
            raise Abort

    def _e_Call(self, node: ast.Call, scope):
        """A call outside a chain step: a builtin, or a multi-input layer such as `concat(a, b)`."""
        if node.func in BUILTINS:
            for arg in node.args:
                if arg.name is not None:
                    self._error(codes.UNKNOWN_ARG, f"`{node.func}` takes no keyword arguments",
                                arg.name_span or arg.span, "keyword argument",
                                help=f"give the value by position: `{node.func}(...)`")
                    raise Abort
            args = [self._expr(a.value, scope) for a in node.args]
            if POISON in args:
                return POISON
            try:
                result = BUILTINS[node.func](*args)
            except OverflowError:
                self._error(codes.BAD_EXPR, f"`{node.func}`: number too large", node.span)
                raise Abort from None
            except (TypeError, ValueError) as exc:
                self._error(codes.BAD_EXPR, f"`{node.func}`: {exc}", node.span)
                raise Abort from None
            self._check_number(result, node)
            return result
        op = REGISTRY.get(node.func)
        if op is not None and op.arity is None:
            return self._layer(node, None, None, None, scope)
        if op is not None or node.func in self.loaded.definitions:
            self._error(codes.BAD_EXPR, f"`{node.func}` needs an input", node.span, "no input",
                        help=f"apply it with `->`, e.g. `x -> {node.func}(...)`")
            raise Abort
        self._unknown_layer(node.func, node.func_span, scope)

    def _e_Chain(self, node: ast.Chain, scope):
        if node.head_label is not None:
            self._error(codes.BAD_EXPR, "a labelled group of layers needs a value to flow into it",
                        node.span, "a group of layers, not a value",
                        help=f"put it after an arrow: `x -> ({node.head_label}: ...)`")
            raise Abort
        try:
            value = self._expr(node.head, scope)
        except Abort:
            value = POISON
        if value is not POISON and not isinstance(value, Tensor):
            self._error(codes.BAD_EXPR, f"only a tensor can flow into a layer, got {self._show(value)}",
                        node.head.span, help="a chain starts with an input or a bound tensor value")
            value = POISON
        for layer in node.layers:
            # after a failure the remaining layers are still checked for errors of their own
            # (names, arguments), but not for shapes: those would only echo the first error
            try:
                value = self._step(layer, value, scope)
            except Abort:
                value = POISON
        return value

    # == layers ========================================================================
    def _step(self, step: ast.Layer, x: Any, scope: Scope) -> Any:
        layer, label = step.layer, step.label
        if isinstance(layer, ast.Chain):
            return self._group(layer, x, label, step.label_span, scope)
        if isinstance(layer, ast.BinOp) and layer.op == "*" and isinstance(layer.left, (ast.Call, ast.Name, ast.Chain)):
            count = self._expr(layer.right, scope)
            if count is POISON:
                return POISON
            if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_REPEAT:
                self._error(codes.BAD_ARG, f"a repeat count must be an integer from 0 to {MAX_REPEAT}, "
                            f"got {self._show(count)}", layer.right.span)
                raise Abort
            inner = scope.child(join(scope.prefix, label)) if label else scope
            if label:
                self._claim(inner.prefix, step.label_span)
            value: Any = x
            before = len(self.nodes)
            for i in range(count):
                if isinstance(layer.left, ast.Chain) and _labels_layers(layer.left):
                    # each repetition of a group that names its layers gets its own scope,
                    # as a block instance does: mlp.group_1.fc, mlp.group_2.fc
                    value = self._group(layer.left, value, f"group_{i + 1}", layer.left.span, inner)
                elif isinstance(layer.left, ast.Chain):
                    value = self._group(layer.left, value, None, None, inner)
                else:
                    value = self._layer(layer.left, value, None, None, inner)
                if value is POISON:
                    return POISON
                if i == 0 and before + (len(self.nodes) - before) * count > MAX_NODES:
                    each = len(self.nodes) - before
                    self.too_many_nodes = True
                    self._error(codes.LIMIT, f"this repeat makes {each * count:,} layers", layer.span,
                                f"{each:,} layer{'s' if each != 1 else ''} × {count:,}",
                                notes=[f"limit: {MAX_NODES:,} layers per model"])
                    raise Abort
            return value
        if isinstance(layer, (ast.Call, ast.Name)):
            return self._layer(layer, x, label, step.label_span, scope)
        self._error(codes.NOT_A_LAYER, "expected a layer after `->`", layer.span, "not a layer",
                    help="a step is an op (`relu`, `conv(6, 5)`), a block, or `Block(...) * n`")
        raise Abort

    def _group(self, chain: ast.Chain, x: Any, label: str | None, label_span: Span | None, scope: Scope) -> Any:
        """``x -> features: (conv(8, 3) -> relu)``: a sub-chain applied as one step; with a
        label its layers live under ``features.``, as a block call's do."""
        if chain.output_span is not None:
            self._error(codes.SYNTAX, "`output` cannot end a group of layers", chain.output_span,
                        help="end the whole chain with `-> output`, after the `)`")
            raise Abort
        inner = scope.child(join(scope.prefix, label)) if label else scope
        if label:
            self._claim(inner.prefix, label_span)
        value = x
        head = ast.Layer(span=chain.head.span, layer=chain.head, label=chain.head_label,
                         label_span=chain.head_label_span)
        for step in (head, *chain.layers):
            try:
                value = self._step(step, value, inner)
            except Abort:
                value = POISON
        return value

    def _layer(self, node: ast.Call | ast.Name, x: Tensor | None, label, label_span, scope) -> Any:
        name = node.func if isinstance(node, ast.Call) else node.id
        name_span = node.func_span if isinstance(node, ast.Call) else node.span
        args = node.args if isinstance(node, ast.Call) else ()
        op = REGISTRY.get(name)
        definition = self.loaded.definitions.get(name)
        if name in MULTI_OUTPUT and definition is None:
            self._error(codes.BAD_EXPR, f"`{name}` gives several values: bind each part to a name",
                        node.span, "several outputs",
                        help=f"end a binding with it: `a, b = x -> {name}(2)`")
            raise Abort
        if op is None and definition is None:
            self._unknown_layer(name, name_span, scope)
        positional, keywords = [], {}
        keyword_spans: dict[str, Span] = {}
        tensor_args: list[Tensor] = []
        tensor_nodes: list[ast.Expr] = []
        takes_tensors = op is not None and op.arity is None
        arg_diags: list[Diagnostic] = []  # errors of the call itself: they stop the layer
        for index, arg in enumerate(args):
            if op is None:
                options: frozenset[str] = frozenset()
            elif arg.name is not None:
                options = option_words(op, arg.name)
            else:
                slot = op.positional[index] if not takes_tensors and index < len(op.positional) else None
                options = option_words(op, slot)
            value = self._arg_value(arg.value, scope, symbols=op is not None, options=options)
            if arg.name is None and takes_tensors and (isinstance(value, Tensor) or value is POISON):
                tensor_args.append(value)
                tensor_nodes.append(arg.value)
            elif arg.name is None:
                positional.append((value, arg))
            elif arg.name in keywords:
                arg_diags.append(error(codes.DUPLICATE, f"argument `{arg.name}` given twice", arg.span,
                                       "given again",
                                       secondary=[(keywords[arg.name][1].span, "first given here")]))
            else:
                keywords[arg.name] = (value, arg)
                keyword_spans[arg.name] = arg.name_span or arg.span
        if op is not None:
            slots: Sequence[str] = () if takes_tensors else op.positional
        else:
            assert definition is not None
            slots = [p.name for p in definition.params]
        misplaced = positional_after_keyword(args, slots)
        if misplaced is not None:  # which argument is which is unknown: nothing else to check
            self.diags.extend([*arg_diags, misplaced])
            raise Abort
        if op is not None:
            inputs = ([x] if x is not None else []) + tensor_args
            operand_nodes = ([None] if x is not None else []) + tensor_nodes
            return self._apply(op, node, inputs, operand_nodes, positional, keywords, label, label_span, scope,
                               pending=arg_diags)
        assert definition is not None
        if definition.kind != "block":
            self._error(codes.NOT_A_LAYER, f"`{name}` is a model, not a block", name_span, "used as a layer",
                        secondary=[(definition.name_span, "defined as a model here")],
                        help="a model cannot be used as a layer; turn the reusable part into a `block`")
            raise Abort
        if arg_diags:  # the parameters are still checked, the body is not run
            self.diags.extend(arg_diags)
            x = POISON
        return self._block(definition, node, x, positional, keywords, keyword_spans, label, label_span, scope)

    def _arg_value(self, expr: ast.Expr, scope: Scope, symbols: bool,
                   options: frozenset[str] = frozenset()) -> Any:
        """Arguments may name options (`padding=same`): an undefined bare name is a Symbol,
        and so is one of the argument's own option words even where a value has that name
        (W0004 says the value is not used)."""
        if isinstance(expr, ast.Name) and symbols and expr.id in options and expr.id in scope.names:
            self.diags.append(warning(
                codes.OPTION_SHADOWS, f"`{expr.id}` here is the option, not the value `{expr.id}`",
                expr.span, "the option", secondary=[(scope.name_spans[expr.id], "this value is not used here")]
                if expr.id in scope.name_spans else [],
                help=f"rename the value (`n_{expr.id}`) if it was meant; the option reads the same to everyone"))
            return Symbol(expr.id)
        if isinstance(expr, ast.Name) and symbols and expr.id not in scope.names:
            return Symbol(expr.id)
        if isinstance(expr, ast.Tuple) and symbols:
            items = tuple(self._arg_value(i, scope, symbols, options) for i in expr.items)
            return POISON if POISON in items else items
        try:
            return self._expr(expr, scope)
        except Abort:
            return POISON

    def _unknown_layer(self, name: str, span: Span, scope: Scope) -> None:
        blocks = [d.name for d in self.loaded.definitions.values() if d.kind == "block"]
        hint = did_you_mean(name, list(REGISTRY) + list(MULTI_OUTPUT) + blocks)
        if hint is None and name in scope.names:
            hint = f"`{name}` is a value; values start chains, layers follow `->`"
        self._error(codes.UNKNOWN_OP, f"unknown layer `{name}`", span, "no op or block of this name",
                    help=hint)
        raise Abort

    def _bind(self, op: type[Op], call_span: Span, positional, keyword_list, scope: Scope,
              pending: Sequence[Diagnostic] = ()) -> tuple[Any, dict[str, Span]]:
        """The op instance of a call's arguments (POISON when one of them failed before), and
        each given argument's span; records the binding errors and raises Abort."""
        values, spans, diags = bind_op_args(op, call_span, positional, keyword_list)
        diags = [*pending, *diags]
        if any(v is POISON for v in values.values()):
            diags = [d for d in diags if d.code != codes.MISSING_ARG]
        if scope.rounding != "exact" and "rounding" not in values and "rounding" in op_fields(op)[0]:
            values["rounding"] = scope.rounding
        for key, value in values.items():
            if isinstance(value, Tensor):
                diags.append(error(codes.BAD_ARG, f"`{key}` of `{op.kind}` must be a number, not a tensor",
                                   spans[key]))
        for key, value in values.items():
            large = _large_count(value)
            if large is not None:
                diags.append(error(codes.NUMBER_RANGE, f"`{key}` of `{op.kind}` is out of range: {bounds.show(large)}",
                                   spans.get(key, call_span), "too large", notes=[bounds.COUNT_NOTE]))
        if diags:
            self.diags.extend(diags)
            raise Abort
        if poisoned_args(values):
            return POISON, spans
        plain = {k: str(v) if isinstance(v, Symbol) else v for k, v in values.items()}
        try:
            return op.model_validate(plain), spans
        except ValidationError as exc:
            self.diags.extend(validation_diagnostics(op, exc, values, spans, call_span))
            raise Abort from None

    def _apply(self, op: type[Op], node, inputs: Sequence[Tensor], operand_nodes, positional, keywords,
               label, label_span, scope, pending: Sequence[Diagnostic] = ()) -> Any:
        """Bind the arguments and run the shape rule. ``pending`` are errors already found in
        the call (an argument given twice): like binding errors, they stop the layer before
        its shape rule, which would only echo them."""
        call_span = node.span
        keyword_list = list(keywords.values()) if isinstance(keywords, dict) else []
        layer, spans = self._bind(op, call_span, positional, keyword_list, scope, pending)
        if layer is POISON:
            return POISON
        if any(t is POISON for t in inputs):
            return POISON  # the arguments are valid; the input already failed
        wanted = _inputs_wanted(op, len(inputs))
        if wanted is not None:
            self._error(codes.BAD_ARG, f"`{op.kind}` takes {wanted}, got {len(inputs)}", call_span)
            raise Abort
        types = [t.type for t in inputs]
        try:
            output = layer.infer(types)
            params = layer.param_shapes(types)
            buffers = layer.buffer_shapes(types)
            # the element limit comes before the counts (MACs and receptive fields may walk the
            # output); a parameter limit, reported by _limits, is the better message
            if sum(math.prod(s) for s in params.values()) <= self.max_params:
                self._early_limits(op.kind, call_span, output)
            macs = layer.macs(types, output)
            step = layer.receptive_step(types)
        except ShapeError as exc:
            self._shape_error(op, exc, node, inputs, operand_nodes, spans)
            raise Abort from None
        tied = self._ties(layer, params, spans, call_span, scope)
        params = {k: v for k, v in params.items() if k not in tied}
        name = self._node_name(scope.prefix, op.kind, label, label_span)
        rf = receptive_field([t.rf for t in inputs], step) if output.rank >= 2 else None
        # an unknown field stays unknown: the largest known field of another input is not it
        unknown = next((t.unknown for t in inputs if t.unknown is not None), None)
        if unknown is None and field_lost(any(t.rf is not None for t in inputs), rf, output):
            unknown = (name, op.kind, call_span)
        if unknown is not None:
            rf = None
        ir_node = Node(name=name, op=op.kind, attrs=layer.attrs(), inputs=tuple(t.ref for t in inputs),
                       output=output, params=params, buffers=buffers, macs=macs, receptive_field=rf,
                       span=call_span, tied=tied)
        self._limits(ir_node)
        if len(self.nodes) >= MAX_NODES:
            if not self.too_many_nodes:
                self.too_many_nodes = True
                self._error(codes.LIMIT, f"the model has more than {MAX_NODES:,} layers", call_span,
                            f"layer {MAX_NODES + 1:,}", notes=[f"limit: {MAX_NODES:,} layers per model"])
            raise Abort
        self.nodes.append(ir_node)
        return Tensor(name, output, rf, call_span, unknown)

    def _ties(self, layer: Op, params: dict[str, tuple[int, ...]], spans: dict[str, Span], call_span: Span,
              scope: Scope) -> dict[str, str]:
        """Resolve weight tying (`linear(vocab, tie=embed)`): the owner is an earlier layer, named
        by its module path (`h.embed`) or by the end of it when that is unique (`embed`), with a
        parameter of the same name and shape. Returns param -> "<owner>.<param>"."""
        tied = {}
        for key, owner in layer.ties().items():
            span = spans.get("tie", call_span)
            matches = [n for n in self.nodes if n.name == owner or n.name.endswith("." + owner)]
            exact = [n for n in matches if n.name == owner]
            if len(matches) > 1 and not exact:
                self._error(codes.BAD_ARG, f"`{owner}` names {len(matches)} layers", span, "which one?",
                            notes=[f"layers: {', '.join(n.name for n in matches[:8])}"],
                            help="give the layer's full module path")
                raise Abort
            node = (exact or matches or [None])[0]
            if node is None:
                owners = [n.name for n in self.nodes if key in n.params]
                self._error(codes.UNKNOWN_NAME, f"no earlier layer `{owner}` to tie `{key}` to", span,
                            "not a layer before this one",
                            notes=[f"layers with a `{key}`: {', '.join(owners[-8:])}"] if owners else (),
                            help=did_you_mean(owner, owners + [o.rsplit(".", 1)[-1] for o in owners]) or "label the layer that owns the weight, "
                            "e.g. `embed: embedding(vocab, dim)`, and tie to its label")
                raise Abort
            theirs = node.params.get(key)
            if theirs is None:
                self._error(codes.BAD_ARG, f"`{node.name}` ({node.op}) has no parameter `{key}` to share",
                            span, f"its parameters: {', '.join(node.params) or 'none'}",
                            secondary=[(node.span, "defined here")])
                raise Abort
            if tuple(theirs) != tuple(params[key]):
                self._error(codes.ARGUMENT_SHAPE, f"a tied `{key}` must have one shape: this layer's is "
                            f"{list(params[key])}, `{node.name}.{key}` is {list(theirs)}", span,
                            f"needs {list(params[key])}", secondary=[(node.span, f"{key} {list(theirs)}")],
                            help="a tied output layer has as many outputs as the embedding has rows, "
                            "and its input as many features as each row")
                raise Abort
            tied[key] = f"{node.name}.{key}"
        return tied

    def _shape_error(self, op, exc: ShapeError, node, inputs, operand_nodes, spans) -> None:
        shapes = ", ".join(str(t.type) for t in inputs)
        label = f"input{'s' if len(inputs) > 1 else ''} {shapes}"
        span = spans.get(exc.arg, node.span) if exc.arg else node.span
        secondary = []
        if exc.operand is not None and len(operand_nodes) > exc.operand and operand_nodes[exc.operand] is not None:
            first = operand_nodes[0]
            span = operand_nodes[exc.operand].span
            label = str(inputs[exc.operand].type)
            if first is not None:
                secondary.append((first.span, str(inputs[0].type)))
        elif exc.arg and exc.arg in spans:
            secondary = [(node.span, label)] if node.span != span else []
            label = ""
        self.diags.append(error(exc.code, exc.message, span, label, notes=exc.notes, help=exc.help,
                                secondary=secondary))

    def _node_name(self, prefix: str, kind: str, label: str | None, label_span: Span | None) -> str:
        if label:
            name = join(prefix, label)
            self._claim(name, label_span)
            return name
        while True:
            key = (prefix, kind)
            self.counters[key] = self.counters.get(key, 0) + 1
            name = join(prefix, f"{kind}_{self.counters[key]}")
            if name not in self.node_names:
                self.node_names.add(name)
                return name

    def _claim(self, name: str, span: Span | None) -> None:
        if name in self.node_names:
            first = self.label_spans.get(name)
            self._error(codes.DUPLICATE, f"the name `{name}` is already used by another layer", span,
                        "used again", secondary=[(first, "first used here")] if first else (),
                        help="labels must be unique within a model or block")
            raise Abort
        self.node_names.add(name)
        if span is not None:
            self.label_spans[name] = span

    def _early_limits(self, kind: str, span: Span, output: TensorType) -> None:
        """The element limit of :meth:`_limits`, checked on the output shape alone."""
        if any(not bounds.count_in_range(d) for d in output.shape) or output.numel > MAX_ELEMENTS:
            self._error(codes.LIMIT, f"`{kind}` outputs {bounds.show(output.numel)} elements per sample",
                        span, f"output {_shape_text(output.shape)}",
                        notes=[f"limit: {MAX_ELEMENTS:,} elements per tensor"])
            raise Abort

    def _limits(self, node: Node) -> None:
        if node.param_count > self.max_params:
            shapes = ", ".join(f"{k} {list(v)}" for k, v in node.params.items())
            self._error(codes.LIMIT, f"`{node.name}` has {node.param_count:,} parameters", node.span,
                        "too large",
                        notes=[f"parameters: {shapes}", f"limit: {self.max_params:,} parameters per model"],
                        help="check the sizes; raise the limit with `--max-params` if this is meant")
            raise Abort
        if node.output.numel > MAX_ELEMENTS:
            self._error(codes.LIMIT, f"`{node.name}` outputs {node.output.numel:,} elements per sample",
                        node.span, f"output {node.output}", notes=[f"limit: {MAX_ELEMENTS:,} elements per tensor"])
            raise Abort

    def _check_total(self, definition: ast.Definition, scope: Scope) -> None:
        total = sum(n.param_count for n in self.nodes)
        if total > self.max_params and not any(d.code == codes.LIMIT for d in self.diags):
            self._error(codes.LIMIT, f"model `{definition.name}` has {total:,} parameters",
                        definition.name_span, notes=[f"limit: {self.max_params:,}"],
                        help="raise the limit with `--max-params` if this is meant")

    # == blocks =========================================================================
    def _block(self, definition, node, x, positional, keywords, keyword_spans, label, label_span, scope):
        if definition.name in self.block_stack:
            cycle = " -> ".join(self.block_stack[self.block_stack.index(definition.name):] + [definition.name])
            self._error(codes.RECURSION, f"block `{definition.name}` uses itself", node.span,
                        notes=[cycle], help="use repetition, `Block(...) * n`, instead of recursion")
            raise Abort
        if len(self.block_stack) >= MAX_BLOCK_DEPTH:
            chain = self.block_stack[:3] + ["..."] + self.block_stack[-3:] + [definition.name]
            self._error(codes.BLOCKS_TOO_DEEP, f"blocks nested more than {MAX_BLOCK_DEPTH} levels deep",
                        node.span, f"block {len(self.block_stack) + 1} of a chain of blocks",
                        notes=[" -> ".join(chain)], help="flatten the hierarchy: use blocks side by side")
            raise Abort
        inputs = [s for s in definition.body if isinstance(s, ast.InputDecl)]
        if len(inputs) != 1:
            self._error(codes.BAD_INPUT, f"block `{definition.name}` must declare exactly one `input`, "
                        f"found {len(inputs)}", definition.name_span, "declared here",
                        secondary=[(node.span, "used here")],
                        help="the input receives the value piped into the block; pass more tensors as "
                        "parameters of type `tensor`")
            raise Abort
        if x is POISON:
            probe = Scope(definition, scope.prefix, {}, {}, scope.rounding, len(self.nodes))
            self._bind_params(definition, [(v, a.span) for v, a in positional],
                              {k: v for k, (v, _) in keywords.items()}, node.span, probe,
                              keyword_spans=keyword_spans)
            return POISON
        if x is None:
            self._error(codes.BAD_EXPR, f"block `{definition.name}` needs an input", node.span,
                        help=f"apply it with `->`, e.g. `x -> {definition.name}(...)`")
            raise Abort
        name = join(scope.prefix, label) if label else self._node_name(scope.prefix, snake(definition.name),
                                                                        None, None)
        if label:
            self._claim(name, label_span)
        inner = Scope(definition, name, {}, {}, scope.rounding, len(self.nodes))
        ok = self._bind_params(definition, [(v, a.span) for v, a in positional],
                               {k: v for k, (v, _) in keywords.items()}, node.span, inner,
                               keyword_spans=keyword_spans)
        if not ok:
            raise Abort
        (decl,) = inputs
        inner.names[decl.name] = x
        inner.name_spans[decl.name] = decl.span
        self.block_stack.append(definition.name)
        first_diag = len(self.diags)
        try:
            outputs = self._body(definition, inner)
        finally:
            self.block_stack.pop()
            where = f"in `{name}`, the `{definition.name}` used at {node.span}"
            self.diags[first_diag:] = [  # the chain of a too deep nesting is noted once, not at every level
                d if d.code == codes.BLOCKS_TOO_DEEP else d.model_copy(update={"notes": (*d.notes, where)})
                for d in self.diags[first_diag:]
            ]
        if len(outputs) != 1:
            if outputs:
                self._error(codes.BAD_EXPR, f"block `{definition.name}` has {len(outputs)} outputs; "
                            "a block used as a layer has one", definition.name_span)
            return POISON
        return outputs[0][1]

    # == assertions =========================================================================
    def _assert(self, stmt: ast.Assert, scope: Scope, outputs: Sequence[tuple[str, Tensor]] = ()) -> None:
        nodes = self.nodes[scope.first_node:]
        unknown = next((t.unknown for _, t in outputs if t.unknown is not None), None)
        if unknown is not None and _mentions(stmt.expr, "receptive_field"):
            layer, kind, span = unknown
            used = _find_name(stmt.expr, "receptive_field")
            self._error(codes.BAD_ASSERT, f"`receptive_field` is unknown: `{layer}` rearranges the spatial axes",
                        used.span if used is not None else stmt.span, "unknown here",
                        secondary=[(span, f"`{kind}` makes the receptive field unknown")],
                        notes=[f"after `{layer}` no window of input pixels is known for a position, "
                               "so no layer after it has a receptive field"],
                        help=f"assert it in a block that ends before `{layer}`, or remove the assertion")
            return
        fields = [n.receptive_field.size for n in nodes if n.receptive_field is not None]
        budget = {
            "params": sum(n.param_count for n in nodes),
            "trainable_params": sum(n.param_count for n in nodes),
            "buffers": sum(n.buffer_count for n in nodes),
            "macs": sum(n.macs for n in nodes),
            "memory": sum(n.output.numel * BYTES[n.output.dtype] for n in nodes),
            "receptive_field": max(fields) if fields else None,
        }
        names = dict(scope.names)
        for key, value in budget.items():
            names.setdefault(key, value)
        if budget["receptive_field"] is None and _mentions(stmt.expr, "receptive_field"):
            self._error(codes.BAD_ASSERT, "`receptive_field` needs a model with spatial axes", stmt.span)
            return
        check_scope = Scope(scope.definition, scope.prefix, names, scope.name_spans, scope.rounding,
                            scope.first_node, scope.used)
        try:
            result = self._expr(stmt.expr, check_scope)
        except Abort:
            return
        if result is POISON:
            return
        if not isinstance(result, bool):
            self._error(codes.BAD_ASSERT, f"an assertion must be true or false, got {self._show(result)}",
                        stmt.expr.span, "not a condition", help="compare it, e.g. `assert params < 1M`")
            return
        if result or id(stmt) in self.reported_asserts:
            return
        self.reported_asserts.add(id(stmt))
        notes = []
        for name in BUDGET_NAMES:
            if _mentions(stmt.expr, name):
                notes.append(f"{name} = {budget[name]:,}")
        right = stmt.expr.right if isinstance(stmt.expr, ast.BinOp) else None
        if isinstance(right, ast.Number) and right.text != str(right.value):
            notes.append(f"{stmt.expr.right.text} = {stmt.expr.right.value:,}")
        if scope.prefix:
            notes.append(f"in `{scope.prefix}`")
        source = self.loaded.sources.get(stmt.span.file)
        text = source.text[stmt.expr.span.start:stmt.expr.span.end] if source else "assertion"
        self._error(codes.ASSERTION, f"assertion failed: {text}", stmt.expr.span, "is false",
                    notes=notes)

    # == helpers ===========================================================================
    def _bool(self, value: Any, span: Span) -> bool:
        if not isinstance(value, bool):
            self._error(codes.BAD_EXPR, f"expected true or false, got {self._show(value)}", span)
            raise Abort
        return value

    def _show(self, value: Any) -> str:
        if isinstance(value, Tensor):
            return f"a tensor {value.type}"
        if value is None:
            return "nothing"
        return describe(value)

    def _error(self, code: str, message: str, span: Span | None, label: str = "", **kw) -> None:
        self.diags.append(error(code, message, span, label, **kw))


def _large_count(value: Any) -> int | None:
    """An integer of an op's argument (or of its tuple) past the bound of sizes and counts:
    every integer argument of an op is a size, a count or an axis."""
    if isinstance(value, tuple):
        return next((v for v in map(_large_count, value) if v is not None), None)
    if isinstance(value, int) and not isinstance(value, bool) and not bounds.count_in_range(value):
        return value
    return None


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(bounds.show(d) for d in shape) + "]"


def _pow_digits(base: int, exponent: int) -> str:
    """The size of ``base ** exponent`` in decimal digits, from logarithms (not computed)."""
    return f"{int(exponent * math.log10(abs(base))) + 1:,}"


def _cover(first: Span, last: Span) -> Span:
    """The span from the start of ``first`` to the end of ``last`` (same file)."""
    return first.model_copy(update={"end": last.end, "end_line": last.end_line, "end_col": last.end_col})


def _labels_layers(chain: ast.Chain) -> bool:
    """Whether a group of layers names any of its layers (`(fc: linear(4) -> relu)`)."""
    return chain.head_label is not None or any(step.label is not None for step in chain.layers)


def _parts_call(value: ast.Expr) -> ast.Call | ast.Name | None:
    """The split or chunk that ends a chain, if one does."""
    if isinstance(value, ast.Chain) and value.layers and value.output_span is None:
        last = value.layers[-1]
        layer = last.layer
        name = layer.func if isinstance(layer, ast.Call) else layer.id if isinstance(layer, ast.Name) else None
        if name in MULTI_OUTPUT and last.label is None:
            return layer
    return None


def _inputs_wanted(op: type[Op], given: int) -> str | None:
    """None when ``given`` tensor inputs suit the op, else how many it takes, in words."""
    if op.arity is not None:
        return None if given == op.arity else f"{op.arity} input{'s' if op.arity != 1 else ''}"
    low, high = op.min_arity, op.max_arity
    if low <= given and (high is None or given <= high):
        return None
    words = {1: "one", 2: "two", 3: "three"}
    if high is None:
        return f"{words.get(low, low)} or more inputs"
    if high == low:
        return f"{words.get(low, low)} input{'s' if low != 1 else ''}"
    return f"{words.get(low, low)} to {words.get(high, high)} inputs"


def poisoned_args(values: dict[str, Any]) -> bool:
    return any(_poisoned(v) for v in values.values())


def _poisoned(value: Any) -> bool:  # not a closure: a recursive one is a reference cycle per call
    return value is POISON or isinstance(value, tuple) and any(_poisoned(v) for v in value)


BUDGET_NAMES = ("params", "trainable_params", "buffers", "macs", "memory", "receptive_field")


def _mentions(expr: Any, name: str) -> bool:
    """Whether an expression uses a name (iterative: expressions may nest deeply)."""
    todo = [expr]
    while todo:
        item = todo.pop()
        if isinstance(item, ast.Name):
            if item.id == name:
                return True
        elif isinstance(item, ast.Node):
            todo.extend(getattr(item, f) for f in item.__dataclass_fields__ if f != "span")
        elif isinstance(item, tuple):
            todo.extend(item)
    return False


def _names(node: Any) -> set[str]:
    """Every name an AST node mentions (iterative: expressions may nest deeply)."""
    found: set[str] = set()
    todo = [node]
    while todo:
        item = todo.pop()
        if isinstance(item, ast.Name):
            found.add(item.id)
        elif isinstance(item, ast.Node):
            todo.extend(getattr(item, f) for f in item.__dataclass_fields__ if f != "span")
        elif isinstance(item, (tuple, list)):
            todo.extend(item)
    return found


def _find_name(expr: Any, name: str) -> ast.Name | None:
    """The first use of a name in an expression, in source order."""
    todo = [expr]
    best: ast.Name | None = None
    while todo:
        item = todo.pop()
        if isinstance(item, ast.Name):
            if item.id == name and (best is None or item.span.start < best.span.start):
                best = item
        elif isinstance(item, ast.Node):
            todo.extend(getattr(item, f) for f in item.__dataclass_fields__ if f != "span")
        elif isinstance(item, tuple):
            todo.extend(item)
    return best


def _plain(value: Any) -> Any:
    """A value as JSON gives it back: tuples become lists."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _not_finite(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return any(_not_finite(v) for v in value)
    return isinstance(value, complex) or isinstance(value, float) and not math.isfinite(value)


def elaborate(loaded: Loaded, model: str, args: dict[str, Any] | None = None, *,
              max_params: int = DEFAULT_MAX_PARAMS) -> tuple[Graph, list[Diagnostic]]:
    """Elaborate one model; return its graph and the warnings, or raise DiagnosticError."""
    elaborator = Elaborator(loaded, max_params=max_params)
    graph = elaborator.model(model, args)
    return graph, elaborator.warnings + lint(graph)

