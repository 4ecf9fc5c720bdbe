"""Axis ops: transpose, permute, channel_shuffle (reordering, no arithmetic).

Axes count the non-batch axes from 0 (0 = channels), as `softmax(axis=0)` and `concat(axis=0)`
do; a negative axis counts from the end. An axis may also be named: `channels`, and the
spatial names of the input's layout (`length` for [C, L]; `height`, `width` for [C, H, W];
`depth`, `height`, `width` for [C, D, H, W]).

Receptive field: a reordering that keeps channels at position 0 only reorders the spatial
axes, so the one-number field (the largest over the axes) is unchanged; one that moves the
channel axis into a spatial position mixes channels and positions, so the field is unknown
from there on (as after a `reshape` that changes the shape).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field

from .. import codes
from ..ir import TensorType
from .arith import AXIS_NAMES, axis_index, check_divisible, expect_rank
from .base import GLOBAL, BadSample, Op, ShapeError, TorchCall, register, sample

if TYPE_CHECKING:
    import numpy as np

    from .base import OnnxGraph

AxisName = Literal["channels", "length", "depth", "height", "width"]
Axis = int | AxisName
MAX_RANK = 4  # [C, D, H, W]


def _names(rank: int) -> tuple[str, ...]:
    """The axis names of an input of this rank (without the batch axis)."""
    return ("channels", *AXIS_NAMES.get(rank - 1, ()))


def resolve_axis(value: Axis, rank: int, kind: str, arg: str) -> int:
    """A non-batch axis in [0, rank): a number (negative from the end) or an axis name."""
    if isinstance(value, str):
        names = _names(rank)
        if value not in names:
            raise ShapeError(
                codes.ARGUMENT_SHAPE,
                f"{kind} {arg}={value}: an input of rank {rank} has no {value} axis",
                notes=[f"its axes: {', '.join(f'{i} = {n}' for i, n in enumerate(names))}"],
                help="name one of its axes, or give the axis number",
                arg=arg,
            )
        return names.index(value)
    return axis_index(value, rank, kind, arg)


def _check_rank(kind: str, x: TensorType) -> None:
    if x.rank > MAX_RANK:
        raise ShapeError(
            codes.RANK,
            f"{kind} takes an input of rank at most {MAX_RANK} ([C, D, H, W]), got rank {x.rank}",
            help="use `reshape` to reduce the rank first",
        )


def _shape(dims: Sequence[int]) -> str:
    return f"[{', '.join(str(d) for d in dims)}]"


class _Reorder(Op):
    """Shared by transpose and permute: the lowerings of one full permutation `perm`."""

    family: ClassVar[str] = "axes"

    def perm(self, x: TensorType) -> tuple[int, ...]:
        raise NotImplementedError

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        perm = self.perm(x)
        return TensorType(shape=tuple(x.shape[a] for a in perm), dtype=x.dtype)

    def receptive_step(self, inputs: Sequence[TensorType]) -> Literal["global"] | None:
        """None while channels stay at 0 (spatial axes reordered: the field is unchanged);
        GLOBAL (the field unknown) when the channel axis moves into a spatial position."""
        perm = self.perm(inputs[0])
        return None if not perm or perm[0] == 0 else GLOBAL

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        return TorchCall("Permute", {"dims": self.perm(inputs[0])})

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """out[b, i_0, ..., i_{n-1}] with output axis k = input axis perm[k] (np.transpose)."""
        import numpy as np
        (x,) = inputs
        perm = self.perm(TensorType(shape=x.shape[1:]))
        return np.transpose(x, (0, *(a + 1 for a in perm)))

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX Transpose with perm = [0, *(a + 1)]: the batch axis stays first."""
        perm = self.perm(types[0])
        return g.node("Transpose", inputs, perm=[0, *(a + 1 for a in perm)])


@register
class Transpose(_Reorder):
    """Swap two non-batch axes: out = x with axes `a` and `b` exchanged.

    `a`, `b` count the non-batch axes from 0 (negative from the end) or name them
    (`channels`, `length`, `depth`, `height`, `width`).
    Shape: [C, H, W] -> [C, W, H] (a=1, b=2); [T, F] -> [F, T] (a=0, b=1).
    Params: none.
    MACs: 0 (a reordering: no multiply-accumulates).
    """

    kind: ClassVar[str] = "transpose"
    positional: ClassVar[tuple[str, ...]] = ("a", "b")
    samples = (
        sample({"a": 1, "b": 2}, (2, 3, 4), note="spatial axes swapped: the field is kept"),
        sample({"a": 0, "b": -1}, (3, 5), note="channels moved: the field is unknown"),
        sample({"a": "height", "b": "width"}, (2, 3, 4), note="named axes"),
    )
    bad_samples = (
        BadSample(call="transpose(0, 3)", inputs=((3, 4, 4),), code=codes.ARGUMENT_SHAPE),
        BadSample(call="transpose(1, 1)", inputs=((3, 4, 4),), code=codes.BAD_ARG),
        BadSample(call="transpose(length, channels)", inputs=((3, 4, 4),),
                  code=codes.ARGUMENT_SHAPE),
    )

    a: Axis
    b: Axis

    def perm(self, x: TensorType) -> tuple[int, ...]:
        _check_rank(self.kind, x)
        a = resolve_axis(self.a, x.rank, self.kind, "a")
        b = resolve_axis(self.b, x.rank, self.kind, "b")
        if a == b:
            raise ShapeError(
                codes.BAD_ARG,
                f"transpose swaps an axis with itself: a={self.a} and b={self.b} are both axis {a}",
                notes=[f"input {x}: axes {', '.join(f'{i} = {n}' for i, n in enumerate(_names(x.rank)))}"],
                help="name two different axes, or remove the layer (it would change nothing)",
                arg="b",
            )
        perm = list(range(x.rank))
        perm[a], perm[b] = b, a
        return tuple(perm)


@register
class Permute(_Reorder):
    """Reorder all non-batch axes: output axis i is input axis d_i.

    out[i_0, ..., i_{n-1}] = x[j] with j_{d_k} = i_k, so out.shape[k] = x.shape[d_k]
    (np.transpose(x, (d_0, ..., d_{n-1})) per sample). Give one axis per input axis, by
    number (from 0, negative from the end) or by name (`channels`, `height`, `width`...).
    Shape: [C, H, W] -> [H, W, C] (permute(1, 2, 0)); [C, L] -> [L, C] (permute(1, 0)).
    Params: none.
    MACs: 0 (a reordering: no multiply-accumulates).
    """

    kind: ClassVar[str] = "permute"
    positional: ClassVar[tuple[str, ...]] = ("d0", "d1", "d2", "d3")
    shown_defaults: ClassVar[dict[str, str]] = {"d1": "none", "d2": "none", "d3": "none"}
    samples = (
        sample({"d0": 1, "d1": 2, "d2": 0}, (2, 3, 4), note="channels last: the field is unknown"),
        sample({"d0": 0, "d1": 2, "d2": 1}, (2, 3, 4), note="spatial axes only: the field is kept"),
        sample({"d0": -1, "d1": 0}, (3, 5), note="a negative axis"),
        sample({"d0": "channels", "d1": "width", "d2": "depth", "d3": "height"}, (2, 3, 4, 5),
               note="named axes, rank 4"),
    )
    bad_samples = (
        BadSample(call="permute(1, 2, 3)", inputs=((3, 4, 4),), code=codes.ARGUMENT_SHAPE),
        BadSample(call="permute(1, 1, 0)", inputs=((3, 4, 4),), code=codes.BAD_ARG),
        BadSample(call="permute(1, 0)", inputs=((3, 4, 4),), code=codes.ARGUMENT_SHAPE),
    )

    d0: Axis
    d1: Axis | None = None
    d2: Axis | None = None
    d3: Axis | None = None

    def given(self) -> list[tuple[str, Axis]]:
        return [(f, v) for f in self.positional if (v := getattr(self, f)) is not None]

    def perm(self, x: TensorType) -> tuple[int, ...]:
        _check_rank(self.kind, x)
        given = self.given()
        fields = [f for f, _ in given]
        if fields != list(self.positional[: len(given)]):
            gap = next(f for f in self.positional[: len(given)] if f not in fields)
            raise ShapeError(
                codes.BAD_ARG, f"permute needs its axes in order, without a gap: `{gap}` is missing",
                help="give the axes by position: `permute(1, 2, 0)`", arg=fields[-1],
            )
        if len(given) != x.rank:
            raise ShapeError(
                codes.ARGUMENT_SHAPE,
                f"permute has {len(given)} ax{'is' if len(given) == 1 else 'es'} but the input "
                f"{x} has rank {x.rank}",
                notes=[f"a permutation names every non-batch axis once: {x.rank} axes, "
                       f"{', '.join(f'{i} = {n}' for i, n in enumerate(_names(x.rank)))}"],
                help=f"give {x.rank} axes, e.g. `permute({', '.join(str(i) for i in _rotation(x.rank))})`",
                arg=fields[-1] if len(given) > x.rank else None,
            )
        perm: list[int] = []
        for field, value in given:
            axis = resolve_axis(value, x.rank, self.kind, field)
            if axis in perm:
                first = given[perm.index(axis)]
                raise ShapeError(
                    codes.BAD_ARG,
                    f"permute names axis {axis} twice: {first[0]}={first[1]} and {field}={value}",
                    notes=[f"input {x}: a permutation of {_shape(range(x.rank))} names each axis once"],
                    arg=field,
                )
            perm.append(axis)
        return tuple(perm)


def _rotation(rank: int) -> tuple[int, ...]:
    """An example permutation: channels last."""
    return (*range(1, rank), 0)


@register
class ChannelShuffle(Op):
    """ShuffleNet's channel shuffle: view the C channels as [g, C/g], transpose, flatten.

    out[c] = x[(c mod g)·(C/g) + c div g], i.e. out channel i·g + j = in channel j·(C/g) + i
    for i < C/g, j < g (torch nn.ChannelShuffle). C must be divisible by `groups`.
    Shape: [C, H, W] -> [C, H, W] (any [C, *] of rank 2 to 4).
    Params: none.
    MACs: 0 (a reordering: no multiply-accumulates). The receptive field is unchanged.
    """

    kind: ClassVar[str] = "channel_shuffle"
    family: ClassVar[str] = "axes"
    positional: ClassVar[tuple[str, ...]] = ("groups",)
    samples = (
        sample({"groups": 2}, (6, 3, 3)),
        sample({"groups": 3}, (6, 4), note="1-d"),
        sample({"groups": 1}, (4, 2, 2), note="one group: a no-op"),
    )
    bad_samples = (
        BadSample(call="channel_shuffle(4)", inputs=((6, 4, 4),), code=codes.DIVISIBLE),
        BadSample(call="channel_shuffle(0)", inputs=((6, 4, 4),), code=codes.BAD_ARG),
        BadSample(call="channel_shuffle(2)", inputs=((6,),), code=codes.RANK),
    )

    groups: int

    def _check(self, x: TensorType) -> None:
        expect_rank(x.rank, (2, 3, 4), self.kind, "[C, L], [C, H, W] or [C, D, H, W]")
        if self.groups < 1:
            raise ShapeError(codes.BAD_ARG, f"`groups` must be positive, got {self.groups}",
                             arg="groups")
        check_divisible(x.shape[0], self.groups, "channels", "groups", arg="groups")

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        self._check(x)
        return x

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        self._check(inputs[0])
        return TorchCall("nn.ChannelShuffle", {"groups": self.groups})

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """x.reshape(B, g, C/g, *S), swap axes 1 and 2, reshape back to [B, C, *S]."""
        (x,) = inputs
        b, c, *rest = x.shape
        g = self.groups
        return x.reshape(b, g, c // g, *rest).swapaxes(1, 2).reshape(x.shape)

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX Reshape [0, g, C/g, *S] -> Transpose (perm swaps axes 1 and 2) -> Reshape back."""
        (x,) = types
        self._check(x)
        c, *rest = x.shape
        grouped = g.reshape(inputs[0], [0, self.groups, c // self.groups, *rest])
        perm = [0, 2, 1, *range(3, x.rank + 2)]
        swapped = g.node("Transpose", [grouped], perm=perm)
        return g.reshape(swapped, [0, *x.shape])


@register
class Slice(Op):
    """A contiguous part of one axis: out = x[..., start:stop, ...] along `axis`.

    `start` and `stop` count from 0 (stop exclusive, as Python slices; negative from the
    end); `axis` as for transpose (a number or a name). `a, b = x -> split(2)` and `chunk(n)`
    elaborate to one slice per part.

    Shape: the axis becomes stop - start; the others are kept.
    Params: none.
    MACs: 0.
    """

    kind: ClassVar[str] = "slice"
    family: ClassVar[str] = "axes"
    positional: ClassVar[tuple[str, ...]] = ("start", "stop")
    samples = (
        sample({"start": 1, "stop": 3}, (4, 3, 3), note="channels 1 and 2"),
        sample({"start": 0, "stop": 2, "axis": "width"}, (2, 3, 5), note="a named axis"),
        sample({"start": -3, "stop": -1, "axis": -1}, (2, 6), note="negative bounds"),
    )
    bad_samples = (
        BadSample(call="slice(2, 2)", inputs=((4, 3, 3),), code=codes.ARGUMENT_SHAPE),
        BadSample(call="slice(0, 9)", inputs=((4, 3, 3),), code=codes.ARGUMENT_SHAPE),
        BadSample(call="slice(0, 1, axis=height)", inputs=((4, 3),), code=codes.ARGUMENT_SHAPE),
    )

    start: int
    stop: int
    axis: Axis = 0

    def bounds(self, x: TensorType) -> tuple[int, int, int]:
        """(axis, start, stop) with the axis resolved and both bounds in [0, size]."""
        _check_rank(self.kind, x)
        axis = resolve_axis(self.axis, x.rank, self.kind, "axis")
        size = x.shape[axis]
        start = self.start + size if self.start < 0 else self.start
        stop = self.stop + size if self.stop < 0 else self.stop
        if not 0 <= start < stop <= size:
            raise ShapeError(
                codes.ARGUMENT_SHAPE,
                f"slice({self.start}, {self.stop}) is empty or outside an axis of size {size}",
                notes=[f"input {x}; axis {axis} has positions 0 to {size - 1}; "
                       f"the slice takes {start} up to {stop} (exclusive)"],
                help=f"give 0 <= start < stop <= {size}",
                arg="stop" if 0 <= start < size else "start",
            )
        return axis, start, stop

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        axis, start, stop = self.bounds(x)
        return TensorType(shape=(*x.shape[:axis], stop - start, *x.shape[axis + 1:]), dtype=x.dtype)

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        axis, start, stop = self.bounds(inputs[0])
        return TorchCall("Narrow", {"dim": axis + 1, "start": start, "length": stop - start})

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        (x,) = inputs
        axis, start, stop = self.bounds(TensorType(shape=x.shape[1:]))
        index = [slice(None)] * x.ndim
        index[axis + 1] = slice(start, stop)
        return x[tuple(index)].copy()

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX Slice with starts, ends and axes (the batch axis counted)."""
        axis, start, stop = self.bounds(types[0])
        return g.node("Slice", [inputs[0], g.ints([start]), g.ints([stop]), g.ints([axis + 1])])


class _Parts(Op):
    """A layer with several outputs: `a, b = x -> split(2)`. Not a node of the graph: the
    elaborator binds its arguments like an op's and makes one `slice` per part."""

    family: ClassVar[str] = "axes"
    axis: Axis = 0

    def pieces(self, x: TensorType) -> tuple[int, list[tuple[int, int]]]:
        """The resolved axis and each part's (start, stop)."""
        raise NotImplementedError


MAX_PARTS = 65_536  # each part is bound to a name, and a statement has far fewer


def _check_parts(kind: str, count: int, arg: str) -> None:
    """Refuse, before listing them, more parts than any statement can bind."""
    if count > MAX_PARTS:
        raise ShapeError(codes.LIMIT, f"`{kind}` would make {count:,} parts",
                         notes=[f"limit: {MAX_PARTS:,} parts"], help="each part needs a name: `a, b = x -> split(2)`",
                         arg=arg)


class Split(_Parts):
    """`split(k)`: k equal parts of one axis (channels by default); `split([16, 48])`: parts
    of those sizes, which must add up to the axis.

    Shape: [C, *] -> k tensors [C/k, *] (or [s_i, *] for sizes s_i).
    """

    kind: ClassVar[str] = "split"
    positional: ClassVar[tuple[str, ...]] = ("parts",)

    parts: Annotated[int, Field(gt=0)] | tuple[Annotated[int, Field(gt=0)], ...]

    def pieces(self, x: TensorType) -> tuple[int, list[tuple[int, int]]]:
        _check_rank(self.kind, x)
        axis = resolve_axis(self.axis, x.rank, self.kind, "axis")
        size = x.shape[axis]
        if isinstance(self.parts, int):
            _check_parts(self.kind, self.parts, "parts")
            check_divisible(size, self.parts, f"axis {axis} of {x}", "the number of parts", arg="parts")
            sizes = [size // self.parts] * self.parts
        else:
            sizes = list(self.parts)
            if sum(sizes) != size:
                raise ShapeError(
                    codes.ARGUMENT_SHAPE,
                    f"split sizes add up to {sum(sizes)}, but axis {axis} of {x} has {size}",
                    notes=[f"{' + '.join(map(str, sizes))} = {sum(sizes)}"],
                    help=f"give sizes that add up to {size}"
                    + (f", e.g. [{', '.join(map(str, sizes[:-1]))}, {size - sum(sizes[:-1])}]"
                       if len(sizes) > 1 and size > sum(sizes[:-1]) else ""),
                    arg="parts",
                )
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return axis, [(a, a + s) for a, s in zip(starts, sizes, strict=True)]


class Chunk(_Parts):
    """`chunk(n)`: torch.chunk's parts of one axis: ⌈N/n⌉ positions each, the last part
    smaller, so there may be fewer than n parts (⌈N/⌈N/n⌉⌉).

    Shape: [N, *] -> parts [⌈N/n⌉, *], ..., [N - (k-1)·⌈N/n⌉, *].
    """

    kind: ClassVar[str] = "chunk"
    positional: ClassVar[tuple[str, ...]] = ("n",)

    n: Annotated[int, Field(gt=0)]

    def pieces(self, x: TensorType) -> tuple[int, list[tuple[int, int]]]:
        _check_rank(self.kind, x)
        axis = resolve_axis(self.axis, x.rank, self.kind, "axis")
        size = x.shape[axis]
        each = -(-size // self.n)
        _check_parts(self.kind, -(-size // each), "n")
        return axis, [(a, min(a + each, size)) for a in range(0, size, each)]


MULTI_OUTPUT: dict[str, type[_Parts]] = {"split": Split, "chunk": Chunk}
