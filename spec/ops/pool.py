"""Pooling: maxpool, avgpool (1-d or 2-d by input rank), global and adaptive pools."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .. import codes
from ..ir import TensorType
from .arith import AXIS_NAMES, IntOrTuple, expect_rank, per_axis, window_output
from .base import (
    GLOBAL,
    BadSample,
    Op,
    Sample,
    ShapeError,
    TorchCall,
    WindowStep,
    register,
    sample,
)
from .conv import sliding_windows

if TYPE_CHECKING:
    import numpy as np

    from .base import OnnxGraph

Rounding = Literal["exact", "floor", "ceil"]
_LAYOUT = {2: "[C, L]", 3: "[C, H, W]"}


def _spatial(kind: str, x: TensorType) -> int:
    expect_rank(x.rank, (2, 3), kind, " or ".join(_LAYOUT.values()))
    return x.rank - 1


def _pool_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil: bool) -> int:
    """PyTorch's pooled length (numpy reference helper): floor((N + 2P - F) / S) + 1, or with
    ceil the ceiling, less one when the last window would start past the input and the left
    padding ((out - 1)·S >= N + P)."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    if not ceil:
        return span // stride + 1
    out = -(-span // stride) + 1
    return out - 1 if (out - 1) * stride >= size + pad else out


class _Pool(Op):
    """Shared by maxpool and avgpool: per-axis window arguments, PyTorch's padding rule."""

    family: ClassVar[str] = "pool"
    positional: ClassVar[tuple[str, ...]] = ("kernel",)
    shown_defaults: ClassVar[dict[str, str]] = {"stride": "kernel"}

    kernel: IntOrTuple
    stride: IntOrTuple | None = None  # None: the kernel (non-overlapping windows)
    padding: IntOrTuple = 0
    rounding: Rounding = "exact"

    def _dilation(self) -> IntOrTuple:
        return 1

    def _axes(self, x: TensorType):
        n = _spatial(self.kind, x)
        kernel = per_axis(self.kernel, n, "kernel")
        stride = kernel if self.stride is None else per_axis(self.stride, n, "stride")
        dilation = per_axis(self._dilation(), n, "dilation")
        padding = per_axis(self.padding, n, "padding")
        for arg, values in (("kernel", kernel), ("stride", stride), ("dilation", dilation)):
            if min(values) < 1:
                raise ShapeError(codes.BAD_ARG, f"`{arg}` must be positive, got {values}", arg=arg)
        if min(padding) < 0:
            raise ShapeError(
                codes.BAD_ARG, f"`padding` must not be negative, got {padding}", arg="padding"
            )
        for p, k in zip(padding, kernel, strict=True):
            if p > k // 2:
                raise ShapeError(
                    codes.BAD_ARG,
                    f"{self.kind} padding ({p}) is more than half the kernel ({k})",
                    notes=[f"P <= k / 2: {p} > {k} / 2 = {k / 2:g}"],
                    help=f"use padding of at most {k // 2}, or pad the input with `pad` first",
                    arg="padding",
                )
        return n, kernel, stride, dilation, padding

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        n, kernel, stride, dilation, padding = self._axes(x)
        sizes = tuple(
            window_output(
                size, k, s, (p, p), dilation=d, rounding=self.rounding, what=self.kind, axis=axis
            )
            for size, k, s, p, d, axis in zip(
                x.shape[1:], kernel, stride, padding, dilation, AXIS_NAMES[n], strict=True
            )
        )
        return TensorType(shape=(x.shape[0], *sizes))

    def receptive_step(self, inputs: Sequence[TensorType]) -> WindowStep:
        _, kernel, stride, dilation, _ = self._axes(inputs[0])
        window = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True))
        return WindowStep(window=window, stride=stride)

    def _reference_windows(self, x: np.ndarray, fill: float):
        """The windows [B, C, *out, *k] of the reference (``fill`` in the padding and past it)
        and, per axis, (N, k, S, P, out)."""
        _, kernel, stride, dilation, padding = self._axes(TensorType(shape=x.shape[1:]))
        axes = [
            (n, k, s, p, _pool_size(n, k, s, p, d, self.rounding == "ceil"))
            for n, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation, strict=True)
        ]
        # right padding: P, or up to the end of the last window when rounding up overhangs it
        pads = [
            (p, max(p, (o - 1) * s + d * (k - 1) + 1 - n - p))
            for (n, k, s, p, o), d in zip(axes, dilation, strict=True)
        ]
        windows = sliding_windows(x, kernel, stride, dilation, pads, fill=fill)
        return windows[(slice(None), slice(None), *(slice(o) for *_, o in axes))], axes

    def _torch_kwargs(self, x: TensorType) -> dict[str, Any]:
        """kernel_size, stride (the kernel when None), padding; exact and floor: ceil_mode off."""
        _, kernel, stride, _, padding = self._axes(x)
        return {"kernel_size": kernel, "stride": stride, "padding": padding}

    def onnx_pads(self, x: TensorType) -> tuple[list[int], list[int]]:
        """(begin, end) pads per axis giving the IR's output size with ONNX's floor rule.

        ONNX's ceil_mode is not used: onnx's shape inference keeps a last window that starts
        in the right padding, which torch (and onnxruntime) drop. `rounding=ceil` becomes
        extra end padding instead: end = (out - 1)·S + F - N - P, at least P.
        """
        _, kernel, stride, dilation, padding = self._axes(x)
        out = self.infer([x]).shape[1:]
        ends = [
            max(p, (o - 1) * s + d * (k - 1) + 1 - n - p)
            for n, o, k, s, d, p in zip(x.shape[1:], out, kernel, stride, dilation, padding,
                                        strict=True)
        ]
        return list(padding), ends


@register
class MaxPool(_Pool):
    """Max pooling over 1 or 2 spatial axes.

    out[c, i, j] = max_{u,v} x[c, S·i + d·u - P, S·j + d·v - P]

    Shape: [C, H, W] -> [C, H', W'] with H' = (H + 2P - F) / S + 1, F = d(k - 1) + 1,
    S = kernel unless given, P <= k / 2; `rounding` floor or ceil (PyTorch's ceil_mode: the
    last window must start inside the input) when S does not divide (1-d: [C, L] -> [C, L']).
    Params: none.
    MACs: 0 (comparisons are not multiply-accumulates).
    """

    kind: ClassVar[str] = "maxpool"

    dilation: IntOrTuple = 1

    samples: ClassVar[tuple[Sample, ...]] = (
        sample({"kernel": 2}, (3, 8, 8)),
        sample({"kernel": 3, "stride": 2, "padding": 1, "rounding": "ceil"}, (2, 10, 10)),
        sample({"kernel": 2, "padding": 1, "rounding": "ceil"}, (2, 5),
               note="ceil: the last window would start in the right padding and is dropped"),
        sample({"kernel": 3, "stride": 2, "rounding": "floor"}, (2, 10)),
        sample({"kernel": (3, 2), "stride": 1, "dilation": 2}, (2, 9, 9)),
        sample({"kernel": 2, "stride": 4, "dilation": 4, "rounding": "ceil"}, (2, 6),
               note="ONNX: the ceil overhang is a kernel or more, an explicit -inf Pad"),
    )
    bad_samples: ClassVar[tuple[BadSample, ...]] = (
        BadSample(call="maxpool(3)", inputs=((2, 8, 8),), code="E2101"),
        BadSample(call="maxpool(3, padding=2)", inputs=((2, 8, 8),), code="E1007"),
        BadSample(call="maxpool(9)", inputs=((2, 8),), code="E2102"),
    )

    def _dilation(self) -> IntOrTuple:
        return self.dilation

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        (x,) = inputs
        _, _, _, dilation, _ = self._axes(x)
        return TorchCall(f"nn.MaxPool{x.rank - 1}d", {
            **self._torch_kwargs(x), "dilation": dilation, "ceil_mode": self.rounding == "ceil",
        })

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX MaxPool (padding never wins a max); a pad of a kernel or more (dilated windows
        with rounding=ceil) goes into an explicit -inf Pad first, as onnxruntime wants pads
        smaller than the kernel."""
        (x,) = types
        _, kernel, stride, dilation, _ = self._axes(x)
        begins, ends = self.onnx_pads(x)
        source = inputs[0]
        if any(p >= k for p, k in zip(begins + ends, list(kernel) * 2, strict=True)):
            source = g.node("Pad", [source, g.ints([0, 0, *begins, 0, 0, *ends]),
                                    g.constant(float("-inf"), "float32")])
            begins, ends = [0] * len(begins), [0] * len(ends)
        return g.node("MaxPool", [source], kernel_shape=list(kernel), strides=list(stride),
                      dilations=list(dilation), pads=begins + ends)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """out[b, c, i, j] = max_{u,v} x̃[b, c, S·i + d·u, S·j + d·v], x̃ padded with -inf
        (P before; after, P or as far as a ceil-rounded last window reaches)."""
        import numpy as np
        windows, _ = self._reference_windows(inputs[0], -np.inf)
        n = inputs[0].ndim - 2
        return windows.max(axis=tuple(range(-n, 0)))


@register
class AvgPool(_Pool):
    """Average pooling over 1 or 2 spatial axes: out[c, i, j] = mean of the k_h·k_w window.

    Shape: [C, H, W] -> [C, H', W'] with H' = (H + 2P - F) / S + 1, F = k, S = kernel unless
    given, P <= k / 2; `rounding` as for maxpool. count_include_pad: whether padded zeros
    count in the divisor (1-d: [C, L] -> [C, L']).
    Params: none.
    MACs: k_h · k_w · C · H' · W' (one add per window element; the division is not counted).
    """

    kind: ClassVar[str] = "avgpool"

    count_include_pad: bool = True

    samples: ClassVar[tuple[Sample, ...]] = (
        sample({"kernel": 2}, (3, 8, 8)),
        sample({"kernel": 3, "stride": 2, "padding": 1, "rounding": "ceil",
                "count_include_pad": False}, (2, 10, 10)),
        sample({"kernel": 2, "padding": 1, "rounding": "ceil"}, (2, 5),
               note="ceil: the last window would start in the right padding and is dropped"),
        sample({"kernel": 3, "stride": 2, "rounding": "floor"}, (2, 10)),
        sample({"kernel": 3, "stride": 2, "padding": 1, "rounding": "ceil"}, (2, 10),
               note="count_include_pad with a ceil overhang past the padding: ONNX pads "
                    "explicitly and leaves the overhang out of the divisor"),
    )
    bad_samples: ClassVar[tuple[BadSample, ...]] = (
        BadSample(call="avgpool(2, padding=2)", inputs=((2, 8, 8),), code="E1007"),
        BadSample(call="avgpool(3)", inputs=((2, 8),), code="E2101"),
        BadSample(call="avgpool(2)", inputs=((8,),), code="E2103"),
    )

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        _, kernel, *_ = self._axes(inputs[0])
        return math.prod(kernel) * output.numel

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        (x,) = inputs
        return TorchCall(f"nn.AvgPool{x.rank - 1}d", {
            **self._torch_kwargs(x), "ceil_mode": self.rounding == "ceil",
            "count_include_pad": self.count_include_pad,
        })

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX AveragePool. torch's divisor with count_include_pad counts the declared padding
        but not a window's overhang past it (rounding=ceil): then the declared padding becomes
        explicit zeros and the overhang is ONNX padding left out of the count."""
        (x,) = types
        _, kernel, stride, _, _ = self._axes(x)
        begins, ends = self.onnx_pads(x)
        source, include = inputs[0], self.count_include_pad
        if include and ends != begins:
            source = g.node("Pad", [source, g.ints([0, 0, *begins, 0, 0, *begins])])
            begins, ends = [0] * len(begins), [e - b for b, e in zip(begins, ends, strict=True)]
            include = False
        return g.node("AveragePool", [source], kernel_shape=list(kernel), strides=list(stride),
                      pads=begins + ends, count_include_pad=int(include))

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """out[b, c, i, j] = Σ_{u,v} x̃[b, c, S·i + u, S·j + v] / (n_i · n_j), x̃ zero-padded.
        Window i spans [s, e) with s = S·i - P, e = min(s + k, N + P): n_i = e - s with
        count_include_pad (the declared padding counts, a ceil overhang past it does not),
        else min(e, N) - max(s, 0), the input positions only."""
        import numpy as np
        (x,) = inputs
        windows, axes = self._reference_windows(x, 0.0)
        n = len(axes)
        divisor = np.ones((1,) * n)
        for axis, (size, k, s, p, o) in enumerate(axes):
            start = np.arange(o) * s - p
            end = np.minimum(start + k, size + p)
            if self.count_include_pad:
                count = end - start
            else:
                count = np.minimum(end, size) - np.maximum(start, 0)
            divisor = divisor * count.reshape([o if a == axis else 1 for a in range(n)])
        return windows.sum(axis=tuple(range(-n, 0))) / divisor


class _GlobalPool(Op):
    """Shared by the global pools: one value per channel, spatial axes kept with size 1."""

    family: ClassVar[str] = "pool"
    torch_cls: ClassVar[str] = ""  # nn.<torch_cls>{1,2}d(1)
    onnx_op: ClassVar[str] = ""  # ONNX Global<...>Pool: spatial axes kept with size 1

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        n = _spatial(self.kind, x)
        return TensorType(shape=(x.shape[0], *(1,) * n))

    def receptive_step(self, inputs: Sequence[TensorType]) -> Literal["global"]:
        return GLOBAL

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        n = _spatial(self.kind, inputs[0])
        return TorchCall(f"nn.{self.torch_cls}{n}d", {"output_size": 1})

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        _spatial(self.kind, types[0])
        return g.node(self.onnx_op, inputs)


@register
class GlobalAvgPool(_GlobalPool):
    """Mean over all spatial positions of each channel: out[c] = (1 / H·W) Σ_{i,j} x[c, i, j].

    Shape: [C, H, W] -> [C, 1, 1] (1-d: [C, L] -> [C, 1]).
    Params: none.
    MACs: C · H · W, the input size (one add per element).
    """

    kind: ClassVar[str] = "global_avgpool"
    torch_cls: ClassVar[str] = "AdaptiveAvgPool"
    onnx_op: ClassVar[str] = "GlobalAveragePool"
    samples: ClassVar[tuple[Sample, ...]] = (sample({}, (3, 5, 5)), sample({}, (3, 7)))
    bad_samples: ClassVar[tuple[BadSample, ...]] = (
        BadSample(call="global_avgpool", inputs=((8,),), code="E2103"),
    )

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """out[b, c, 0, 0] = (1 / H·W) Σ_{i,j} x[b, c, i, j]."""
        (x,) = inputs
        return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        return inputs[0].numel


@register
class GlobalMaxPool(_GlobalPool):
    """Maximum over all spatial positions of each channel: out[c] = max_{i,j} x[c, i, j].

    Shape: [C, H, W] -> [C, 1, 1] (1-d: [C, L] -> [C, 1]).
    Params: none.
    MACs: 0 (comparisons are not multiply-accumulates).
    """

    kind: ClassVar[str] = "global_maxpool"
    torch_cls: ClassVar[str] = "AdaptiveMaxPool"
    onnx_op: ClassVar[str] = "GlobalMaxPool"
    samples: ClassVar[tuple[Sample, ...]] = (sample({}, (3, 5, 5)), sample({}, (3, 7)))
    bad_samples: ClassVar[tuple[BadSample, ...]] = (
        BadSample(call="global_maxpool", inputs=((2, 3, 4, 5),), code="E2103"),
    )

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """out[b, c, 0, 0] = max_{i,j} x[b, c, i, j]."""
        (x,) = inputs
        return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)


def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive windows: [floor(i·N / out), ceil((i + 1)·N / out)) for each i."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _widest_window(size: int, out: int) -> int:
    """The longest of :func:`adaptive_windows` without listing them (the output may be long):
    window i is ⌈x + N/out⌉ - ⌊x⌋ for x = i·N/out, largest where x's fraction is largest,
    (out - gcd(N, out)) / out, so it is ⌈(N + out - gcd(N, out)) / out⌉."""
    return -(-(size + out - math.gcd(size, out)) // out)


@register
class AdaptiveAvgPool(Op):
    """Average pooling to a fixed output size, windows as torch's AdaptiveAvgPool.

    Output i averages input positions [floor(i·N / n), ceil((i + 1)·N / n)) along each axis.
    Shape: [C, H, W] -> [C, h, w] for size (h, w) (1-d: [C, L] -> [C, l]).
    Params: none.
    MACs: C · Π_axes Σ_i (window length i) (one add per window element; for size 1 the input
    size, as global_avgpool).
    """

    kind: ClassVar[str] = "adaptive_avgpool"
    family: ClassVar[str] = "pool"
    positional: ClassVar[tuple[str, ...]] = ("size",)

    size: IntOrTuple

    samples: ClassVar[tuple[Sample, ...]] = (
        sample({"size": 1}, (3, 5, 5), note="ONNX: GlobalAveragePool"),
        sample({"size": (2, 3)}, (3, 7, 7), note="ONNX: uneven windows, a MatMul per axis"),
        sample({"size": 4}, (3, 10), note="ONNX: uneven windows, one MatMul"),
        sample({"size": 2}, (3, 8, 8), note="ONNX: the sizes divide, an AveragePool"),
        sample({"size": (5, 5)}, (3, 5, 5), note="ONNX: the output size is the input's, identity"),
    )
    bad_samples: ClassVar[tuple[BadSample, ...]] = (
        BadSample(call="adaptive_avgpool(0)", inputs=((3, 8, 8),), code="E1007"),
        BadSample(call="adaptive_avgpool((2, 2))", inputs=((3, 8),), code="E2110"),
    )

    def _sizes(self, x: TensorType) -> tuple[int, ...]:
        sizes = per_axis(self.size, _spatial(self.kind, x), "size")
        if min(sizes) < 1:
            raise ShapeError(codes.BAD_ARG, f"`size` must be positive, got {sizes}", arg="size")
        return sizes

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        return TensorType(shape=(x.shape[0], *self._sizes(x)))

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        (x,) = inputs
        return TorchCall(f"nn.AdaptiveAvgPool{x.rank - 1}d", {"output_size": self._sizes(x)})

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """The identity, GlobalAveragePool, an AveragePool when every size divides (windows
        N / n, stride N / n), else one MatMul per axis with torch's window averages (a
        rectangle's mean is the mean over rows of the means over columns)."""
        import numpy as np

        (x,) = types
        sizes, spatial = self._sizes(x), x.shape[1:]
        if sizes == spatial:
            return inputs[0]
        if max(sizes) == 1:
            return g.node("GlobalAveragePool", inputs)
        if all(n % out == 0 for n, out in zip(spatial, sizes, strict=True)):
            window = [n // out for n, out in zip(spatial, sizes, strict=True)]
            return g.node("AveragePool", inputs, kernel_shape=window, strides=window)

        def averages(n: int, out: int) -> np.ndarray:  # [out, n]: row i averages window i
            matrix = np.zeros((out, n), np.float32)
            for i, (start, end) in enumerate(adaptive_windows(n, out)):
                matrix[i, start:end] = 1.0 / (end - start)
            return matrix

        y = g.node("MatMul", [inputs[0], g.constant(averages(spatial[-1], sizes[-1]).T)])
        if len(sizes) == 2:  # rows: [h, H] @ [B, C, H, w]
            y = g.node("MatMul", [g.constant(averages(spatial[0], sizes[0])), y])
        return y

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        (x,) = inputs
        # Σ window lengths = N + out - gcd(N, out), in closed form: the output may be long
        per_axis_adds = (n + out - math.gcd(n, out) for n, out in zip(x.shape[1:], self._sizes(x), strict=True))
        return x.shape[0] * math.prod(per_axis_adds)

    def receptive_step(self, inputs: Sequence[TensorType]) -> WindowStep | Literal["global"] | None:
        (x,) = inputs
        sizes = self._sizes(x)
        if sizes == x.shape[1:]:
            return None
        if max(sizes) == 1:
            return GLOBAL
        window = tuple(_widest_window(n, out) for n, out in zip(x.shape[1:], sizes, strict=True))
        stride = tuple(n / out for n, out in zip(x.shape[1:], sizes, strict=True))
        return WindowStep(window=window, stride=stride)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """out[b, c, i, j] = mean of x[b, c, h0:h1, w0:w1] with, per axis of N inputs and n
        outputs, start = floor(i·N / n) and end = ceil((i + 1)·N / n)."""
        import numpy as np
        (x,) = inputs
        sizes = self._sizes(TensorType(shape=x.shape[1:]))
        out = np.empty((*x.shape[:2], *sizes))
        for index in itertools.product(*(range(o) for o in sizes)):
            window = tuple(
                slice(i * n // o, -(-(i + 1) * n // o))
                for i, n, o in zip(index, x.shape[2:], sizes, strict=True)
            )
            out[(..., *index)] = x[(..., *window)].mean(axis=tuple(range(2, x.ndim)))
        return out
