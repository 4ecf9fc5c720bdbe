"""The one place where the parser's reductions become AST dataclasses.

The LALR parser calls one callback per reduction (see :func:`callbacks`), so the AST is built
while parsing, without a lark tree in between. The callbacks see every child of a rule,
keywords and brackets included, and locate nodes the way lark's ``propagate_positions``
would: a node starts where its first child starts and ends where its last child ends, and a
value in brackets, ``(x)``, occupies the brackets too when a parent measures it (its own span
stays the inner one).

Errors found here (a bad number, a bad string escape, `output` in the middle of a chain, an
expression nested too deeply) do not stop the parse: the first one is raised when the whole
file parsed, so that a syntax error anywhere still comes first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from . import ast, bounds, codes
from .diagnostics import Diagnostic, DiagnosticError, error
from .source import SourceFile, Span

_SUFFIX = {"K": 10**3, "M": 10**6, "G": 10**9}
MAX_EXPR_DEPTH = 256  # operators nested in one expression (brackets have their own limit)
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t"}
_ESCAPE = re.compile(r"\\(.)")
_FIRST = itemgetter(0)


class Tok:
    """A token as the builder sees it: its terminal's name, its text and where it is."""

    __slots__ = ("type", "value", "start_pos", "end_pos")

    def __init__(self, type: str, value: str, start_pos: int, end_pos: int):  # noqa: A002
        self.type = type
        self.value = value
        self.start_pos = start_pos
        self.end_pos = end_pos

    def __repr__(self) -> str:
        return f"Tok({self.type!r}, {self.value!r})"


class _Seq(list):
    """The children of an inlined rule (`_body`, `x*`), spliced into the parent's children.

    ``end`` is where the rule's text ends when that is not where its last child ends (a
    trailing comma).
    """

    __slots__ = ("end",)

    def __init__(self, items: Any = ()) -> None:
        super().__init__(items)
        self.end: int | None = None


class Builder:
    """Builds the AST of one source file, one reduction at a time."""

    def __init__(self, source: SourceFile):
        self.source = source
        self.diagnostic: Diagnostic | None = None  # the first error; raised by `finish`
        self.module: ast.Module | None = None
        self._outer: dict[int, tuple[int, int]] = {}  # id(node) -> extent, where not its span
        self._depth: dict[int, int] = {}  # id(node) -> nesting depth (a leaf's is 1)

    def finish(self) -> ast.Module:
        if self.diagnostic is not None:
            raise DiagnosticError([self.diagnostic])
        assert self.module is not None
        return self.module

    def _fail(self, diagnostic: Diagnostic) -> None:
        if self.diagnostic is None:
            self.diagnostic = diagnostic

    # -- positions ---------------------------------------------------------------------------
    def _start(self, value: Any) -> int:
        """Where a child starts, brackets around it included."""
        if isinstance(value, Tok):
            return value.start_pos
        outer = self._outer.get(id(value))
        return outer[0] if outer else value.span.start

    def _end(self, value: Any) -> int:
        if isinstance(value, Tok):
            return value.end_pos
        if isinstance(value, _Seq):
            return value.end if value.end is not None else self._end(value[-1])
        outer = self._outer.get(id(value))
        return outer[1] if outer else value.span.end

    def _meta(self, raw: list[Any]) -> Span:
        """The span of a rule's whole text: first child to last, keywords and brackets included."""
        return self.source.span(self._start(raw[0]), self._end(raw[-1]))

    def _extent(self, node: ast.Node, raw: list[Any]) -> None:
        """Record the rule's extent for a node whose span is narrower (a child at its edge is in
        brackets: `(a) + b` spans `a + b`, its rule's text `(a) + b`)."""
        start, end = self._start(raw[0]), self._end(raw[-1])
        if start != node.span.start or end != node.span.end:
            self._outer[id(node)] = (start, end)

    def _tok(self, token: Tok) -> Span:
        return self.source.span(token.start_pos, token.end_pos)

    def _join(self, a: ast.Node | Tok, b: ast.Node | Tok) -> Span:
        start = a.span.start if isinstance(a, ast.Node) else a.start_pos
        end = b.span.end if isinstance(b, ast.Node) else b.end_pos
        return self.source.span(start, end)

    def _nest(self, node: ast.Node, *children: Any) -> ast.Node:
        """Track how deeply expressions nest; past the limit, report the innermost node."""
        depths = self._depth
        depth = 1
        for child in children:
            below = depths.get(id(child), 1)
            if below > depth:
                depth = below
        depth += 1
        depths[id(node)] = depth
        if depth == MAX_EXPR_DEPTH + 1:
            self._fail(error(
                codes.TOO_DEEP,
                "expression nested too deeply",
                self._where(node),
                f"more than {MAX_EXPR_DEPTH} levels deep here",
                help="split the expression with named values (`name = chain`)",
            ))
        return node

    def _where(self, node: ast.Node) -> Span:
        """The smallest part of a node that shows where it nests: its operator or keyword."""
        if isinstance(node, ast.BinOp) and node.op not in ("and", "or"):
            return node.op_span
        if isinstance(node, ast.Attribute):
            return node.attr_span
        if isinstance(node, ast.If):
            return self.source.span(node.span.start, node.span.start + len("if"))
        if isinstance(node, ast.Unary):
            return self.source.span(node.span.start, node.span.start + len(node.op))
        return node.span

    # -- file ----------------------------------------------------------------------------
    def start(self, c, raw):
        imports = tuple(x for x in c if isinstance(x, ast.Import))
        defs = tuple(x for x in c if isinstance(x, ast.Definition))
        trains = tuple(x for x in c if isinstance(x, ast.TrainDef))
        searches = tuple(x for x in c if isinstance(x, ast.SearchDef))
        self.module = ast.Module(file=self.source.name, imports=imports, definitions=defs, trains=trains,
                                 searches=searches)
        return self.module

    def import_stmt(self, c, raw):
        (path,) = c
        return ast.Import(span=self._tok(path), path=self._unquote(path))

    def _definition(self, kind, c, raw):
        name, params, *body = c
        return ast.Definition(
            span=self._meta(raw),
            kind=kind,
            name=name.value,
            name_span=self._tok(name),
            params=params or (),
            body=tuple(body),
        )

    def model_def(self, c, raw):
        return self._definition("model", c, raw)

    def block_def(self, c, raw):
        return self._definition("block", c, raw)

    def params(self, c, raw):
        return tuple(x for x in c if x is not None)

    def param(self, c, raw):
        name, type_, default = c
        return ast.Param(span=self._meta(raw), name=name.value, type=type_.value if type_ else None,
                         default=default)

    def train_def(self, c, raw):
        model, args, name, *settings = c
        return ast.TrainDef(
            span=self._meta(raw), model=model.value, model_span=self._tok(model), settings=tuple(settings),
            args=args or (), name=name.value if name else None, name_span=self._tok(name) if name else None,
        )

    def train_args(self, c, raw):
        (args,) = c
        return tuple(args) if args else ()

    def search_def(self, c, raw):
        recipe, name, *items = c
        return ast.SearchDef(
            span=self._meta(raw), recipe=recipe.value, recipe_span=self._tok(recipe),
            settings=tuple(x for x in items if isinstance(x, ast.Setting)),
            axes=tuple(x for x in items if isinstance(x, ast.Axis)),
            name=name.value if name else None, name_span=self._tok(name) if name else None,
        )

    def axis(self, c, raw):
        *parts, space = c
        return ast.Axis(span=self._meta(raw), path=tuple((p.value, self._tok(p)) for p in parts),
                        space=space)

    def setting(self, c, raw):
        name, args = c
        return ast.Setting(span=self._meta(raw), name=name.value, args=tuple(args) if args else ())

    # -- statements ------------------------------------------------------------------------
    def input_decl(self, c, raw):
        name, type_ = c
        return ast.InputDecl(span=self._meta(raw), name=name.value, type=type_)

    def tensor_type(self, c, raw):
        dtype, *dims = c
        return ast.TensorTypeExpr(span=self._meta(raw), dtype=dtype.value if dtype else None, dims=tuple(dims))

    def binding(self, c, raw):
        name, *more, value = c
        return ast.Binding(span=self._meta(raw), name=name.value, name_span=self._tok(name), value=value,
                           more=tuple((n.value, self._tok(n)) for n in more))

    def output_stmt(self, c, raw):
        _keyword, *names = c
        return ast.OutputStmt(span=self._meta(raw), names=tuple((n.value, self._tok(n)) for n in names))

    def assert_stmt(self, c, raw):
        return ast.Assert(span=self._meta(raw), expr=c[0])

    def rounding_stmt(self, c, raw):
        (mode,) = c
        return ast.RoundingStmt(span=self._meta(raw), mode=mode.value, mode_span=self._tok(mode))

    def chain_stmt(self, c, raw):
        (chain,) = c
        return ast.ChainStmt(span=chain.span, chain=chain)

    # -- chains and expressions ----------------------------------------------------------------
    def chain(self, c, raw):
        head, *rest = c
        return self._chain(head, rest, raw)

    def labelled_group(self, c, raw):
        name, head, *rest = c
        node = self._chain(head, rest, raw, label=name)
        self._outer[id(node)] = (raw[0].start_pos, raw[-1].end_pos)
        return node

    def _chain(self, head, rest, raw, label: Tok | None = None):
        layers: list[ast.Layer] = []
        output_span = None
        for item in rest:
            if isinstance(item, Tok) and item.type == "ARROW":
                continue
            if output_span is not None:
                self._fail(error(
                    codes.SYNTAX,
                    "`output` must be the last step of a chain",
                    output_span,
                    "the chain goes on after this",
                    help="end the chain at `-> output`, or bind the value with `name = chain`",
                ))
            if isinstance(item, Tok):  # OUTPUT
                output_span = self._tok(item)
            elif isinstance(item, ast.Layer):
                layers.append(item)
            else:
                layers.append(ast.Layer(span=item.span, layer=item))
        end = output_span.end if output_span else layers[-1].span.end if layers else head.span.end
        start = label.start_pos if label is not None else head.span.start
        node = ast.Chain(
            span=self.source.span(start, end), head=head, layers=tuple(layers), output_span=output_span,
            head_label=label.value if label is not None else None,
            head_label_span=self._tok(label) if label is not None else None,
        )
        self._extent(node, raw)
        return self._nest(node, head, *(layer.layer for layer in layers))

    def label(self, c, raw):
        name, layer = c
        node = ast.Layer(span=self._join(name, layer), layer=layer, label=name.value, label_span=self._tok(name))
        self._extent(node, raw)
        return node

    def if_expr(self, c, raw):
        cond, then, orelse = c
        return self._nest(ast.If(span=self._meta(raw), cond=cond, then=then, orelse=orelse), cond, then, orelse)

    def _binary(self, op: str, op_span: Span, left, right, raw):
        node = ast.BinOp(span=self._join(left, right), op=op, left=left, right=right, op_span=op_span)
        self._extent(node, raw)
        return self._nest(node, left, right)

    def or_(self, c, raw):
        left, right = c
        return self._binary("or", self._join(left, right), left, right, raw)

    def and_(self, c, raw):
        left, right = c
        return self._binary("and", self._join(left, right), left, right, raw)

    def not_(self, c, raw):
        return self._nest(ast.Unary(span=self._meta(raw), op="not", operand=c[0]), c[0])

    def compare(self, c, raw):
        left, op, right = c
        return self._binary(op.value, self._tok(op), left, right, raw)

    def binop(self, c, raw):
        left, op, right = c
        return self._binary(op.value, self._tok(op), left, right, raw)

    def neg(self, c, raw):
        minus, operand = c
        node = ast.Unary(span=self._join(minus, operand), op="-", operand=operand)
        self._extent(node, raw)
        return self._nest(node, operand)

    def attribute(self, c, raw):
        obj, name = c
        node = ast.Attribute(span=self._join(obj, name), obj=obj, attr=name.value, attr_span=self._tok(name))
        self._extent(node, raw)
        return self._nest(node, obj)

    def index(self, c, raw):
        obj, idx = c
        return self._nest(ast.Index(span=self._meta(raw), obj=obj, index=idx), obj, idx)

    def call(self, c, raw):
        name, args = c
        args = tuple(args) if args else ()
        node = ast.Call(span=self._meta(raw), func=name.value, func_span=self._tok(name), args=args)
        return self._nest(node, *(a.value for a in args)) if args else node

    def args(self, c, raw):
        seq = _Seq(x if isinstance(x, ast.Arg) else ast.Arg(span=x.span, name=None, value=x) for x in c)
        seq.end = self._end(raw[-1])
        return seq

    def kwarg(self, c, raw):
        name, value = c
        node = ast.Arg(span=self._join(name, value), name=name.value, value=value, name_span=self._tok(name))
        self._extent(node, raw)
        return node

    def name(self, c, raw):
        (token,) = c
        return ast.Name(span=self._tok(token), id=token.value)

    def number(self, c, raw):
        (token,) = c
        return ast.Number(span=self._tok(token), value=self._number(token), text=token.value)

    def string(self, c, raw):
        (token,) = c
        return ast.String(span=self._tok(token), value=self._unquote(token))

    def true(self, c, raw):
        return ast.Bool(span=self._meta(raw), value=True)

    def false(self, c, raw):
        return ast.Bool(span=self._meta(raw), value=False)

    def tuple(self, c, raw):
        items = tuple(x for x in c if x is not None)
        return self._nest(ast.Tuple(span=self._meta(raw), items=items), *items)

    def list(self, c, raw):
        items = tuple(x for x in c if x is not None)
        node = ast.Tuple(span=self._meta(raw), items=items)
        return self._nest(node, *items) if items else node

    def _bracketed(self, c, raw):
        """`(chain)`, or `{ chain }` as an `else` branch: the value itself, occupying the brackets."""
        (value,) = c
        self._outer[id(value)] = (raw[0].start_pos, raw[-1].end_pos)
        return value

    # -- tokens ------------------------------------------------------------------------
    def _number(self, token: Tok) -> int | float:
        text = token.value.replace("_", "")
        scale = 1
        if text[-1] in _SUFFIX:
            scale = _SUFFIX[text[-1]]
            text = text[:-1]
        try:
            if any(c in text for c in ".eE"):
                value = float(text) * scale
                if value in (float("inf"), float("-inf")):
                    raise ValueError
                if scale != 1 and value.is_integer():
                    if abs(value) >= bounds.MAX_INT:
                        return self._out_of_range(token, f"{value:.3g}")
                    return int(value)
                return value
            # counted before int() reads it: Python refuses over 4,300 digits, and a long
            # literal is out of range whatever its digits
            if len(text.lstrip("0")) > bounds.MAX_LITERAL_DIGITS:
                return self._out_of_range(token, f"a {len(text.lstrip('0')):,}-digit integer")
            value = int(text) * scale
            if not bounds.int_in_range(value):
                return self._out_of_range(token, f"{value:,}")
            return value
        except ValueError:
            self._fail(error(
                codes.BAD_NUMBER, f"invalid number `{bounds.show_literal(token.value)}`", self._tok(token),
                "cannot be read as a number"
            ))
            return 0

    def _out_of_range(self, token: Tok, shown: str) -> int:
        self._fail(error(
            codes.NUMBER_RANGE, f"integer literal out of range: {shown}", self._tok(token),
            "too large", notes=[bounds.RANGE_NOTE],
        ))
        return 0

    def _unquote(self, token: Tok) -> str:
        """The text of a string literal: `\\\\`, `\\"`, `\\n` and `\\t` are its only escapes."""
        body = token.value[1:-1]
        if "\\" not in body:
            return body

        def replace(match: re.Match[str]) -> str:
            char = match.group(1)
            if char in _ESCAPES:
                return _ESCAPES[char]
            start = token.start_pos + 1 + match.start()
            shown = char if char.isprintable() else f"U+{ord(char):04X}"
            self._fail(error(
                codes.SYNTAX,
                f"unknown escape `\\{shown}` in a string",
                self.source.span(start, start + 2),
                "not an escape",
                help='a string may contain \\\\, \\", \\n and \\t; write a backslash as \\\\',
            ))
            return match.group(0)

        return _ESCAPE.sub(replace, body)


# == callbacks: one per grammar rule =================================================================


def plans(rules: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """How each rule's children become its value (computed once per grammar).

    A rule's callback receives every child of the rule, as lark's parse-tree builder does
    before it filters them. Like that builder, it drops anonymous tokens ("model", brackets)
    and `_NL`, splices the children of inlined rules (`_body`, `x*`), inserts None for a
    missing `[optional]` part, and passes a `?rule` with one child through. A plan's first
    item says which of these the rule needs: "unit" (its one child is its value), "repeat",
    "inline", "bracketed" (`(x)`) or "build" (a Builder method of the rule's name).

    The rules are plain data, as the parser's tables hold them (so that no lark object needs
    to exist for valid text): `origin` (the rule's name), `alias` (the name after `->`, or
    None), `expansion` (per child: [name, is a terminal, is a terminal the tree leaves out]),
    `empty_indices` (lark's, where a missing `[optional]` part was) and `expand1` (a `?rule`).
    """
    result = []
    for rule in rules:
        expansion = rule["expansion"]
        origin = rule["origin"]
        empty = rule["empty_indices"]
        if empty:  # where lark inserts None for a missing optional part
            counts = [len(ones) for ones in "".join(str(int(b)) for b in empty).split("0")]
        else:
            counts = [0] * (len(expansion) + 1)
        include = []  # (child index, splice it, Nones before it)
        nones = 0
        for i, (symbol, is_term, filter_out) in enumerate(expansion):
            nones += counts[i]
            if not filter_out:
                include.append((i, not is_term and symbol.startswith("_"), nones))
                nones = 0
        nones += counts[len(expansion)]
        alias = rule["alias"]
        expand1 = rule["expand1"]
        name = alias or origin
        single = len(include) == 1 and not nones and not include[0][1] and not include[0][2]
        if name.startswith("__"):  # a repetition `x*`: left-recursive, extended in place
            kind = "repeat"
        elif single and len(expansion) == 1 and (name.startswith("_") or expand1 and not alias):
            kind = "unit"
        elif name.startswith("_"):
            kind = "inline"
        elif single and expand1 and not alias:
            kind = "bracketed"
        else:
            kind = "build"
        left_recursive = bool(include) and include[0][0] == 0 and expansion[0][0] == origin
        result.append((kind, name, tuple(include), nones, left_recursive))
    return result


def callbacks(plans: list[tuple[Any, ...]], builder: Builder) -> list[Callable[[list[Any]], Any]]:
    """The reduction callbacks of the rules whose `plans` are given, bound to `builder`."""
    return [_callback(plan, builder) for plan in plans]


def _callback(plan: tuple[Any, ...], builder: Builder) -> Callable[[list[Any]], Any]:
    kind, name, include, trailing, left_recursive = plan
    if kind == "unit":
        return _FIRST
    if kind == "repeat" and left_recursive:
        rest = include[1:]

        def extend(raw: list[Any]) -> _Seq:
            seq = raw[0]
            for i, splice, _ in rest:
                value = raw[i]
                if splice and isinstance(value, _Seq):
                    seq.extend(value)
                else:
                    seq.append(value)
            return seq

        return extend
    children = _children(include, trailing)
    if kind in ("repeat", "inline"):
        return lambda raw: _Seq(children(raw))
    handler = builder._bracketed if kind == "bracketed" else getattr(builder, name)
    return lambda raw: handler(children(raw), raw)


def _children(include: tuple[Any, ...], trailing: int) -> Callable[[list[Any]], Any]:
    """The children a rule's builder sees, from all of them (see `plans`)."""
    if not trailing and not any(splice or nones for _, splice, nones in include):
        indices = [i for i, _, _ in include]
        if len(indices) > 1:
            return itemgetter(*indices)
        if indices:
            (index,) = indices
            return lambda raw: (raw[index],)
        return lambda raw: ()

    def children(raw: list[Any]) -> list[Any]:
        out: list[Any] = []
        for i, splice, nones in include:
            if nones:
                out.extend([None] * nones)
            value = raw[i]
            if splice and isinstance(value, _Seq):
                out.extend(value)
            else:
                out.append(value)
        if trailing:
            out.extend([None] * trailing)
        return out

    return children
