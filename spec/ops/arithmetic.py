"""Elementwise arithmetic between tensors, and between a tensor and a number.

`a + b`, `a - b`, `a * b` and `a / b` follow numpy's broadcasting rule over the sample axes
(the batch axis is never broadcast): the shapes are aligned on their last axis, and each pair
of sizes must be equal or one of them 1; the output takes the larger. A missing leading axis
counts as size 1, so `[L, D] + [D]` adds one vector to every row and `[C, H, W] * [C, 1, 1]`
scales each channel (squeeze-excitation).

    out[i] = max(a[i], b[i])    where a[i] == b[i] or min(a[i], b[i]) == 1

A number on either side (`x * 0.5`, `1 - x`) is the same op with its ``scalar`` attribute
and one tensor input. `-x` is `x * -1`.

MACs: `*` and `/` count one multiply per output element (a scale, as a batchnorm's is);
`+` and `-` count 0, as every addition in this project (residual sums, biases beyond the
multiply they follow).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from .. import codes
from ..ir import TensorType
from .base import BadSample, Op, ShapeError, TorchCall, register, sample

if TYPE_CHECKING:
    import numpy as np

    from .base import OnnxGraph

SPATIAL = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def broadcast_shape(shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """numpy's broadcast of sample shapes that broadcast (see :func:`broadcast_conflict`)."""
    out: tuple[int, ...] = ()
    for shape in shapes:
        rank = max(len(out), len(shape))
        a = (1,) * (rank - len(out)) + out
        b = (1,) * (rank - len(shape)) + shape
        out = tuple(max(x, y) for x, y in zip(a, b, strict=True))
    return out


def broadcast_conflict(shapes: Sequence[tuple[int, ...]]) -> tuple[int, int] | None:
    """(operand, axis counted from the end, 1 = last) of the first size that does not
    broadcast against the operands before it, or None when all broadcast."""
    out: tuple[int, ...] = ()
    for i, shape in enumerate(shapes):
        for back in range(min(len(out), len(shape)), 0, -1):  # the leading axis first
            x, y = out[-back], shape[-back]
            if x != y and 1 not in (x, y):
                return i, back
        out = broadcast_shape([out, shape])
    return None


def axis_name(rank: int, axis: int) -> str:
    """`axis 1 (height)` on a [C, H, W] or [C, D, H, W] map; `axis 1` on a [C, L] or [L, D]
    tensor, whose layout the shape does not tell."""
    names = SPATIAL.get(rank - 1) if rank >= 3 else None
    if names:
        return f"axis {axis} ({'channels' if axis == 0 else names[axis - 1]})"
    return f"axis {axis}"


def aligned(shapes: Sequence[tuple[int, ...]]) -> list[str]:
    """Shapes written one under the other, aligned on their last axis:
    ``[64, 56, 56]`` over ``[    64,  1]``."""
    rank = max(len(s) for s in shapes)
    padded = [(None,) * (rank - len(s)) + tuple(s) for s in shapes]
    widths = [max(len(str(p[a])) for p in padded if p[a] is not None) for a in range(rank)]
    lines = []
    for p in padded:
        text = ""
        for a, dim in enumerate(p):
            sep = "" if a == 0 else (", " if p[a - 1] is not None else "  ")
            text += sep + (str(dim).rjust(widths[a]) if dim is not None else " " * widths[a])
        first = next((a for a, d in enumerate(p) if d is not None), rank)
        cut = sum(widths[:first]) + 2 * first  # the blank columns before the first size
        lines.append(" " * cut + "[" + text[cut:] + "]" if cut else "[" + text + "]")
    return lines


class _Elementwise(Op):
    """The shared rule of `+ - * /`: broadcasting, one element type, the lowerings."""

    family: ClassVar[str] = "arithmetic"
    arity: ClassVar[int | None] = None
    min_arity: ClassVar[int] = 1  # one tensor and a scalar
    symbol: ClassVar[str]
    onnx_op: ClassVar[str]
    max_tensors: ClassVar[int | None] = 2
    counts_multiplies: ClassVar[bool] = False

    scalar: float | None = None  # the number of `x * 0.5`: then one tensor input

    def _operands(self, inputs: Sequence[TensorType]) -> None:
        n = len(inputs)
        if self.scalar is not None and n != 1:
            raise ShapeError(codes.BAD_ARG, f"`{self.kind}` with a scalar takes one tensor, got {n}",
                             arg="scalar", help=f"write `x {self.symbol} {self.scalar:g}`")
        if self.scalar is None and (n < 2 or self.max_tensors is not None and n > self.max_tensors):
            wanted = "two tensors" if self.max_tensors == 2 else "two or more tensors"
            raise ShapeError(codes.BAD_ARG, f"`{self.kind}` takes {wanted}, got {n}",
                             help=f"write `a {self.symbol} b`, or give `scalar=` for a number")
        for i, xi in enumerate(inputs):
            if xi.dtype != inputs[0].dtype:
                raise ShapeError(codes.DTYPE, f"operands of `{self.symbol}` differ in type: "
                                 f"{inputs[0].dtype} and {xi.dtype}", operand=i)
        if self.scalar is not None and inputs[0].dtype != "float32":
            raise ShapeError(codes.DTYPE, f"`{self.symbol}` with a number needs a float tensor, "
                             f"got {inputs[0]}", help="token ids are integers: embed them first")

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        self._operands(inputs)
        shapes = [x.shape for x in inputs]
        conflict = broadcast_conflict(shapes)
        if conflict is not None:
            raise self._mismatch(inputs, *conflict)
        out = broadcast_shape(shapes)
        return TensorType(shape=out, dtype=inputs[0].dtype)

    def _mismatch(self, inputs: Sequence[TensorType], operand: int, back: int) -> ShapeError:
        before = broadcast_shape([x.shape for x in inputs[:operand]])
        xi = inputs[operand].shape
        rank = max(len(before), len(xi))
        axis = rank - back
        a, b = before[-back], xi[-back]
        where = axis_name(rank, axis)
        lines = aligned([before, xi])
        notes = [f"aligned on the last axis: {lines[0]}",
                 f"{' ' * len('aligned on the last axis: ')}{lines[1]}",
                 f"{where}: {a} vs {b}; sizes broadcast when equal or when one of them is 1"]
        return ShapeError(
            codes.ADD_MISMATCH,
            f"shapes {_show(before)} and {_show(xi)} of `{self.symbol}` do not broadcast along {where}",
            notes=notes, help=self._help(TensorType(shape=before), inputs[operand], where, (a, b)),
            operand=operand,
        )

    def _help(self, x0: TensorType, xi: TensorType, where: str, sizes: tuple[int, int]) -> str:
        a, b = sizes
        if x0.rank != xi.rank:
            return (f"make {where} {a} on both sides, or 1 on one of them; `reshape` adds the "
                    "axes of size 1 that place a lower-rank operand")
        return f"make {where} {a} on both sides (or {b}), or 1 on one of them"

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        return output.numel * (len(inputs) - 1 or 1) if self.counts_multiplies else 0

    def lifts(self, inputs: Sequence[TensorType]) -> tuple[int, ...]:
        """Size-1 axes to insert after the batch axis of each input: torch and onnx broadcast
        the batch axis too, so a [B, D] operand of a [B, L, D] one must become [B, 1, D]."""
        rank = max(x.rank for x in inputs)
        return tuple(rank - x.rank for x in inputs)

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        if self.scalar is not None:
            return TorchCall("Scalar", {"op": self.kind, "value": self.scalar,
                                        "scalar_first": self._scalar_first()})
        lifts = self.lifts(inputs)
        return TorchCall("Elementwise", {"op": self.kind, "lift": lifts} if any(lifts) else {"op": self.kind})

    def _scalar_first(self) -> bool:
        return False

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """One ONNX node per operator, left to right; a lower-rank operand is unsqueezed
        after the batch axis first; a scalar is a float constant of shape []."""
        import numpy as np
        if self.scalar is not None:
            value = g.constant(np.array(self.scalar, np.float32))
            pair = [value, inputs[0]] if self._scalar_first() else [inputs[0], value]
            return g.node(self.onnx_op, pair)
        values = list(inputs)
        for i, lift in enumerate(self.lifts(types)):
            if lift:
                values[i] = g.node("Unsqueeze", [values[i], g.ints(range(1, 1 + lift))])
        out = values[0]
        for other in values[1:]:
            out = g.node(self.onnx_op, [out, other])
        return out

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """numpy's own broadcasting, the batch axis kept first: each sample of a lower-rank
        operand gains leading axes of size 1."""
        rank = max(x.ndim for x in inputs)
        xs = [x.reshape(x.shape[:1] + (1,) * (rank - x.ndim) + x.shape[1:]) for x in inputs]
        if self.scalar is not None:
            a, b = (self.scalar, xs[0]) if self._scalar_first() else (xs[0], self.scalar)
            return self._apply(a, b)
        out = xs[0]
        for x in xs[1:]:
            out = self._apply(out, x)
        return out

    def _apply(self, a: Any, b: Any) -> Any:
        raise NotImplementedError


def _show(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


@register
class Add(_Elementwise):
    """Elementwise sum of two or more tensors, broadcast (residual connections, biases).

    Shape: the broadcast of the operands' shapes (equal shapes for a residual sum).
    Params: none.
    MACs: 0 by convention: additions are not multiply-accumulates.
    """

    kind: ClassVar[str] = "add"
    symbol: ClassVar[str] = "+"
    onnx_op: ClassVar[str] = "Add"
    max_tensors: ClassVar[int | None] = None
    samples = (
        sample({}, (3, 4, 4), (3, 4, 4)),
        sample({}, (5,), (5,), (5,), note="three operands: a chain of two ONNX Adds"),
        sample({}, (3, 4, 4), (3, 1, 4), note="broadcast along height"),
        sample({}, (4, 6), (6,), note="lower rank: unsqueezed after the batch axis"),
        sample({"scalar": 1.5}, (2, 3), note="a number: `x + 1.5`"),
    )
    bad_samples = (
        BadSample(call="x0 + x1", inputs=((3, 8, 8), (3, 4, 4)), code=codes.ADD_MISMATCH),
        BadSample(call="add(x0, x1, x2)", inputs=((3, 8, 8), (3, 8, 8), (4, 8, 8)),
                  code=codes.ADD_MISMATCH),
    )

    def _help(self, x0: TensorType, xi: TensorType, where: str, sizes: tuple[int, int]) -> str:
        if x0.rank == xi.rank and x0.rank >= 2 and 1 not in x0.shape + xi.shape:
            return _residual_help(x0, xi)  # two feature maps: a residual sum
        return super()._help(x0, xi, where, sizes)

    def _apply(self, a: Any, b: Any) -> Any:
        return a + b


@register
class Sub(_Elementwise):
    """Elementwise difference `a - b`, broadcast; `x - 1` and `1 - x` with a number.

    Shape: the broadcast of the two shapes.
    Params: none.
    MACs: 0, as for `+`.
    """

    kind: ClassVar[str] = "sub"
    symbol: ClassVar[str] = "-"
    onnx_op: ClassVar[str] = "Sub"
    samples = (
        sample({}, (3, 4, 4), (3, 4, 4)),
        sample({}, (2, 5), (1, 5), note="broadcast along axis 0"),
        sample({"scalar": 1.0, "scalar_first": True}, (6,), note="`1 - x`"),
        sample({"scalar": 0.25}, (2, 3), note="`x - 0.25`"),
    )
    bad_samples = (
        BadSample(call="x0 - x1", inputs=((3, 8), (4, 8)), code=codes.ADD_MISMATCH),
        BadSample(call="sub(x0, x1, x0)", inputs=((3, 8), (3, 8)), code=codes.BAD_ARG),
    )

    scalar_first: bool = False  # `1 - x`: the number is the left operand

    def _scalar_first(self) -> bool:
        return self.scalar_first

    def _apply(self, a: Any, b: Any) -> Any:
        return a - b


@register
class Mul(_Elementwise):
    """Elementwise product, broadcast: squeeze-excitation `x * s` with s [C, 1, 1], gates,
    `x * 0.5`.

    Shape: the broadcast of the operands' shapes.
    Params: none.
    MACs: one multiply per output element and operand after the first (numel of the output
    for `a * b`), as a scale.
    """

    kind: ClassVar[str] = "mul"
    symbol: ClassVar[str] = "*"
    onnx_op: ClassVar[str] = "Mul"
    max_tensors: ClassVar[int | None] = None
    counts_multiplies: ClassVar[bool] = True
    samples = (
        sample({}, (4, 3, 3), (4, 1, 1), note="squeeze-excitation"),
        sample({}, (2, 3), (2, 3), (2, 3), note="three operands"),
        sample({}, (5,), (3, 1), note="both sides broadcast: [3, 5]"),
        sample({"scalar": -0.5}, (3, 4), note="`x * -0.5`"),
    )
    bad_samples = (
        BadSample(call="x0 * x1", inputs=((8, 4, 4), (4, 1, 1)), code=codes.ADD_MISMATCH),
        BadSample(call="mul(x0, x1, scalar=2.0)", inputs=((8, 4, 4), (8, 4, 4)), code=codes.BAD_ARG),
    )

    def _apply(self, a: Any, b: Any) -> Any:
        return a * b


@register
class Div(_Elementwise):
    """Elementwise quotient `a / b`, broadcast; `x / 2` and `1 / x` with a number.

    Shape: the broadcast of the two shapes.
    Params: none.
    MACs: one per output element (a division counted as a multiply).
    """

    kind: ClassVar[str] = "div"
    symbol: ClassVar[str] = "/"
    onnx_op: ClassVar[str] = "Div"
    counts_multiplies: ClassVar[bool] = True
    samples = (
        sample({}, (3, 4), (3, 1), note="divide each row by a number of its own"),
        sample({"scalar": 4.0}, (2, 3), note="`x / 4`"),
        sample({"scalar": 2.0, "scalar_first": True}, (5,), note="`2 / x`"),
    )
    bad_samples = (
        BadSample(call="x0 / x1", inputs=((3, 4), (2, 4)), code=codes.ADD_MISMATCH),
    )

    scalar_first: bool = False  # `1 / x`

    def _scalar_first(self) -> bool:
        return self.scalar_first

    def _apply(self, a: Any, b: Any) -> Any:
        return a / b


def _residual_help(x0: TensorType, xi: TensorType) -> str:
    """Two feature maps of one rank: project the skip path onto the other with a 1x1 conv."""
    src, dst = sorted((x0, xi), key=lambda x: (-math.prod(x.shape[1:]), x.shape[0]))
    ratios = [a / b for a, b in zip(src.shape[1:], dst.shape[1:], strict=True)]
    dims = "×".join
    if any(not r.is_integer() for r in ratios):
        return (
            f"spatial sizes {dims(map(str, src.shape[1:]))} and {dims(map(str, dst.shape[1:]))} "
            "differ by no integer factor; use the same strides and padding on both paths"
        )
    stride = [int(r) for r in ratios]
    # a kernel equal to the stride tiles any size the stride divides exactly:
    # (N - S) / S + 1 = N / S, so the projection needs no rounding
    shown = stride[0] if len(set(stride)) == 1 else tuple(stride)
    if max(stride) == 1:
        conv = f"conv({dst.shape[0]}, 1)"
    else:
        conv = f"conv({dst.shape[0]}, {shown}, stride={shown})"
    return f"project the skip path with a strided conv: `{conv}` turns {src} into {dst}"
