"""Arithmetic shared by every windowed op (conv, pool, transposed conv): written once.

Output size of a window F (after dilation d: F = d(k-1)+1) sliding with stride S over an
input of size N padded by P on each side (course, lecture 9):

    out = (N + 2P - F) / S + 1

which must be an integer unless a rounding is declared.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Literal

from .. import codes
from .base import ShapeError

IntOrTuple = int | tuple[int, ...]
AXIS_NAMES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def axis_index(value: int, rank: int, what: str, arg: str) -> int:
    """A non-batch axis index; negative counts from the end."""
    axis = value + rank if value < 0 else value
    if not 0 <= axis < rank:
        raise ShapeError(
            codes.ARGUMENT_SHAPE,
            f"{what} {arg}={value} is out of range for an input of rank {rank}",
            notes=[f"valid: {-rank} <= {arg} < {rank} (the batch axis is not counted)"],
            arg=arg,
        )
    return axis


def per_axis(value: IntOrTuple, n: int, arg: str) -> tuple[int, ...]:
    """Broadcast an int to n spatial axes; a tuple must have exactly n entries."""
    if isinstance(value, int):
        return (value,) * n
    if len(value) != n:
        raise ShapeError(
            codes.ARGUMENT_SHAPE,
            f"`{arg}` has {len(value)} entries but the input has {n} spatial "
            f"ax{'is' if n == 1 else 'es'}",
            notes=[f"{arg}={tuple(value)}; spatial axes: {', '.join(AXIS_NAMES.get(n, ()))}"],
            help=f"give one number or a tuple of {n}",
            arg=arg,
        )
    return tuple(value)


def fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


def same_padding(kernel: int, dilation: int = 1) -> tuple[int, int]:
    """'same' for stride 1: P = d(F-1)/2, the odd pixel going after (PyTorch's choice)."""
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2


def window_output(
    size: int,
    kernel: int,
    stride: int,
    pad: tuple[int, int],
    *,
    dilation: int = 1,
    rounding: Literal["exact", "floor", "ceil"] = "exact",
    what: str = "conv",
    axis: str = "",
    stride_arg: str = "stride",
    padding_arg: str = "padding",
) -> int:
    """(N + 2P - F) / S + 1, exactly or with the declared rounding; raise with the numbers."""
    window = dilation * (kernel - 1) + 1
    padded = size + pad[0] + pad[1]
    span = padded - window
    pad_text = str(pad[0] + pad[1])
    formula = (
        f"(N + 2P - F) / S + 1 = ({size} + {pad_text} - {window}) / {stride} + 1 = "
        f"{fmt(span / stride + 1)}"
    )
    where = f" along {axis}" if axis else ""
    notes = [formula]
    if dilation != 1:
        notes.append(f"F = d(k - 1) + 1 = {dilation}·({kernel} - 1) + 1 = {window}")
    if span < 0:
        raise ShapeError(
            codes.NONPOSITIVE,
            f"{what} window is larger than its input{where}",
            notes=notes,
            help=(
                f"the window covers {window} but the padded input has {padded}; "
                f"use a kernel of at most {padded} or more padding"
            ),
        )
    if span % stride == 0:
        return span // stride + 1
    if rounding == "floor":
        return span // stride + 1
    if rounding == "ceil":
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + pad[0]:  # the last window must start inside the input
            out -= 1
        return out
    raise ShapeError(
        codes.NOT_INTEGER,
        f"{what} output size is not an integer{where}",
        notes=notes,
        help=_exact_fixes(size, window, stride, pad, what, stride_arg, padding_arg),
        arg=None,
    )


def _exact_fixes(
    size: int, window: int, stride: int, pad: tuple[int, int], what: str, stride_arg: str, padding_arg: str
) -> str:
    fixes = []
    symmetric = pad[0] == pad[1]
    if symmetric:
        for p in _nearest(pad[0], 0, window + stride - 1):
            span = size + 2 * p - window
            if p != pad[0] and span >= 0 and span % stride == 0:
                fixes.append(f"{padding_arg}={p} gives {span // stride + 1} exactly")
                break
    span = size + pad[0] + pad[1] - window
    floor_out = span // stride + 1
    tail = f"set `rounding floor` to accept {floor_out}"
    if what.endswith("pool"):
        ceil_out = window_output(size, window, stride, pad, rounding="ceil")
        tail += f" (or `rounding=ceil` for {ceil_out})"
    fixes.append(tail)
    # changing the stride changes the architecture: the last resort, and only a near one
    best = next((s for s in _nearest(stride, max(2, -(-stride // 2)), 2 * stride) if span > 0 and span % s == 0),
                None)
    if best is not None and best != stride:
        fixes.append(f"{stride_arg}={best} gives {span // best + 1} exactly")
    return "; or ".join(fixes)


_SEARCHED = 4096  # values tried for a suggestion: sizes may be huge, a help line must be quick


def _nearest(centre: int, low: int, high: int) -> Iterator[int]:
    """The integers of [low, high] by distance from ``centre``, the smaller first on a tie,
    up to a distance of :data:`_SEARCHED`."""
    for d in range(min(max(centre - low, high - centre), _SEARCHED) + 1):
        for value in (centre - d, centre + d) if d else (centre,):
            if low <= value <= high:
                yield value


def conv_transpose_output(
    size: int, kernel: int, stride: int, padding: int, output_padding: int, dilation: int, axis: str
) -> int:
    """Transposed conv: out = (N - 1)·S - 2P + d(k - 1) + output_padding + 1."""
    out = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
    if out < 1:
        raise ShapeError(
            codes.NONPOSITIVE,
            f"upconv output size is not positive along {axis}",
            notes=[
                f"(N - 1)·S - 2P + d(k - 1) + output_padding + 1 = ({size} - 1)·{stride} - "
                f"2·{padding} + {dilation}·({kernel} - 1) + {output_padding} + 1 = {out}"
            ],
            help=_upconv_padding_help(size, kernel, stride, output_padding, dilation),
            arg="padding",
        )
    return out


def _upconv_padding_help(size: int, kernel: int, stride: int, output_padding: int, dilation: int) -> str:
    room = (size - 1) * stride + dilation * (kernel - 1) + output_padding
    if room < 0:
        return "use a larger kernel or stride"
    largest = room // 2
    out = room - 2 * largest + 1
    return f"padding={largest} or less keeps the output positive (padding={largest} gives {out})"


def check_divisible(value: int, divisor: int, what: str, by: str, arg: str | None = None) -> None:
    if divisor <= 0 or value % divisor:
        verb = "are" if what.endswith("s") else "is"
        raise ShapeError(
            codes.DIVISIBLE,
            f"{what} ({value}) {verb} not divisible by {by} ({divisor})",
            notes=[f"{value} / {divisor} = {value / divisor:.2f}" if divisor else "division by 0"],
            help=f"use {by} dividing {value}: {', '.join(str(d) for d in divisors(value)[:8])}",
            arg=arg,
        )


def divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def expect_rank(x_rank: int, ranks: Sequence[int], what: str, layout: str) -> None:
    if x_rank not in ranks:
        allowed = " or ".join(str(r) for r in ranks)
        raise ShapeError(
            codes.RANK,
            f"{what} expects an input of rank {allowed} ({layout}), got rank {x_rank}",
            help="the batch dimension is implicit; use `flatten` or `reshape` to change the rank",
        )
