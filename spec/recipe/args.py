"""Recipe arguments: constant values from the AST, call signatures, binding and range checks.

A recipe's values are constants: numbers (with arithmetic: `1/3`, `2**-10`), strings,
true/false, bare names (options such as `full` or `horizontal`) and tuples. Each callable
choice (`adam(lr=1e-3)`, `step(10, factor=0.5)`) has a :class:`Signature` whose parameters
carry a type and a range; binding reports every problem as a located diagnostic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nnspec.spec import ast, bounds, codes
from nnspec.spec.arguments import Symbol, describe, positional_after_keyword
from nnspec.spec.diagnostics import Diagnostic, error
from nnspec.spec.source import Span
from nnspec.spec.suggest import did_you_mean


class _Poison:
    def __repr__(self) -> str:
        return "POISON"


POISON: Any = _Poison()  # a value that failed; its error is already recorded
REQUIRED: Any = object()
NODE = "node"  # a parameter whose value is kept as AST (warmup's `then=...`)


def constant(expr: ast.Expr, diags: list[Diagnostic]) -> Any:
    """The value of a constant expression, or POISON after recording why it is not one."""
    if isinstance(expr, (ast.Number, ast.String, ast.Bool)):
        return expr.value
    if isinstance(expr, ast.Name):
        return Symbol(expr.id)
    if isinstance(expr, ast.Tuple):
        items = tuple(constant(i, diags) for i in expr.items)
        return POISON if any(i is POISON for i in items) else items
    if isinstance(expr, ast.Unary) and expr.op == "-":
        value = constant(expr.operand, diags)
        if value is POISON or _number(value):
            return value if value is POISON else -value
    elif isinstance(expr, ast.BinOp) and expr.op in ("+", "-", "*", "/", "//", "%", "**"):
        left, right = constant(expr.left, diags), constant(expr.right, diags)
        if POISON in (left, right):
            return POISON
        if _number(left) and _number(right):
            if expr.op == "**" and not bounds.fits_pow(left, right):  # judged before computing it
                diags.append(error(codes.NUMBER_RANGE, "integer result out of range", expr.span,
                                   "too large", notes=[bounds.RANGE_NOTE]))
                return POISON
            try:
                result = _arith(expr.op, left, right)
                if isinstance(result, int) and not bounds.int_in_range(result):
                    diags.append(error(codes.NUMBER_RANGE, "integer result out of range", expr.span,
                                       f"this is {bounds.show(result)}", notes=[bounds.RANGE_NOTE]))
                    return POISON
                return result
            except (ZeroDivisionError, OverflowError, ValueError):
                diags.append(error(codes.RECIPE_VALUE, f"cannot compute `{expr.op}` of "
                                   f"{describe(left)} and {describe(right)}", expr.span))
                return POISON
    what = "a call" if isinstance(expr, ast.Call) else "an expression"
    diags.append(error(codes.RECIPE_VALUE, f"expected a constant here, found {what}", expr.span,
                       "not a number, name, string or tuple",
                       help='recipe values are constants: numbers, true/false, "strings", names '
                       "such as `full`, or tuples"))
    return POISON


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _arith(op: str, a: Any, b: Any) -> Any:
    if op == "/":
        return a // b if isinstance(a, int) and isinstance(b, int) and b and a % b == 0 else a / b
    result = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "//": lambda: a // b,
              "%": lambda: a % b, "**": lambda: a**b}[op]()
    if isinstance(result, complex) or isinstance(result, float) and not math.isfinite(result):
        raise ValueError
    return result


# -- parameters -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A range such as ``[0, 1)`` or ``(0, inf)``, written as it reads."""

    text: str

    def _parts(self) -> tuple[float, float, bool, bool]:
        lo, hi = self.text[1:-1].split(",")
        return float(lo), float(hi), self.text[0] == "[", self.text[-1] == "]"

    def __contains__(self, value: float) -> bool:
        lo, hi, lo_in, hi_in = self._parts()
        return (lo < value or lo_in and lo == value) and (value < hi or hi_in and hi == value)

    def words(self) -> str:
        lo, hi, lo_in, hi_in = self._parts()
        if math.isinf(hi):
            return f"{'>=' if lo_in else '>'} {_g(lo)}"
        return self.text.replace(" ", "").replace(",", ", ")


def _g(x: float) -> str:
    return str(int(x)) if x.is_integer() else repr(x)


# types: float, int, bool, str, name (one of `choices`), size (int or (h, w)),
# pair (two numbers), numbers (a number or a tuple of numbers), label (a string or an int),
# patterns (a "glob" or a tuple of them, read as a tuple), NODE (kept as AST)
_TYPE_WORDS = {"float": "a number", "int": "an integer", "bool": "true or false",
               "str": 'a "string"', "size": "an integer or (height, width)",
               "pair": "two numbers, e.g. (0.9, 0.999)",
               "numbers": "a number or a tuple of numbers",
               "label": 'a column name ("label") or index',
               "patterns": 'a "pattern" or a tuple of them, e.g. ("features.*", "head.*")'}


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Any = REQUIRED
    range: str | None = None
    choices: tuple[str, ...] = ()
    positional: bool = True
    shown: bool = True  # listed in the signature (False: an alternative spelling)


@dataclass(frozen=True)
class Signature:
    """What one choice accepts: `step(every, factor=0.1)`. Positional parameters come first."""

    kind: str
    params: tuple[Param, ...] = ()

    def show(self) -> str:
        parts = [p.name if p.default is REQUIRED else f"{p.name}={_show(p.default, p.type)}"
                 for p in self.params if p.shown]
        return f"{self.kind}({', '.join(parts)})" if parts else self.kind

    @property
    def positional(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.positional)


def _show(value: Any, type: str = "") -> str:
    if type == "patterns":
        return f'"{value}"'  # a glob reads as the string it is: match="*"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    return repr(value)


@dataclass
class Bound:
    """Bound arguments: every parameter's value (defaults filled in) and the given ones' spans."""

    values: dict[str, Any]
    spans: dict[str, Span]


def bind(sig: Signature, args: Sequence[ast.Arg], call_span: Span, diags: list[Diagnostic], *,
         what: str | None = None) -> Bound | None:
    """Bind arguments to a signature; None after recording the errors."""
    what = what or f"`{sig.kind}`"
    misplaced = positional_after_keyword(args, [p.name for p in sig.positional])
    if misplaced is not None:  # `step(factor=0.5, 10)`: which value is which is unknown
        diags.append(misplaced)
        return None
    before = len(diags)
    values: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    positional = [a for a in args if a.name is None]
    slots = sig.positional
    if len(positional) > len(slots):
        extra = positional[len(slots)]
        diags.append(error(
            codes.TOO_MANY_ARGS,
            f"{what} takes {len(slots)} positional argument{'s' if len(slots) != 1 else ''} "
            f"but {len(positional)} {'was' if len(positional) == 1 else 'were'} given",
            extra.span, "extra argument", notes=[f"signature: {sig.show()}"],
            help=_keyword_help(sig, extra)))
    for param, arg in zip(slots, positional):
        values[param.name], spans[param.name] = arg.value, arg.value.span
    names = [p.name for p in sig.params]
    for arg in args:
        if arg.name is None:
            continue
        name_span = arg.name_span or arg.span
        if arg.name not in names:
            diags.append(error(codes.UNKNOWN_ARG, f"{what} has no argument `{arg.name}`", name_span,
                               "unknown argument", notes=[f"signature: {sig.show()}"],
                               help=did_you_mean(arg.name, names)))
        elif arg.name in values:
            diags.append(error(codes.DUPLICATE, f"argument `{arg.name}` given twice", name_span,
                               "given again", secondary=[(spans[arg.name], "first given here")]))
        else:
            values[arg.name], spans[arg.name] = arg.value, arg.value.span
    missing = [p.name for p in sig.params if p.default is REQUIRED and p.name not in values]
    if missing:
        diags.append(error(codes.MISSING_ARG, f"{what} needs `{missing[0]}`", call_span,
                           f"`{missing[0]}` missing", notes=[f"signature: {sig.show()}"]))
    out: dict[str, Any] = {}
    for param in sig.params:
        if param.name not in values:
            out[param.name] = None if param.default is REQUIRED else param.default
            continue
        expr = values[param.name]
        if param.type == NODE:
            out[param.name] = expr
        else:
            out[param.name] = check_value(param, constant(expr, diags), expr.span, what, diags)
    if len(diags) > before or any(v is POISON for v in out.values()):
        return None
    return Bound(out, spans)


def _keyword_help(sig: Signature, extra: ast.Arg) -> str | None:
    rest = [p for p in sig.params if not p.positional and p.shown]
    if not rest:
        return None
    if not sig.positional:
        value = extra.value.text if isinstance(extra.value, ast.Number) else "..."
        return (f"`{sig.kind}` takes its arguments by keyword, "
                f"e.g. `{sig.kind}({rest[0].name}={value})`")
    return f"give the others by keyword: {', '.join(f'`{p.name}=`' for p in rest)}"


def check_value(param: Param, value: Any, span: Span, what: str | None,
                diags: list[Diagnostic]) -> Any:
    """Check a value's type and range; return it converted (floats, tuples) or POISON.
    ``what`` names the call the parameter belongs to (None: a setting's own value)."""
    if value is POISON:
        return POISON
    name = f"`{param.name}` of {what}" if what else f"`{param.name}`"
    large = _large_count(value)
    if large is not None:  # every integer of a recipe is a size, a count, a seed or an index
        diags.append(error(codes.NUMBER_RANGE, f"{name} is out of range: {bounds.show(large)}", span,
                           "too large", notes=[bounds.COUNT_NOTE]))
        return POISON
    converted = _convert(param, value)
    if converted is POISON:
        if param.type == "name":
            choices = ", ".join(f"`{c}`" for c in param.choices)
            diags.append(error(codes.RECIPE_VALUE, f"{name} must be one of {choices}, got "
                               f"{describe(value)}", span, "not a choice",
                               help=_suggest(value, param.choices)))
        else:
            words = _TYPE_WORDS[param.type]
            diags.append(error(codes.RECIPE_VALUE, f"{name} must be {words}, got {describe(value)}",
                               span, f"expected {words}"))
        return POISON
    if param.range is not None and converted is not None:
        interval = Interval(param.range)
        numbers = converted if isinstance(converted, tuple) else (converted,)
        bad = [n for n in numbers if n not in interval]
        if bad:
            diags.append(error(codes.RECIPE_VALUE, f"{name} must be {_range_words(interval)}, got "
                               f"{describe(bad[0])}", span, f"outside {interval.text}"))
            return POISON
    return converted


def _large_count(value: Any) -> int | None:
    if isinstance(value, tuple):
        return next((v for v in map(_large_count, value) if v is not None), None)
    if _number(value) and isinstance(value, int) and not bounds.count_in_range(value):
        return value
    return None


def _suggest(value: Any, choices: Sequence[str]) -> str | None:
    """Did-you-mean by edit distance, or the one choice that starts with the value (`val_acc`)."""
    if not isinstance(value, str):
        return None
    starting = [c for c in choices if c.startswith(value)]
    if len(starting) == 1:
        return did_you_mean(value, choices) or f"did you mean `{starting[0]}`?"
    return did_you_mean(value, choices)


def _range_words(interval: Interval) -> str:
    words = interval.words()
    return words if words[0] in "<>" else f"in {words}"


def _convert(param: Param, value: Any) -> Any:
    if param.default is None and value == "none" and isinstance(value, Symbol):
        return None  # `resize=none`: the default, spelled out
    t = param.type
    if t == "float":
        return float(value) if _number(value) else POISON
    if t == "int":
        return value if _number(value) and isinstance(value, int) else POISON
    if t == "bool":
        return value if isinstance(value, bool) else POISON
    if t == "str":
        return str(value) if isinstance(value, str) and not isinstance(value, Symbol) else POISON
    if t == "name":
        return str(value) if isinstance(value, str) and value in param.choices else POISON
    if t == "label":
        if isinstance(value, str) and not isinstance(value, Symbol):
            return str(value)
        return value if _number(value) and isinstance(value, int) else POISON
    if t == "size":
        pair = (value, value) if not isinstance(value, tuple) else value
        ok = len(pair) == 2 and all(_number(v) and isinstance(v, int) for v in pair)
        return tuple(pair) if ok else POISON
    if t == "pair":
        ok = isinstance(value, tuple) and len(value) == 2 and all(_number(v) for v in value)
        return tuple(float(v) for v in value) if ok else POISON
    if t == "numbers":
        if _number(value):
            return float(value)
        ok = isinstance(value, tuple) and len(value) > 0 and all(_number(v) for v in value)
        return tuple(float(v) for v in value) if ok else POISON
    if t == "patterns":
        items = value if isinstance(value, tuple) else (value,)
        ok = len(items) > 0 and all(isinstance(v, str) and not isinstance(v, Symbol) and v
                                    for v in items)
        return tuple(str(v) for v in items) if ok else POISON
    raise AssertionError(t)


def choose(name: str, span: Span, table: dict[str, Any], what: str, diags: list[Diagnostic],
           elsewhere: dict[str, str] | None = None) -> Any:
    """Look a choice up by name (a loss, an optimizer...): the entry, or POISON with a
    did-you-mean, or a pointer to the setting where the name belongs."""
    if name in table:
        return table[name]
    hint = _suggest(name, list(table))
    if hint is None and elsewhere and name in elsewhere:
        hint = f"`{name}` is {elsewhere[name]}"
    diags.append(error(codes.RECIPE_CHOICE, f"unknown {what} `{name}`", span,
                       f"not {article(what)}", notes=[f"{plural(what)}: {', '.join(table)}"],
                       help=hint))
    return POISON


def article(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def plural(word: str) -> str:
    return word + ("es" if word.endswith("s") else "s")


def call_parts(expr: ast.Expr) -> tuple[str, Span, tuple[ast.Arg, ...]] | None:
    """`adam(lr=1e-3)` -> ("adam", span of `adam`, args); `kaiming` -> ("kaiming", span, ())."""
    if isinstance(expr, ast.Call):
        return expr.func, expr.func_span, expr.args
    if isinstance(expr, ast.Name):
        return expr.id, expr.span, ()
    return None
