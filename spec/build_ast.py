"""The one place where lark trees become AST dataclasses."""

from __future__ import annotations

from typing import Any

from lark import Token, Transformer, Tree, v_args
from lark.exceptions import VisitError

from . import ast, codes
from .diagnostics import DiagnosticError, error
from .source import SourceFile, Span

_SUFFIX = {"K": 10**3, "M": 10**6, "G": 10**9}


def build_module(tree: Tree, source: SourceFile) -> ast.Module:
    try:
        return _Builder(source).transform(tree)
    except VisitError as exc:  # lark wraps what a callback raises
        if isinstance(exc.orig_exc, DiagnosticError):
            raise exc.orig_exc from None
        raise
    except RecursionError:
        raise DiagnosticError([error(
            codes.TOO_DEEP,
            "expression nested too deeply",
            source.span(0, 0),
            help="split the expression with named values (`name = chain`)",
        )]) from None


@v_args(meta=True)
class _Builder(Transformer):
    def __init__(self, source: SourceFile):
        super().__init__()
        self.source = source

    # -- spans ---------------------------------------------------------------------------
    def _span(self, meta: Any, children: list[Any] = ()) -> Span:
        if not getattr(meta, "empty", True):
            return self.source.span(meta.start_pos, meta.end_pos)
        spans = [c.span for c in children if isinstance(c, ast.Node)]
        if spans:
            return self.source.span(spans[0].start, spans[-1].end)
        return self.source.span(0, 0)

    def _tok(self, token: Token) -> Span:
        return self.source.span(token.start_pos, token.end_pos)

    def _join(self, a: ast.Node | Token, b: ast.Node | Token) -> Span:
        start = a.span.start if isinstance(a, ast.Node) else a.start_pos
        end = b.span.end if isinstance(b, ast.Node) else b.end_pos
        return self.source.span(start, end)

    # -- file ----------------------------------------------------------------------------
    def start(self, meta, children):
        imports = tuple(c for c in children if isinstance(c, ast.Import))
        defs = tuple(c for c in children if isinstance(c, ast.Definition))
        trains = tuple(c for c in children if isinstance(c, ast.TrainDef))
        return ast.Module(file=self.source.name, imports=imports, definitions=defs, trains=trains)

    def import_stmt(self, meta, children):
        (path,) = children
        return ast.Import(span=self._tok(path), path=_unquote(path))

    def _definition(self, kind, meta, children):
        name, params, *body = children
        return ast.Definition(
            span=self._span(meta),
            kind=kind,
            name=str(name),
            name_span=self._tok(name),
            params=params or (),
            body=tuple(body),
        )

    def model_def(self, meta, children):
        return self._definition("model", meta, children)

    def block_def(self, meta, children):
        return self._definition("block", meta, children)

    def params(self, meta, children):
        return tuple(c for c in children if c is not None)

    def param(self, meta, children):
        name, type_, default = children
        return ast.Param(span=self._span(meta), name=str(name), type=str(type_) if type_ else None, default=default)

    def train_def(self, meta, children):
        model, args, name, *settings = children
        return ast.TrainDef(
            span=self._span(meta), model=str(model), model_span=self._tok(model), settings=tuple(settings),
            args=args or (), name=str(name) if name else None, name_span=self._tok(name) if name else None,
        )

    def train_args(self, meta, children):
        (args,) = children
        return args or ()

    def setting(self, meta, children):
        name, args = children
        return ast.Setting(span=self._span(meta), name=str(name), args=args or ())

    # -- statements ------------------------------------------------------------------------
    def input_decl(self, meta, children):
        name, type_ = children
        return ast.InputDecl(span=self._span(meta), name=str(name), type=type_)

    def tensor_type(self, meta, children):
        dtype, *dims = children
        return ast.TensorTypeExpr(span=self._span(meta), dtype=str(dtype) if dtype else None, dims=tuple(dims))

    def binding(self, meta, children):
        name, value = children
        return ast.Binding(span=self._span(meta), name=str(name), name_span=self._tok(name), value=value)

    def output_stmt(self, meta, children):
        _keyword, *names = children
        return ast.OutputStmt(span=self._span(meta), names=tuple((str(n), self._tok(n)) for n in names))

    def assert_stmt(self, meta, children):
        return ast.Assert(span=self._span(meta), expr=children[0])

    def rounding_stmt(self, meta, children):
        (mode,) = children
        return ast.RoundingStmt(span=self._span(meta), mode=str(mode), mode_span=self._tok(mode))

    def chain_stmt(self, meta, children):
        (chain,) = children
        return ast.ChainStmt(span=chain.span, chain=chain)

    # -- chains and expressions ----------------------------------------------------------------
    def chain(self, meta, children):
        head, *rest = children
        layers: list[ast.Layer] = []
        output_span = None
        for item in rest:
            if isinstance(item, Token) and item.type == "ARROW":
                continue
            if output_span is not None:
                raise DiagnosticError([error(
                    codes.SYNTAX,
                    "`output` must be the last step of a chain",
                    output_span,
                    "the chain goes on after this",
                    help="end the chain at `-> output`, or bind the value with `name = chain`",
                )])
            if isinstance(item, Token) and item.type == "OUTPUT":
                output_span = self._tok(item)
            elif isinstance(item, ast.Layer):
                layers.append(item)
            else:
                layers.append(ast.Layer(span=item.span, layer=item))
        end = output_span.end if output_span else layers[-1].span.end
        return ast.Chain(
            span=self.source.span(head.span.start, end), head=head, layers=tuple(layers), output_span=output_span
        )

    def label(self, meta, children):
        name, layer = children
        return ast.Layer(span=self._join(name, layer), layer=layer, label=str(name), label_span=self._tok(name))

    def if_expr(self, meta, children):
        cond, then, orelse = children
        return ast.If(span=self._span(meta), cond=cond, then=then, orelse=orelse)

    def _binary(self, op: str, op_span: Span, left, right):
        return ast.BinOp(span=self._join(left, right), op=op, left=left, right=right, op_span=op_span)

    def or_(self, meta, children):
        left, right = children
        return self._binary("or", self._join(left, right), left, right)

    def and_(self, meta, children):
        left, right = children
        return self._binary("and", self._join(left, right), left, right)

    def not_(self, meta, children):
        return ast.Unary(span=self._span(meta, children), op="not", operand=children[0])

    def compare(self, meta, children):
        left, op, right = children
        return self._binary(str(op), self._tok(op), left, right)

    def binop(self, meta, children):
        left, op, right = children
        return self._binary(str(op), self._tok(op), left, right)

    def neg(self, meta, children):
        minus, operand = children
        return ast.Unary(span=self._join(minus, operand), op="-", operand=operand)

    def attribute(self, meta, children):
        obj, name = children
        return ast.Attribute(span=self._join(obj, name), obj=obj, attr=str(name), attr_span=self._tok(name))

    def index(self, meta, children):
        obj, idx = children
        return ast.Index(span=self._span(meta, children), obj=obj, index=idx)

    def call(self, meta, children):
        name, args = children
        return ast.Call(span=self._span(meta), func=str(name), func_span=self._tok(name), args=args or ())

    def args(self, meta, children):
        return tuple(c if isinstance(c, ast.Arg) else ast.Arg(span=c.span, name=None, value=c) for c in children)

    def kwarg(self, meta, children):
        name, value = children
        return ast.Arg(span=self._join(name, value), name=str(name), value=value, name_span=self._tok(name))

    def name(self, meta, children):
        (token,) = children
        return ast.Name(span=self._tok(token), id=str(token))

    def number(self, meta, children):
        (token,) = children
        return ast.Number(span=self._tok(token), value=self._number(token), text=str(token))

    def string(self, meta, children):
        (token,) = children
        return ast.String(span=self._tok(token), value=_unquote(token))

    def true(self, meta, children):
        return ast.Bool(span=self._span(meta), value=True)

    def false(self, meta, children):
        return ast.Bool(span=self._span(meta), value=False)

    def tuple(self, meta, children):
        return ast.Tuple(span=self._span(meta), items=tuple(c for c in children if c is not None))

    def list(self, meta, children):
        return ast.Tuple(span=self._span(meta), items=tuple(c for c in children if c is not None))

    def _number(self, token: Token) -> int | float:
        text = str(token).replace("_", "")
        scale = 1
        if text[-1] in _SUFFIX:
            scale = _SUFFIX[text[-1]]
            text = text[:-1]
        try:
            if any(c in text for c in ".eE"):
                value = float(text) * scale
                if scale != 1 and value.is_integer():
                    return int(value)
                if value in (float("inf"), float("-inf")):
                    raise ValueError
                return value
            return int(text) * scale
        except ValueError:
            raise DiagnosticError([error(
                codes.BAD_NUMBER, f"invalid number `{token}`", self._tok(token), "cannot be read as a number"
            )]) from None


def _unquote(token: Token) -> str:
    body = str(token)[1:-1]
    return body.encode("utf-8").decode("unicode_escape") if "\\" in body else body
