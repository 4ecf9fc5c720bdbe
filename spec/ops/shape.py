"""Shape ops: flatten, reshape, center_crop, pad, upsample, concat, add, identity."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .. import codes
from ..ir import TensorType
from .arith import AXIS_NAMES, IntOrTuple, axis_index, expect_rank, fmt, per_axis
from .base import (
    GLOBAL,
    BadSample,
    Op,
    ShapeError,
    TorchCall,
    WindowStep,
    register,
    sample,
)

if TYPE_CHECKING:
    import numpy as np

    from .base import OnnxGraph

_LAYOUT = {2: "[C, L]", 3: "[C, H, W]"}


def _spatial(kind: str, x: TensorType) -> int:
    expect_rank(x.rank, (2, 3), kind, " or ".join(_LAYOUT.values()))
    return x.rank - 1


def _dims(shape: Sequence[int]) -> str:
    return f"[{', '.join(str(d) for d in shape)}]"


def _axis_name(rank: int, axis: int) -> str:
    if axis == 0:
        return "channels" if rank > 1 else "features"
    return AXIS_NAMES.get(rank - 1, ())[axis - 1] if rank - 1 in AXIS_NAMES else f"axis {axis}"


@register
class Flatten(Op):
    """Merge the axes from `start` on into one: out = x.reshape(*x.shape[:start], -1).

    `start` counts the non-batch axes (torch's Flatten(start_dim=start + 1)); negative counts
    from the end.
    Shape: [C, H, W] -> [C·H·W] (start=0); [C, H, W] -> [C, H·W] (start=1).
    Params: none.
    MACs: 0.
    """

    kind: ClassVar[str] = "flatten"
    family: ClassVar[str] = "shape"
    positional: ClassVar[tuple[str, ...]] = ("start",)
    samples = (
        sample({}, (3, 4, 4)),
        sample({"start": 1}, (3, 4, 4)),
        sample({"start": -1}, (3, 4, 4), note="one axis merged: a no-op reshape"),
        sample({}, (2, 3), ids=True, note="int64 ids pass through"),
    )
    bad_samples = (
        BadSample(call="flatten(start=3)", inputs=((3, 4, 4),), code=codes.ARGUMENT_SHAPE),
        BadSample(call="flatten(start=-4)", inputs=((3, 4, 4),), code=codes.ARGUMENT_SHAPE),
    )

    start: int = 0

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        s = axis_index(self.start, x.rank, self.kind, "start")
        return TensorType(shape=(*x.shape[:s], math.prod(x.shape[s:])), dtype=x.dtype)

    def receptive_step(self, inputs: Sequence[TensorType]) -> Literal["global"] | None:
        (x,) = inputs
        merged = x.rank - axis_index(self.start, x.rank, self.kind, "start")
        return GLOBAL if merged >= 2 else None  # merging axes leaves no spatial axis

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        (x,) = inputs
        start = axis_index(self.start, x.rank, self.kind, "start")
        return TorchCall("nn.Flatten", {"start_dim": start + 1})  # the batch axis comes first

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """Keep the batch axis and the axes before `start`; merge the rest (row-major)."""
        (x,) = inputs
        start = self.start + x.ndim - 1 if self.start < 0 else self.start
        return x.reshape(*x.shape[: start + 1], -1)

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX Reshape to [batch, *IR shape] (0 keeps the batch axis; no -1 to infer)."""
        return g.reshape(inputs[0], [0, *self.infer(types).shape])


@register
class Reshape(Op):
    """Give the per-sample tensor another shape with the same number of elements.

    One entry of `shape` may be -1: it is inferred as Π x.shape / Π (the other entries).
    Shape: [d_1, ..., d_n] -> shape, with Π shape = Π d (the batch axis stays in front).
    Params: none.
    MACs: 0.
    """

    kind: ClassVar[str] = "reshape"
    family: ClassVar[str] = "shape"
    positional: ClassVar[tuple[str, ...]] = ("shape",)
    samples = (
        sample({"shape": (4, -1)}, (2, 8), note="the -1 inferred"),
        sample({"shape": 12}, (3, 4)),
        sample({"shape": (3, 2, 2)}, (12,)),
    )
    bad_samples = (
        BadSample(call="reshape((5, 5))", inputs=((3, 4, 4),), code=codes.RESHAPE),
        BadSample(call="reshape((5, -1))", inputs=((3, 4, 4),), code=codes.RESHAPE),
    )

    shape: int | tuple[int, ...]

    def _target(self) -> tuple[int, ...]:
        target = (self.shape,) if isinstance(self.shape, int) else self.shape
        if not target or any(d < 1 and d != -1 for d in target):
            raise ShapeError(
                codes.BAD_ARG,
                f"`shape` entries must be positive (or one -1), got {_dims(target)}",
                arg="shape",
            )
        if target.count(-1) > 1:
            raise ShapeError(
                codes.BAD_ARG, f"at most one entry of `shape` may be -1, got {_dims(target)}",
                arg="shape",
            )
        return target

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        target = self._target()
        known = math.prod(d for d in target if d != -1)
        product = f"{'·'.join(str(d) for d in x.shape)} = {x.numel}"
        if -1 in target:
            if x.numel % known:
                raise ShapeError(
                    codes.RESHAPE,
                    f"cannot infer the -1 in {_dims(target)}: {x} has {x.numel} elements, "
                    f"not a multiple of {known}",
                    notes=[f"{product}; {x.numel} / {known} = {x.numel / known:.2f}"],
                    help=f"the known sizes must multiply to a divisor of {x.numel}",
                    arg="shape",
                )
            target = tuple(x.numel // known if d == -1 else d for d in target)
        elif known != x.numel:
            raise ShapeError(
                codes.RESHAPE,
                f"reshape changes the number of elements: {x} has {x.numel}, {_dims(target)} has {known}",
                notes=[f"{'·'.join(str(d) for d in target)} = {known} ≠ {x.numel}"],
                help=f"the sizes must multiply to {x.numel}; write -1 for one of them to infer it",
                arg="shape",
            )
        return TensorType(shape=target, dtype=x.dtype)

    def receptive_step(self, inputs: Sequence[TensorType]) -> Literal["global"] | None:
        return None if self.infer(inputs).shape == inputs[0].shape else GLOBAL

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        return TorchCall("Reshape", {"shape": self.infer(inputs).shape})  # the -1 resolved

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """Row-major reshape of each sample; numpy infers the -1 itself."""
        (x,) = inputs
        target = (self.shape,) if isinstance(self.shape, int) else self.shape
        return x.reshape(x.shape[0], *target)

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX Reshape to [batch, *shape] with the -1 resolved."""
        return g.reshape(inputs[0], [0, *self.infer(types).shape])


@register
class CenterCrop(Op):
    """Keep the central `size` window of the spatial axes (U-Net's skip crop).

    Removed per axis: before = (N - n) // 2, after = (N - n) - before, so an odd difference
    takes its extra pixel from the bottom/right. (torchvision rounds half to even: it agrees
    when N - n ≡ 1 mod 4 and takes it from the top/left when N - n ≡ 3 mod 4.)
    Shape: [C, H, W] -> [C, h, w] for size (h, w), h <= H, w <= W (1-d: [C, L] -> [C, l]).
    Params: none.
    MACs: 0.
    """

    kind: ClassVar[str] = "center_crop"
    family: ClassVar[str] = "shape"
    positional: ClassVar[tuple[str, ...]] = ("size",)
    samples = (
        sample({"size": 4}, (2, 7, 8), note="odd difference: the extra row from the bottom"),
        sample({"size": (3, 5)}, (2, 8, 8)),
        sample({"size": 3}, (2, 6)),
    )
    bad_samples = (
        BadSample(call="center_crop(10)", inputs=((3, 8, 8),), code=codes.CROP),
        BadSample(call="center_crop((4, 9))", inputs=((3, 8, 8),), code=codes.CROP),
    )

    size: IntOrTuple

    def crop_pairs(self, x: TensorType) -> tuple[tuple[int, int], ...]:
        """(before, after) pixels removed per spatial axis."""
        n = _spatial(self.kind, x)
        sizes = per_axis(self.size, n, "size")
        if min(sizes) < 1:
            raise ShapeError(codes.BAD_ARG, f"`size` must be positive, got {sizes}", arg="size")
        pairs = []
        for have, want, axis in zip(x.shape[1:], sizes, AXIS_NAMES[n], strict=True):
            if want > have:
                raise ShapeError(
                    codes.CROP,
                    f"center_crop to {want} is larger than the input {axis} {have}",
                    notes=[f"{axis}: N - n = {have} - {want} = {have - want} < 0"],
                    help=f"crop to at most {have}",
                    arg="size",
                )
            diff = have - want
            pairs.append((diff // 2, diff - diff // 2))
        return tuple(pairs)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        sizes = (h - a - b for h, (a, b) in zip(x.shape[1:], self.crop_pairs(x), strict=True))
        return TensorType(shape=(x.shape[0], *sizes), dtype=x.dtype)

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        return TorchCall("CenterCrop", {"crop": self.crop_pairs(inputs[0])})

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """x[:, :, b_h : b_h + h, b_w : b_w + w] with b = (N - n) // 2 per spatial axis."""
        (x,) = inputs
        sizes = per_axis(self.size, x.ndim - 2, "size")
        index = [slice(None), slice(None)]
        for have, want in zip(x.shape[2:], sizes, strict=True):
            before = (have - want) // 2
            index.append(slice(before, before + want))
        return x[tuple(index)]

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX Slice of the spatial axes: [before, N - after)."""
        (x,) = types
        pairs = self.crop_pairs(x)
        ends = [n - after for n, (_, after) in zip(x.shape[1:], pairs, strict=True)]
        axes = list(range(2, x.rank + 1))
        return g.node("Slice", [inputs[0], g.ints([b for b, _ in pairs]), g.ints(ends),
                                g.ints(axes)])


@register
class Pad(Op):
    """Pad the spatial axes with a constant, their reflection (edge not repeated) or their edge.

    `padding`: an int (every side), one amount per spatial axis (both sides), or 2n amounts
    (before, after) axis by axis: (top, bottom, left, right) for [C, H, W]. reflect needs
    every amount smaller than its axis; `value` is for mode=constant only.
    Shape: [C, H, W] -> [C, H + P_top + P_bottom, W + P_left + P_right] (1-d: [C, L]).
    Params: none.
    MACs: 0.
    """

    kind: ClassVar[str] = "pad"
    family: ClassVar[str] = "shape"
    positional: ClassVar[tuple[str, ...]] = ("padding",)
    samples = (
        sample({"padding": 1}, (2, 4, 4)),
        sample({"padding": (1, 2, 0, 3), "value": 1.5}, (2, 4, 4),
               note="(top, bottom, left, right), a non-zero constant"),
        sample({"padding": (2, 1), "mode": "reflect"}, (2, 5), note="(before, after) in 1-d"),
        sample({"padding": (1, 2), "mode": "replicate"}, (2, 4, 4), note="one amount per axis"),
    )
    bad_samples = (
        BadSample(call="pad(4, mode=reflect)", inputs=((3, 4, 4),), code=codes.CROP),
        BadSample(call="pad((1, 2, 3))", inputs=((3, 4, 4),), code=codes.ARGUMENT_SHAPE),
    )

    padding: IntOrTuple
    mode: Literal["constant", "reflect", "replicate"] = "constant"
    value: float = 0.0

    def padding_pairs(self, x: TensorType) -> tuple[tuple[int, int], ...]:
        """(before, after) per spatial axis, in axis order (torch's F.pad wants it reversed)."""
        n = _spatial(self.kind, x)
        p = self.padding
        if isinstance(p, int):
            pairs = ((p, p),) * n
        elif len(p) in (n, 2 * n):
            pairs = tuple((a, a) for a in p) if len(p) == n else tuple(zip(p[::2], p[1::2], strict=True))
        else:
            raise ShapeError(
                codes.ARGUMENT_SHAPE,
                f"`padding` has {len(p)} entries but the input has {n} spatial "
                f"ax{'is' if n == 1 else 'es'}",
                notes=[f"padding={p}; spatial axes: {', '.join(AXIS_NAMES[n])}"],
                help=f"give one number, {n} (one per axis) or {2 * n} ((before, after) per axis)",
                arg="padding",
            )
        if min(min(pair) for pair in pairs) < 0:
            raise ShapeError(
                codes.CROP, f"`pad` takes non-negative amounts, got padding={p}",
                help="use center_crop to remove pixels", arg="padding",
            )
        if self.mode != "constant" and self.value != 0:
            raise ShapeError(
                codes.BAD_ARG, f"`value` applies to mode=constant only, not mode={self.mode}",
                arg="value",
            )
        if self.mode == "reflect":
            for (a, b), size, axis in zip(pairs, x.shape[1:], AXIS_NAMES[n], strict=True):
                if max(a, b) >= size:
                    raise ShapeError(
                        codes.CROP,
                        f"reflect padding ({max(a, b)}) must be smaller than the input {axis} "
                        f"({size})",
                        notes=[f"{axis}: P < N fails: {max(a, b)} >= {size}"],
                        help="pad less, or use mode=replicate or mode=constant",
                        arg="padding",
                    )
        return pairs

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        sizes = (h + a + b for h, (a, b) in zip(x.shape[1:], self.padding_pairs(x), strict=True))
        return TensorType(shape=(x.shape[0], *sizes), dtype=x.dtype)

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        return TorchCall("Pad", {
            "pads": self.padding_pairs(inputs[0]), "mode": self.mode, "value": self.value,
        })

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """np.pad of the spatial axes: constant `value`, reflect (numpy's `reflect` does not
        repeat the edge, as torch) or replicate (numpy's `edge`)."""
        import numpy as np
        (x,) = inputs
        pairs = self.padding_pairs(TensorType(shape=x.shape[1:]))
        width = ((0, 0), (0, 0), *pairs)
        if self.mode == "constant":
            return np.pad(x, width, mode="constant", constant_values=self.value)
        return np.pad(x, width, mode="edge" if self.mode == "replicate" else "reflect")

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX Pad: constant, reflect (edge not repeated, as torch) or edge (= replicate)."""
        import numpy as np
        pairs = self.padding_pairs(types[0])
        pads = g.ints([0, 0, *(b for b, _ in pairs), 0, 0, *(a for _, a in pairs)])
        if self.mode == "constant":
            value = g.constant(np.float32(self.value))
            return g.node("Pad", [inputs[0], pads, value], mode="constant")
        return g.node("Pad", [inputs[0], pads], mode="edge" if self.mode == "replicate" else "reflect")


_MODE_RANK = {"linear": 2, "bilinear": 3, "bicubic": 3}  # nearest takes either
_TAPS = {"nearest": 0, "linear": 2, "bilinear": 4, "bicubic": 16}
_CUBIC_A = -0.75  # torch's (and ONNX Resize's cubic_coeff_a as the lowering sets it)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel W(x) with a = -0.75 (zero for |x| >= 2)."""
    import numpy as np
    a, x = _CUBIC_A, np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1  # |x| <= 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # 1 < |x| < 2
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _resize_weights(n_in: int, scale: float, mode: str, align_corners: bool) -> np.ndarray:
    """The (n_out, n_in) matrix W of one axis, out = W @ in, with n_out = floor(n_in·scale).

    Source coordinate of output index d: align_corners: d·(n_in - 1)/(n_out - 1) (0 when
    n_out = 1); otherwise half-pixel, (d + 0.5)/scale - 0.5, with the scale as given, not
    n_out/n_in. Linear clamps it below at 0, takes i = floor(src) and i + 1 (both at most
    n_in - 1) with weights 1 - t and t, t = src - i. Cubic takes i - 1 .. i + 2 with weights
    W(1 + t), W(t), W(1 - t), W(2 - t), taps beyond the edge reading the edge pixel.
    """
    import numpy as np
    n_out = math.floor(n_in * scale)
    dst = np.arange(n_out, dtype=np.float64)
    rows = np.arange(n_out)
    weights = np.zeros((n_out, n_in))
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        src = (dst + 0.5) / scale - 0.5
    if mode == "bicubic":
        i = np.floor(src)
        t = src - i
        for offset, w in ((-1, _cubic(1 + t)), (0, _cubic(t)), (1, _cubic(1 - t)),
                          (2, _cubic(2 - t))):
            np.add.at(weights, (rows, np.clip(i + offset, 0, n_in - 1).astype(int)), w)
        return weights
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src), n_in - 1)
    t = np.clip(src - i0, 0.0, 1.0)
    i1 = np.minimum(i0 + 1, n_in - 1)
    np.add.at(weights, (rows, i0.astype(int)), 1 - t)
    np.add.at(weights, (rows, i1.astype(int)), t)
    return weights


@register
class Upsample(Op):
    """Resize the spatial axes by a scale factor, by interpolation (no parameters).

    mode: nearest ([C, L] or [C, H, W]), linear ([C, L]), bilinear or bicubic ([C, H, W]);
    align_corners only with the interpolating modes. Scales below 1 downsample.
    Shape: [C, H, W] -> [C, floor(H·s_h), floor(W·s_w)] (1-d: [C, L] -> [C, floor(L·s)]).
    Params: none.
    MACs: taps × output elements: nearest 0 (a copy), linear 2, bilinear 4, bicubic 16.
    """

    kind: ClassVar[str] = "upsample"
    family: ClassVar[str] = "shape"
    positional: ClassVar[tuple[str, ...]] = ("scale",)
    samples = (
        sample({"scale": 2}, (2, 4, 4)),
        sample({"scale": 2, "mode": "linear", "align_corners": True}, (2, 5)),
        sample({"scale": (2, 3), "mode": "bilinear"}, (2, 3, 3),
               note="half-pixel, one scale per axis"),
        sample({"scale": 1.5, "mode": "bicubic"}, (2, 5, 5),
               note="fractional scale: source coordinates from 1/1.5, not 5/7"),
        sample({"scale": 0.5}, (2, 7), note="downsampling, floor(7·0.5) = 3"),
        sample({"scale": 1.5}, (2, 5, 5), note="fractional nearest: ONNX asymmetric + floor"),
        sample({"scale": 3, "mode": "bilinear", "align_corners": True}, (2, 3, 4)),
        sample({"scale": 2, "mode": "bicubic", "align_corners": True}, (2, 4, 4),
               note="ONNX cubic with align_corners"),
        sample({"scale": 0.5, "mode": "linear"}, (2, 9),
               note="linear downsampling: half-pixel source clamped at 0"),
    )
    bad_samples = (
        BadSample(call="upsample(2, mode=bilinear)", inputs=((3, 8),), code=codes.RANK),
        BadSample(call="upsample(0.1)", inputs=((3, 8, 8),), code=codes.NONPOSITIVE),
        BadSample(call="upsample(1.25)", inputs=((2, 3),), code=codes.ARGUMENT_SHAPE),
    )

    scale: int | float | tuple[int | float, ...]
    mode: Literal["nearest", "linear", "bilinear", "bicubic"] = "nearest"
    align_corners: bool = False

    def _scales(self, x: TensorType) -> tuple[float, ...]:
        n = _spatial(self.kind, x)
        need = _MODE_RANK.get(self.mode)
        if need is not None and x.rank != need:
            raise ShapeError(
                codes.RANK,
                f"upsample mode={self.mode} expects an input of rank {need} ({_LAYOUT[need]}), "
                f"got rank {x.rank}",
                help=f"use mode={'linear' if x.rank == 2 else 'bilinear'} or mode=nearest "
                f"for {_LAYOUT[x.rank]}",
                arg="mode",
            )
        if self.align_corners and self.mode == "nearest":
            raise ShapeError(
                codes.BAD_ARG,
                "align_corners applies to mode linear, bilinear or bicubic, not nearest",
                arg="align_corners",
            )
        scales = self.scale if isinstance(self.scale, tuple) else (self.scale,) * n
        if len(scales) != n:
            raise ShapeError(
                codes.ARGUMENT_SHAPE,
                f"`scale` has {len(scales)} entries but the input has {n} spatial "
                f"ax{'is' if n == 1 else 'es'}",
                help=f"give one number or a tuple of {n}",
                arg="scale",
            )
        if min(scales) <= 0:
            raise ShapeError(codes.BAD_ARG, f"`scale` must be positive, got {self.scale}", arg="scale")
        return scales

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        scales = self._scales(x)
        sizes = []
        for size, s, axis in zip(x.shape[1:], scales, AXIS_NAMES[x.rank - 1], strict=True):
            out = math.floor(size * s)
            if out < 1:
                raise ShapeError(
                    codes.NONPOSITIVE,
                    f"upsample output size is not positive along {axis}",
                    notes=[f"floor(N·scale) = floor({size}·{fmt(s)}) = {out}"],
                    help=f"use a scale of at least {fmt(1 / size)}",
                    arg="scale",
                )
            if out == size and s != 1:
                # torch's and onnxruntime's kernels copy such an axis unchanged, while the
                # formula (and onnx's reference) interpolates it: the result is backend-bound
                raise ShapeError(
                    codes.ARGUMENT_SHAPE,
                    f"upsample by {fmt(s)} leaves {axis} at {size}",
                    notes=[f"floor(N·scale) = floor({size}·{fmt(s)}) = {out}: PyTorch and "
                           "onnxruntime copy an axis whose size does not change, the "
                           "interpolation formula does not, so the backends would disagree"],
                    help=f"use scale 1 for this axis, or a scale of at least "
                         f"{fmt((size + 1) / size)} (or below 1) to resize it",
                    arg="scale",
                )
            sizes.append(out)
        return TensorType(shape=(x.shape[0], *sizes), dtype=x.dtype)

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        return _TAPS[self.mode] * output.numel

    def receptive_step(self, inputs: Sequence[TensorType]) -> WindowStep:
        scales = self._scales(inputs[0])
        return WindowStep(window=(1,) * len(scales), stride=tuple(1 / s for s in scales))

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        kwargs: dict[str, Any] = {
            "scale_factor": tuple(float(s) for s in self._scales(inputs[0])), "mode": self.mode,
        }
        if self.mode != "nearest":
            kwargs["align_corners"] = self.align_corners
        return TorchCall("nn.Upsample", kwargs)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """Separable resize: one weight matrix per spatial axis (see `_resize_weights`).

        nearest: src = floor(d / scale), at most N - 1 (torch rounds d·(1/scale) in float32,
        which agrees unless that lands within float32 rounding of an integer); linear,
        bilinear (the same per axis) and bicubic: half-pixel or align_corners coordinates.
        Known disagreement, not in the samples: when floor(N·s) = N for s > 1 (s = 1.25,
        N = 3), torch's nearest and linear kernels copy that axis unchanged, and
        onnxruntime copies when every axis keeps its size; this follows the formula (as the
        ONNX reference evaluator does).
        """
        import numpy as np
        (x,) = inputs
        scales = self._scales(TensorType(shape=x.shape[1:]))
        y = x
        for axis, scale in enumerate(scales, start=2):
            if self.mode == "nearest":
                n_in = x.shape[axis]
                src = np.floor(np.arange(math.floor(n_in * scale)) / scale).astype(int)
                y = np.take(y, np.minimum(src, n_in - 1), axis=axis)
            else:
                weights = _resize_weights(x.shape[axis], scale, self.mode, self.align_corners)
                y = np.moveaxis(np.tensordot(weights, y, axes=(1, axis)), 0, axis)
        return y

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX Resize with `scales` on the spatial axes (output floor(N·s), and source
        coordinates from s itself, as torch with scale_factor). nearest: `asymmetric` +
        `floor` (src = floor(dst / s)); linear and cubic: `half_pixel`, or `align_corners`;
        cubic with a = -0.75 as torch."""
        import numpy as np
        (x,) = types
        scales = g.constant(np.array(self._scales(x), np.float32))
        axes = list(range(2, x.rank + 1))
        if self.mode == "nearest":
            y = g.node("Resize", [inputs[0], "", scales], axes=axes, mode="nearest",
                       coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        else:
            y = g.node("Resize", [inputs[0], "", scales], axes=axes,
                       mode="cubic" if self.mode == "bicubic" else "linear",
                       coordinate_transformation_mode="align_corners" if self.align_corners
                       else "half_pixel", cubic_coeff_a=-0.75)
        # onnx's Resize inference drops the symbolic batch dimension: state the type
        return g.declare(y, x.dtype, self.infer(types).shape)


@register
class Concat(Op):
    """Join two or more tensors along one axis (channels by default).

    `axis` counts the non-batch axes (negative from the end); every other axis must agree.
    Shape: [C_1, H, W], ..., [C_n, H, W] -> [C_1 + ... + C_n, H, W] (axis=0).
    Params: none.
    MACs: 0.
    """

    kind: ClassVar[str] = "concat"
    family: ClassVar[str] = "shape"
    arity: ClassVar[int | None] = None
    samples = (
        sample({}, (2, 4, 4), (3, 4, 4)),
        sample({"axis": -1}, (2, 4, 3), (2, 4, 5), (2, 4, 1), note="three inputs, last axis"),
        sample({"axis": 1}, (5, 3), (5, 2)),
    )
    bad_samples = (
        BadSample(call="concat(x0, x1)", inputs=((3, 8, 8), (2, 4, 4)),
                  code=codes.CONCAT_MISMATCH),
        BadSample(call="concat(x0, x1)", inputs=((3, 8, 8), (2, 8)), code=codes.CONCAT_MISMATCH),
    )

    axis: int = 0

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        x0 = inputs[0]
        axis = axis_index(self.axis, x0.rank, self.kind, "axis")
        _same_dtype(inputs, "concat inputs")
        for i, xi in enumerate(inputs[1:], start=1):
            if xi.rank != x0.rank:
                raise ShapeError(
                    codes.CONCAT_MISMATCH,
                    f"concat inputs differ in rank: input 0 is {x0} (rank {x0.rank}), "
                    f"input {i} is {xi} (rank {xi.rank})",
                    help="use `flatten` or `reshape` to give both the same rank",
                    operand=i,
                )
            for a, (s0, si) in enumerate(zip(x0.shape, xi.shape, strict=True)):
                if a != axis and s0 != si:
                    raise ShapeError(
                        codes.CONCAT_MISMATCH,
                        f"concat inputs differ along {_axis_name(x0.rank, a)}: input 0 has "
                        f"{s0}, input {i} has {si}",
                        notes=[
                            f"input 0: {x0}; input {i}: {xi}; joining along "
                            f"{_axis_name(x0.rank, axis)}, every other axis must be equal"
                        ],
                        help=_concat_help(x0, xi, axis, a),
                        operand=i,
                    )
        total = sum(x.shape[axis] for x in inputs)
        return TensorType(shape=(*x0.shape[:axis], total, *x0.shape[axis + 1 :]), dtype=x0.dtype)

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        return TorchCall("Concat", {"dim": axis_index(self.axis, inputs[0].rank, self.kind, "axis") + 1})

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        rank = inputs[0].ndim - 1  # without the batch axis
        axis = self.axis + rank if self.axis < 0 else self.axis
        return np.concatenate(inputs, axis=axis + 1)

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        return g.node("Concat", inputs, axis=axis_index(self.axis, types[0].rank, self.kind, "axis") + 1)


def _concat_help(x0: TensorType, xi: TensorType, axis: int, bad: int) -> str:
    if bad == 0:
        return f"project one input with a 1x1 conv, e.g. `conv({x0.shape[0]}, 1)`, to match"
    if axis == 0:
        target = tuple(min(a, b) for a, b in zip(x0.shape[1:], xi.shape[1:], strict=True))
        size = target[0] if len(set(target)) == 1 else target
        return (
            f"crop the larger input first with `center_crop({size})` "
            "(as U-Net does with its skip connections), or pad the smaller one"
        )
    name = _axis_name(x0.rank, bad)
    return f"crop or pad the {name} of both inputs to the same size before joining"


def _same_dtype(inputs: Sequence[TensorType], what: str) -> None:
    """Multi-input ops need one element type; the error points at the first that differs."""
    for i, xi in enumerate(inputs[1:], start=1):
        if xi.dtype != inputs[0].dtype:
            raise ShapeError(
                codes.DTYPE,
                f"{what} differ in type: input 0 is {inputs[0].dtype}, input {i} is {xi.dtype}",
                operand=i,
            )


@register
class Identity(Op):
    """The input unchanged (a placeholder, e.g. the skip path of a residual block).

    Shape: any -> the same.
    Params: none.
    MACs: 0.
    """

    kind: ClassVar[str] = "identity"
    family: ClassVar[str] = "shape"
    samples = (sample({}, (3, 4)),)  # no misuse of its own: any input is accepted

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        return x

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        return TorchCall("nn.Identity", {})

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        return inputs[0]

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        return inputs[0]
