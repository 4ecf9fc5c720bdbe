"""The abstract syntax tree: what a spec file says, before any meaning is given to it.

Only :mod:`nnspec.spec.build_ast` creates these, from the parser's reductions; no later stage
sees lark.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .source import Span


@dataclass(frozen=True)
class Node:
    span: Span


# -- expressions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class Number(Node):
    value: int | float
    text: str


@dataclass(frozen=True)
class String(Node):
    value: str


@dataclass(frozen=True)
class Bool(Node):
    value: bool


@dataclass(frozen=True)
class Attribute(Node):
    obj: Expr
    attr: str
    attr_span: Span


@dataclass(frozen=True)
class Index(Node):
    obj: Expr
    index: Expr


@dataclass(frozen=True)
class Arg(Node):
    name: str | None  # None: positional
    value: Expr
    name_span: Span | None = None


@dataclass(frozen=True)
class Call(Node):
    func: str
    func_span: Span
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # + - * / // % ** == != < <= > >= and or
    left: Expr
    right: Expr
    op_span: Span


@dataclass(frozen=True)
class Unary(Node):
    op: str  # - not
    operand: Expr


@dataclass(frozen=True)
class Tuple(Node):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class If(Node):
    cond: Expr
    then: Expr
    orelse: Expr


@dataclass(frozen=True)
class Layer(Node):
    """One step after `->`; ``label: layer`` names the layer's module."""

    layer: Expr
    label: str | None = None
    label_span: Span | None = None


@dataclass(frozen=True)
class Chain(Node):
    """``head -> layer -> layer ...``, flat so that long chains need no deep recursion.

    ``output_span`` is set when the chain ends in ``-> output``. A group of layers in brackets
    may name its first layer, ``(c_fc: linear(64) -> gelu)``; its head is then a layer
    (``head_label``), not the value that flows in.
    """

    head: Expr
    layers: tuple[Layer, ...]
    output_span: Span | None = None
    head_label: str | None = None  # `(c_fc: linear(64) -> gelu)`: a group whose first layer is named
    head_label_span: Span | None = None


Expr = Name | Number | String | Bool | Attribute | Index | Call | BinOp | Unary | Tuple | If | Chain


# -- statements -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorTypeExpr(Node):
    dtype: str | None
    dims: tuple[Expr, ...]


@dataclass(frozen=True)
class InputDecl(Node):
    name: str
    type: TensorTypeExpr | None


@dataclass(frozen=True)
class Binding(Node):
    """``name = chain``; ``a, b = x -> split(2)`` binds each part of a layer with several
    outputs: ``name`` is the first, ``more`` the others."""

    name: str
    name_span: Span
    value: Expr
    more: tuple[tuple[str, Span], ...] = ()

    @property
    def names(self) -> tuple[tuple[str, Span], ...]:
        return ((self.name, self.name_span), *self.more)


@dataclass(frozen=True)
class OutputStmt(Node):
    names: tuple[tuple[str, Span], ...]


@dataclass(frozen=True)
class ChainStmt(Node):
    chain: Expr


@dataclass(frozen=True)
class Assert(Node):
    expr: Expr


@dataclass(frozen=True)
class RoundingStmt(Node):
    mode: str
    mode_span: Span


Stmt = InputDecl | Binding | OutputStmt | ChainStmt | Assert | RoundingStmt


# -- definitions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Param(Node):
    name: str
    type: str | None
    default: Expr | None


@dataclass(frozen=True)
class Definition(Node):
    """A ``model`` or a ``block``: a parameterised body of statements."""

    kind: str  # "model" | "block"
    name: str
    name_span: Span
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Setting(Node):
    name: str
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class TrainDef(Node):
    """``train Model(args) as name { settings }``; ``name`` is None when not given."""

    model: str
    model_span: Span
    settings: tuple[Setting, ...]
    args: tuple[Arg, ...] = ()
    name: str | None = None
    name_span: Span | None = None


@dataclass(frozen=True)
class Axis(Node):
    """``optimizer.lr in log(1e-4, 1e-1)``: a searched value (``path``, each part located)
    and the values it takes."""

    path: tuple[tuple[str, Span], ...]
    space: Expr


@dataclass(frozen=True)
class SearchDef(Node):
    """``search Recipe as name { settings and axes }``; ``name`` is None when not given."""

    recipe: str
    recipe_span: Span
    settings: tuple[Setting, ...]
    axes: tuple[Axis, ...]
    name: str | None = None
    name_span: Span | None = None


@dataclass(frozen=True)
class Import(Node):
    path: str


@dataclass(frozen=True)
class Module:
    file: str
    imports: tuple[Import, ...] = ()
    definitions: tuple[Definition, ...] = ()
    trains: tuple[TrainDef, ...] = field(default_factory=tuple)
    searches: tuple[SearchDef, ...] = field(default_factory=tuple)
