"""Binding call arguments to an op's attribute model, and pydantic's complaints to diagnostics."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError

from . import ast, codes
from .diagnostics import Diagnostic, error
from .ops.base import Op
from .source import Span
from .suggest import did_you_mean


class Symbol(str):
    """A bare name that named no value: an option such as `same`, `bilinear` or `last`."""


def describe(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    if isinstance(value, Symbol):
        return f"`{value}`"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "(" + ", ".join(describe(v) for v in value) + ")"
    return repr(value)


@cache
def option_words(op: type[Op], field: str | None) -> frozenset[str]:
    """The option names an op's argument accepts (its Literal strings: `same`, `channels`),
    found through unions, Annotated and tuples; none for an unknown field."""
    info = op.model_fields.get(field) if field is not None else None
    if info is None:
        return frozenset()
    words: set[str] = set()
    pending = [info.annotation]
    while pending:
        tp = pending.pop()
        if get_origin(tp) is Literal:
            words.update(a for a in get_args(tp) if isinstance(a, str))
        else:
            pending.extend(get_args(tp))
    return frozenset(words)


@cache
def op_fields(op: type[Op]) -> tuple[frozenset[str], tuple[str, ...], str]:
    """An op's argument names, its required ones and its signature (the ops never change)."""
    fields = op.model_fields
    return frozenset(fields), tuple(f for f, info in fields.items() if info.is_required()), op.signature()


def positional_after_keyword(args: Sequence[ast.Arg], slots: Sequence[str] = ()) -> Diagnostic | None:
    """Python's rule for a call: once an argument is given by keyword, so are all after it.

    Without it `conv(8, stride=1, 3)` would quietly take 3 as the kernel. ``slots`` name the
    positional parameters in order (empty where positions do not name a parameter, as for
    the tensors of `concat`), so the help can say which keyword the argument would be: the
    first one left free by the arguments before it and the keywords of the call.
    """
    keyword: ast.Arg | None = None
    position = 0
    named = {arg.name for arg in args if arg.name is not None}
    free = [slot for slot in slots if slot not in named]  # where a positional value would go
    for arg in args:
        if arg.name is not None:
            keyword = arg
            continue
        if keyword is None:
            position += 1
            continue
        move = f"move it before `{keyword.name}=`"
        if position < len(free):
            help = f"{move}, or give it by keyword: `{free[position]}={_text(arg.value)}`"
        else:
            help = f"{move}: positional arguments come first"
        return error(codes.SYNTAX, "positional argument follows keyword argument", arg.span,
                     "positional argument", secondary=[(keyword.span, "after this keyword argument")],
                     help=help)
    return None


def _text(expr: ast.Expr) -> str:
    """A short rendering of a simple argument for a help line."""
    if isinstance(expr, ast.Number):
        return expr.text
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Unary) and expr.op == "-" and isinstance(expr.operand, ast.Number):
        return f"-{expr.operand.text}"
    return "..."


def bind_op_args(
    op: type[Op],
    call_span: Span,
    positional: Sequence[tuple[Any, ast.Arg]],
    keywords: Sequence[tuple[Any, ast.Arg]],
) -> tuple[dict[str, Any], dict[str, Span], list[Diagnostic]]:
    """Match arguments to fields; return the values, each given field's span, and errors."""
    diags: list[Diagnostic] = []
    values: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    fields, required, signature = op_fields(op)
    if len(positional) > len(op.positional):
        extra = positional[len(op.positional)][1]
        diags.append(error(
            codes.TOO_MANY_ARGS,
            f"`{op.kind}` takes {len(op.positional)} positional argument"
            f"{'s' if len(op.positional) != 1 else ''} but {len(positional)} {'was' if len(positional) == 1 else 'were'} given",
            extra.span, "extra argument",
            notes=[f"signature: {signature}"],
            help=_positional_help(op, positional),
        ))
    for field, (value, arg) in zip(op.positional, positional):
        values[field] = value
        spans[field] = arg.span
    for value, arg in keywords:
        assert arg.name is not None
        if arg.name not in fields:
            hint = did_you_mean(arg.name, fields)
            diags.append(error(
                codes.UNKNOWN_ARG, f"`{op.kind}` has no argument `{arg.name}`",
                arg.name_span or arg.span, "unknown argument",
                notes=[f"signature: {signature}"], help=hint,
            ))
            continue
        if arg.name in values:
            diags.append(error(
                codes.DUPLICATE, f"argument `{arg.name}` given twice", arg.span, "given again here",
                secondary=[(spans[arg.name], "first given here")],
            ))
            continue
        values[arg.name] = value
        spans[arg.name] = arg.value.span
    missing = [f for f in required if f not in values]
    if missing:
        diags.append(error(
            codes.MISSING_ARG,
            f"`{op.kind}` needs `{missing[0]}`" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""),
            call_span, f"`{missing[0]}` missing",
            notes=[f"signature: {signature}"],
        ))
    return values, spans, diags


def _positional_help(op: type[Op], positional: Sequence[tuple[Any, ast.Arg]]) -> str:
    values = [describe(v) for v, _ in positional]
    if (len(op.model_fields) == 1 and op.positional
            and "tuple" in str(op.model_fields[op.positional[0]].annotation)):
        return f"several values form one tuple: `{op.kind}([{', '.join(values)}])`"
    rest = [f for f in op.model_fields if f not in op.positional]
    by_position = ", ".join(f"`{f}`" for f in op.positional) or "nothing"
    if not rest:
        return f"`{op.kind}` takes {by_position} by position"
    n = len(op.positional)
    example = ", ".join(values[:n] + [f"{rest[0]}={values[n]}"])
    return f"`{op.kind}` takes {by_position} by position; give the others by keyword: `{op.kind}({example})`"


def validation_diagnostics(
    op: type[Op], exc: ValidationError, values: dict[str, Any], spans: dict[str, Span], call_span: Span
) -> list[Diagnostic]:
    """One diagnostic per invalid field, pointing at the argument that was given."""
    by_field: dict[str, list[dict[str, Any]]] = {}
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        by_field.setdefault(field, []).append(err)
    diags = []
    for field, errs in by_field.items():
        given = values.get(field)
        expected = _expected(errs)
        literals = [str(v) for e in errs if e["type"] == "literal_error" for v in _literal_values(op, field)]
        hint = did_you_mean(str(given), literals) if isinstance(given, str) and literals else None
        diags.append(error(
            codes.BAD_ARG,
            f"invalid value for `{field}` of `{op.kind}`: {describe(given)}",
            spans.get(field, call_span), f"expected {expected}",
            notes=[f"signature: {op.signature()}"],
            help=hint,
        ))
    return diags


def _literal_values(op: type[Op], field: str) -> list[Any]:
    import typing

    found: list[Any] = []

    def walk(tp: Any) -> None:
        if typing.get_origin(tp) is typing.Literal:
            found.extend(typing.get_args(tp))
        for sub in typing.get_args(tp):
            walk(sub)

    walk(op.model_fields[field].annotation)
    return found


def _expected(errs: list[dict[str, Any]]) -> str:
    words: list[str] = []
    for err in errs:
        kind, ctx = err["type"], err.get("ctx", {})
        word = {
            "int_type": "an integer",
            "int_parsing": "an integer",
            "float_type": "a number",
            "bool_type": "true or false",
            "tuple_type": "a tuple",
            "string_type": "a name",
            "none_required": "none",
        }.get(kind)
        if kind == "literal_error":
            word = ctx.get("expected", "").replace("'", "`")
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            sign = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
            bound = next(iter(ctx.values()), "")
            word = f"a value {sign} {bound}"
        elif kind == "too_short" or kind == "too_long":
            word = err["msg"].lower()
        if word is None:
            word = err["msg"][0].lower() + err["msg"][1:]
        if len(err["loc"]) > 1 and isinstance(err["loc"][-1], int):
            word = f"{word} in every entry"
        for part in word.split(" or ") if kind == "literal_error" else [word]:
            if part not in words:
                words.append(part)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
