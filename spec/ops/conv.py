"""Convolutions: conv (1-d or 2-d by input rank), conv1d, conv2d, separable_conv, upconv."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from .. import codes
from ..ir import TensorType
from .arith import (
    AXIS_NAMES,
    IntOrTuple,
    check_divisible,
    conv_transpose_output,
    expect_rank,
    per_axis,
    same_padding,
    window_output,
)
from .base import BadSample, Op, Sample, ShapeError, TorchCall, WindowStep, register, sample

if TYPE_CHECKING:
    import numpy as np

    from .base import OnnxGraph

Positive = Field(gt=0)
PositiveOrTuple = IntOrTuple
Padding = int | tuple[int, ...] | Literal["same", "valid"]
Rounding = Literal["exact", "floor", "ceil"]


def sliding_windows(x: np.ndarray, kernel: Sequence[int], stride: Sequence[int],
                    dilation: Sequence[int], pads: Sequence[tuple[int, int]],
                    fill: float = 0.0) -> np.ndarray:
    """The windows of ``x`` [B, C, *N] as a view [B, C, *out, *k] (numpy reference helper).

    window[b, c, i, u] = x̃[b, c, S·i + d·u], x̃ the input padded with ``fill`` by ``pads``
    (before, after) per spatial axis; out = floor((N + P_before + P_after - F) / S) + 1 with
    F = d(k - 1) + 1: every window that fits in the padded input.
    """
    import numpy as np
    n = len(kernel)
    padded = np.pad(x, ((0, 0), (0, 0), *pads), constant_values=fill)
    spans = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True))
    view = np.lib.stride_tricks.sliding_window_view(padded, spans, axis=tuple(range(2, 2 + n)))
    return view[(..., *(slice(None, None, s) for s in stride),
                 *(slice(None, None, d) for d in dilation))]


def conv_reference(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                   stride: Sequence[int], dilation: Sequence[int],
                   pads: Sequence[tuple[int, int]], groups: int) -> np.ndarray:
    """Grouped cross-correlation in numpy: x [B, C, *N], weight [K, C / g, *k], bias [K].

    out[b, k, i] = bias[k] + Σ_{c < C/g} Σ_u W[k, c, u] · x̃[b, g(k)·C/g + c, S·i + d·u] with
    g(k) = k // (K / g) the group of output channel k and x̃ the zero-padded input.
    """
    import numpy as np
    kernel = weight.shape[2:]
    n = len(kernel)
    windows = sliding_windows(x, kernel, stride, dilation, pads)  # [B, C, *out, *k]
    batch, channels = x.shape[:2]
    windows = windows.reshape(batch, groups, channels // groups, *windows.shape[2:])
    w = weight.reshape(groups, weight.shape[0] // groups, *weight.shape[1:])
    o, k = "hw"[:n], "uv"[:n]
    out = np.einsum(f"bgc{o}{k},gmc{k}->bgm{o}", windows, w, optimize=True)  # BLAS
    out = out.reshape(batch, weight.shape[0], *out.shape[3:])
    if bias is not None:
        out = out + bias.reshape(-1, *(1,) * n)
    return out


class _Windowed(Op):
    """Shared by convolutions: spatial axes from the input rank, per-axis arguments."""

    spatial_rank: ClassVar[int | None] = None  # None: 1 or 2, read from the input

    def _spatial(self, x: TensorType) -> int:
        ranks = (self.spatial_rank + 1,) if self.spatial_rank else (2, 3)
        layout = {2: "[C, L]", 3: "[C, H, W]"}
        expect_rank(x.rank, ranks, self.kind, " or ".join(layout[r] for r in ranks))
        return x.rank - 1


@register
class Conv(_Windowed):
    """Convolution over 1 or 2 spatial axes (cross-correlation, as every framework computes).

    out[k, i, j] = b[k] + Σ_c Σ_u Σ_v W[k, c, u, v] · x[c, S·i + d·u - P, S·j + d·v - P]

    Shape: [C_in, H, W] -> [K, H', W'] with H' = (H + 2P - F) / S + 1, F = d(k - 1) + 1
    (1-d: [C_in, L] -> [K, L']).
    Params: weight [K, C_in / groups, k_h, k_w], bias [K]: (F·F·C_in/groups + 1)·K.
    MACs: K · (C_in / groups) · k_h · k_w · H' · W'.
    """

    kind: ClassVar[str] = "conv"
    family: ClassVar[str] = "conv"
    positional: ClassVar[tuple[str, ...]] = ("channels", "kernel")

    channels: int = Field(gt=0)
    kernel: IntOrTuple
    stride: IntOrTuple = 1
    padding: Padding = 0
    dilation: IntOrTuple = 1
    groups: int = Field(default=1, gt=0)
    bias: bool = True
    rounding: Rounding = "exact"

    samples: ClassVar[tuple[Sample, ...]] = (
        sample({"channels": 4, "kernel": 3}, (3, 8, 8)),
        sample({"channels": 4, "kernel": 3, "padding": "same"}, (2, 10),
               note="odd kernel: `same` is symmetric, explicit torch padding"),
        sample({"channels": 4, "kernel": 4, "padding": "same"}, (3, 8, 8),
               note="even kernel: asymmetric `same` (torch padding='same', ONNX begin != end)"),
        sample({"channels": 6, "kernel": 3, "stride": 2, "dilation": 2, "groups": 3,
                "bias": False, "rounding": "floor"}, (3, 10, 10)),
    )
    bad_samples: ClassVar[tuple[BadSample, ...]] = (
        BadSample(call="conv(8, 5, stride=2)", inputs=((3, 8, 8),), code="E2101"),
        BadSample(call="conv(8, 3, groups=2)", inputs=((3, 8, 8),), code="E2104"),
        BadSample(call="conv(4, 9)", inputs=((3, 8, 8),), code="E2102"),
    )

    def _axes(self, x: TensorType):
        n = self._spatial(x)
        kernel = per_axis(self.kernel, n, "kernel")
        stride = per_axis(self.stride, n, "stride")
        dilation = per_axis(self.dilation, n, "dilation")
        for arg, values in (("kernel", kernel), ("stride", stride), ("dilation", dilation)):
            if min(values) < 1:
                raise ShapeError(codes.BAD_ARG, f"`{arg}` must be positive, got {values}", arg=arg)
        if self.padding == "valid":
            pads = ((0, 0),) * n
        elif self.padding == "same":
            if max(stride) != 1:
                size, k, s = x.shape[1], kernel[0], stride[0]
                half = dilation[0] * (k - 1) // 2
                out = (size + 2 * half - dilation[0] * (k - 1) - 1) / s + 1
                exact = float(out).is_integer()
                raise ShapeError(
                    codes.BAD_ARG,
                    f"padding=same needs stride 1, got stride={self.stride}",
                    notes=[f"with stride {s} the output cannot keep the input size {size}; "
                           f"it is about N / S = {size} / {s} = {size / s:g}"],
                    help=f"give the padding explicitly: padding={half} gives {int(out)}"
                    + ("" if exact else " with `rounding floor`"),
                    arg="padding",
                )
            pads = tuple(same_padding(k, d) for k, d in zip(kernel, dilation))
        else:
            pads = tuple((p, p) for p in per_axis(self.padding, n, "padding"))
            if min(p for p, _ in pads) < 0:
                raise ShapeError(codes.BAD_ARG, "`padding` must not be negative", arg="padding")
        return n, kernel, stride, dilation, pads

    def padding_pairs(self, x: TensorType) -> tuple[tuple[int, int], ...]:
        """(before, after) padding per spatial axis, with `same` and `valid` resolved."""
        return self._axes(x)[4]

    def _in_channels(self, x: TensorType) -> int:
        c = x.shape[0]
        check_divisible(c, self.groups, "input channels", "groups", arg="groups")
        check_divisible(self.channels, self.groups, "output channels", "groups", arg="groups")
        return c

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        n, kernel, stride, dilation, pads = self._axes(x)
        self._in_channels(x)
        if self.rounding == "ceil":
            raise ShapeError(
                codes.BAD_ARG,
                f"{self.kind} supports `rounding` exact or floor, not ceil",
                help="pad the input instead, or use floor",
                arg="rounding",
            )
        sizes = tuple(
            window_output(
                size, k, s, p, dilation=d, rounding=self.rounding, what=self.kind, axis=axis
            )
            for size, k, s, p, d, axis in zip(x.shape[1:], kernel, stride, pads, dilation, AXIS_NAMES[n])
        )
        return TensorType(shape=(self.channels, *sizes))

    def param_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        (x,) = inputs
        n, kernel, *_ = self._axes(x)
        shapes = {"weight": (self.channels, x.shape[0] // self.groups, *kernel)}
        if self.bias:
            shapes["bias"] = (self.channels,)
        return shapes

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        (x,) = inputs
        _, kernel, *_ = self._axes(x)
        return self.channels * (x.shape[0] // self.groups) * math.prod(kernel) * math.prod(output.shape[1:])

    def receptive_step(self, inputs: Sequence[TensorType]) -> WindowStep:
        _, kernel, stride, dilation, _ = self._axes(inputs[0])
        return WindowStep(
            window=tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation)), stride=stride
        )

    def _torch_padding(self, pads: tuple[tuple[int, int], ...]) -> tuple[int, ...] | str:
        # torch takes one padding per axis; only `same` with an even window is asymmetric
        if all(before == after for before, after in pads):
            return tuple(before for before, _ in pads)
        return "same"

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        (x,) = inputs
        n, kernel, stride, dilation, pads = self._axes(x)
        return TorchCall(f"nn.Conv{n}d", {
            "in_channels": x.shape[0], "out_channels": self.channels, "kernel_size": kernel,
            "stride": stride, "padding": self._torch_padding(pads), "dilation": dilation,
            "groups": self.groups, "bias": self.bias,
        })

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX Conv; `same` and `valid` become explicit (begin, end) pads. A bias is
        emitted when ``params`` holds one (batchnorm folding adds one to a bias-free conv)."""
        _, kernel, stride, dilation, pads = self._axes(types[0])
        return onnx_conv(g, inputs[0], name, params, "", kernel, stride, dilation, pads,
                         self.groups)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """out[b, k, i, j] = bias[k] + Σ_{c < C/g} Σ_{u,v} W[k, c, u, v] ·
        x̃[b, g(k)·C/g + c, S·i + d·u, S·j + d·v], g(k) = k // (K / g), x̃ zero-padded by
        (P_before, P_after) per axis (`same`: d(k - 1) // 2 before, the rest after); the
        output keeps the windows that fit (floor((N + P_b + P_a - F) / S) + 1)."""
        (x,) = inputs
        _, _, stride, dilation, pads = self._axes(TensorType(shape=x.shape[1:]))
        return conv_reference(x, params["weight"], params.get("bias"), stride, dilation, pads,
                              self.groups)


def onnx_conv(g: OnnxGraph, x: str, name: str, params: dict[str, np.ndarray], prefix: str,
              kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
              pads: Sequence[tuple[int, int]], groups: int) -> str:
    """One ONNX Conv from the params ``{prefix}weight`` and, if present, ``{prefix}bias``."""
    operands = [x, g.initializer(f"{name}.{prefix}weight", params[f"{prefix}weight"])]
    if f"{prefix}bias" in params:
        operands.append(g.initializer(f"{name}.{prefix}bias", params[f"{prefix}bias"]))
    return g.node("Conv", operands, kernel_shape=list(kernel), strides=list(stride),
                  dilations=list(dilation), group=groups,
                  pads=[before for before, _ in pads] + [after for _, after in pads])


@register
class Conv1d(Conv):
    """Convolution over one spatial axis (the formula of `conv`).

    Shape: [C_in, L] -> [K, L'] with L' = (L + 2P - F) / S + 1.
    Params: weight [K, C_in / groups, k], bias [K].
    MACs: K · (C_in / groups) · k · L'.
    """

    kind: ClassVar[str] = "conv1d"
    spatial_rank: ClassVar[int | None] = 1
    samples: ClassVar[tuple[Sample, ...]] = (
        sample({"channels": 4, "kernel": 3, "stride": 2, "padding": 1}, (2, 15)),
    )
    bad_samples: ClassVar[tuple[BadSample, ...]] = (
        BadSample(call="conv1d(4, 3)", inputs=((3, 8, 8),), code="E2103"),
        BadSample(call="conv1d(4, 5, dilation=3)", inputs=((3, 12),), code="E2102"),
    )


@register
class Conv2d(Conv):
    """Convolution over two spatial axes (the formula of `conv`).

    Shape: [C_in, H, W] -> [K, H', W'] with H' = (H + 2P - F) / S + 1.
    Params: weight [K, C_in / groups, k_h, k_w], bias [K].
    MACs: K · (C_in / groups) · k_h · k_w · H' · W'.
    """

    kind: ClassVar[str] = "conv2d"
    spatial_rank: ClassVar[int | None] = 2
    samples: ClassVar[tuple[Sample, ...]] = (
        sample({"channels": 4, "kernel": (3, 1), "stride": (2, 1), "padding": (1, 0)},
               (3, 9, 5)),
    )
    bad_samples: ClassVar[tuple[BadSample, ...]] = (
        BadSample(call="conv2d(4, 3)", inputs=((3, 8),), code="E2103"),
        BadSample(call="conv2d(4, 3, stride=2, padding=same)", inputs=((3, 8, 8),),
                  code="E1007"),
    )


@register
class SeparableConv(Conv):
    """Depthwise-separable convolution (Xception): a depthwise conv, then a 1x1 pointwise one.

    depthwise: groups = C_in, weight [C_in, 1, k_h, k_w]; pointwise: weight [K, C_in, 1, 1].
    Shape: as `conv` with groups = 1.
    Params: C_in·k_h·k_w (+ C_in) + K·C_in (+ K), versus K·C_in·k_h·k_w for a full conv.
    MACs: C_in·k_h·k_w·H'·W' + K·C_in·H'·W'.
    """

    kind: ClassVar[str] = "separable_conv"
    groups: Literal[1] = 1
    samples: ClassVar[tuple[Sample, ...]] = (
        sample({"channels": 8, "kernel": 3, "padding": 1}, (4, 8, 8)),
        sample({"channels": 8, "kernel": 3, "bias": False}, (4, 12)),
        sample({"channels": 6, "kernel": 4, "padding": "same"}, (4, 9),
               note="even kernel: asymmetric `same` (torch padding='same')"),
    )
    bad_samples: ClassVar[tuple[BadSample, ...]] = (
        BadSample(call="separable_conv(8, 5)", inputs=((4, 3),), code="E2102"),
        BadSample(call="separable_conv(8, 3, groups=2)", inputs=((4, 8, 8),), code="E1007"),
    )

    def param_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        (x,) = inputs
        _, kernel, *_ = self._axes(x)
        c = x.shape[0]
        ones = (1,) * len(kernel)
        shapes = {"depthwise.weight": (c, 1, *kernel)}
        if self.bias:
            shapes["depthwise.bias"] = (c,)
        shapes["pointwise.weight"] = (self.channels, c, *ones)
        if self.bias:
            shapes["pointwise.bias"] = (self.channels,)
        return shapes

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        (x,) = inputs
        _, kernel, *_ = self._axes(x)
        positions = math.prod(output.shape[1:])
        c = x.shape[0]
        return c * math.prod(kernel) * positions + self.channels * c * positions

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        (x,) = inputs
        _, kernel, stride, dilation, pads = self._axes(x)
        return TorchCall("SeparableConv", {
            "in_channels": x.shape[0], "out_channels": self.channels, "kernel_size": kernel,
            "stride": stride, "padding": self._torch_padding(pads), "dilation": dilation,
            "bias": self.bias,
        })

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """Two ONNX Convs: depthwise (group = C_in), then the 1x1 pointwise one."""
        (x,) = types
        _, kernel, stride, dilation, pads = self._axes(x)
        ones = (1,) * len(kernel)
        depthwise = onnx_conv(g, inputs[0], name, params, "depthwise.", kernel, stride, dilation,
                              pads, x.shape[0])
        return onnx_conv(g, depthwise, name, params, "pointwise.", ones, ones, ones,
                         ((0, 0),) * len(kernel), 1)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """pointwise(depthwise(x)): the `conv` formula with groups = C_in on
        ``depthwise.weight`` [C_in, 1, *k] (+ ``depthwise.bias``), then a 1x1 one on
        ``pointwise.weight`` [K, C_in, 1, 1] (+ ``pointwise.bias``):
        out[b, k, i, j] = pb[k] + Σ_c PW[k, c] ·
        (db[c] + Σ_{u,v} DW[c, u, v] · x̃[b, c, S·i + d·u, S·j + d·v])."""
        (x,) = inputs
        _, kernel, stride, dilation, pads = self._axes(TensorType(shape=x.shape[1:]))
        ones = (1,) * len(kernel)
        depthwise = conv_reference(x, params["depthwise.weight"], params.get("depthwise.bias"),
                                   stride, dilation, pads, x.shape[1])
        return conv_reference(depthwise, params["pointwise.weight"],
                              params.get("pointwise.bias"), ones, ones, ((0, 0),) * len(kernel), 1)


@register
class UpConv(_Windowed):
    """Transposed convolution ("deconvolution", learnable upsampling).

    Shape: [C_in, H, W] -> [K, H', W'] with
    H' = (H - 1)·S - 2P + d(k - 1) + output_padding + 1.
    Params: weight [C_in, K / groups, k_h, k_w], bias [K].
    MACs: C_in · (K / groups) · k_h · k_w · H · W (every input pixel scatters a kernel).
    """

    kind: ClassVar[str] = "upconv"
    family: ClassVar[str] = "conv"
    aliases: ClassVar[tuple[str, ...]] = ("conv_transpose",)
    positional: ClassVar[tuple[str, ...]] = ("channels", "kernel")

    channels: int = Field(gt=0)
    kernel: IntOrTuple
    stride: IntOrTuple = 1
    padding: IntOrTuple = 0
    output_padding: IntOrTuple = 0
    dilation: IntOrTuple = 1
    groups: int = Field(default=1, gt=0)
    bias: bool = True

    samples: ClassVar[tuple[Sample, ...]] = (
        sample({"channels": 4, "kernel": 2, "stride": 2}, (8, 5, 5)),
        sample({"channels": 4, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1,
                "groups": 2}, (4, 7)),
        sample({"channels": 3, "kernel": (3, 2), "stride": 3, "dilation": 2,
                "output_padding": 2, "bias": False}, (2, 4, 5),
               note="dilation; output_padding columns that no kernel reaches stay zero"),
    )
    bad_samples: ClassVar[tuple[BadSample, ...]] = (
        BadSample(call="upconv(4, 2, stride=2, output_padding=2)", inputs=((8, 5, 5),),
                  code="E1007"),
        BadSample(call="upconv(4, 3, groups=3)", inputs=((4, 5),), code="E2104"),
        BadSample(call="upconv(4, 1, padding=1)", inputs=((3, 1),), code="E2102"),
    )

    def _axes(self, x: TensorType):
        n = self._spatial(x)
        values = {
            arg: per_axis(getattr(self, arg), n, arg)
            for arg in ("kernel", "stride", "padding", "output_padding", "dilation")
        }
        for arg in ("kernel", "stride", "dilation"):
            if min(values[arg]) < 1:
                raise ShapeError(codes.BAD_ARG, f"`{arg}` must be positive", arg=arg)
        for arg in ("padding", "output_padding"):
            if min(values[arg]) < 0:
                raise ShapeError(codes.BAD_ARG, f"`{arg}` must not be negative", arg=arg)
        for op_, s, d in zip(values["output_padding"], values["stride"], values["dilation"]):
            if op_ >= max(s, d):
                raise ShapeError(
                    codes.BAD_ARG,
                    f"output_padding ({op_}) must be smaller than stride or dilation ({max(s, d)})",
                    arg="output_padding",
                )
        return n, values

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        n, v = self._axes(x)
        check_divisible(x.shape[0], self.groups, "input channels", "groups", arg="groups")
        check_divisible(self.channels, self.groups, "output channels", "groups", arg="groups")
        sizes = tuple(
            conv_transpose_output(size, k, s, p, op_, d, axis)
            for size, k, s, p, op_, d, axis in zip(
                x.shape[1:], v["kernel"], v["stride"], v["padding"], v["output_padding"],
                v["dilation"], AXIS_NAMES[n],
            )
        )
        return TensorType(shape=(self.channels, *sizes))

    def param_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        (x,) = inputs
        _, v = self._axes(x)
        shapes = {"weight": (x.shape[0], self.channels // self.groups, *v["kernel"])}
        if self.bias:
            shapes["bias"] = (self.channels,)
        return shapes

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        (x,) = inputs
        _, v = self._axes(x)
        return (
            x.shape[0] * (self.channels // self.groups) * math.prod(v["kernel"]) * math.prod(x.shape[1:])
        )

    def receptive_step(self, inputs: Sequence[TensorType]) -> WindowStep:
        _, v = self._axes(inputs[0])
        # in input units a transposed conv sees ceil(k_eff / S) input pixels per output pixel
        window = tuple(
            -(-(d * (k - 1) + 1) // s) for k, s, d in zip(v["kernel"], v["stride"], v["dilation"])
        )
        return WindowStep(window=window, stride=tuple(1 / s for s in v["stride"]))

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        (x,) = inputs
        n, v = self._axes(x)
        return TorchCall(f"nn.ConvTranspose{n}d", {
            "in_channels": x.shape[0], "out_channels": self.channels, "kernel_size": v["kernel"],
            "stride": v["stride"], "padding": v["padding"], "output_padding": v["output_padding"],
            "groups": self.groups, "bias": self.bias, "dilation": v["dilation"],
        })

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX ConvTranspose: out = S·(N - 1) + output_padding + d(k - 1) + 1 - 2P, as torch."""
        _, v = self._axes(types[0])
        operands = [inputs[0], g.initializer(f"{name}.weight", params["weight"])]
        if "bias" in params:
            operands.append(g.initializer(f"{name}.bias", params["bias"]))
        return g.node("ConvTranspose", operands, kernel_shape=list(v["kernel"]),
                      strides=list(v["stride"]), pads=list(v["padding"]) * 2,
                      output_padding=list(v["output_padding"]), dilations=list(v["dilation"]),
                      group=self.groups)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """Scatter-add: each input pixel adds its weighted kernel to the output at stride S,
        y[b, k, S·i + d·u] += Σ_{c < C/g} x[b, g(k)·C/g + c, i] · W[g(k)·C/g + c, k mod K/g, u]
        over a full length (N - 1)·S + d(k - 1) + 1 + output_padding (the output_padding
        positions receive nothing), then out = y[P : full - P] + bias, per spatial axis."""
        import numpy as np
        (x,) = inputs
        n, v = self._axes(TensorType(shape=x.shape[1:]))
        kernel, stride, dilation = v["kernel"], v["stride"], v["dilation"]
        batch, channels, *sizes = x.shape
        groups, per_group = self.groups, self.channels // self.groups
        full = [
            (size - 1) * s + d * (k - 1) + 1 + op_
            for size, k, s, d, op_ in zip(sizes, kernel, stride, dilation, v["output_padding"],
                                          strict=True)
        ]
        y = np.zeros((batch, groups, per_group, *full))
        xg = x.reshape(batch, groups, channels // groups, *sizes)
        wg = params["weight"].reshape(groups, channels // groups, per_group, *kernel)
        o = "hw"[:n]
        for offset in itertools.product(*(range(k) for k in kernel)):
            where = tuple(
                slice(d * u, d * u + s * (size - 1) + 1, s)
                for u, d, s, size in zip(offset, dilation, stride, sizes, strict=True)
            )
            y[(..., *where)] += np.einsum(f"bgc{o},gcm->bgm{o}", xg, wg[(..., *offset)])
        y = y.reshape(batch, self.channels, *full)
        out = y[(..., *(slice(p, f - p) for p, f in zip(v["padding"], full, strict=True)))]
        if "bias" in params:
            out = out + params["bias"].reshape(-1, *(1,) * n)
        return out
