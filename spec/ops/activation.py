"""Activations: the elementwise table, prelu, softmax / log_softmax over an axis, maxout.

The table holds the classic activations (relu, sigmoid, tanh, gelu, elu, leaky_relu) and the
modern ones of mobile and transformer networks: relu6, hardtanh, clamp, hardsigmoid,
hardswish, silu (swish), mish, softplus, softsign.

MACs convention: MACs count the multiply-adds of linear maps (linear, conv, recurrent) and of
normalisations only; every activation here, prelu included, counts 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from .. import codes
from ..ir import TensorType
from .arith import check_divisible
from .base import BadSample, Op, ShapeError, TorchCall, register, sample

if TYPE_CHECKING:
    import numpy as np

    from .base import OnnxGraph

_CONTRACT = "\n\n    Shape: [*] -> [*], unchanged.\n    Params: none.\n    MACs: 0 (not counted).\n"


class _Elementwise(Op):
    """An elementwise activation y = f(x): the shape is kept, nothing is learned.

    A row of the table lowers to ``torch_cls`` with ``torch_args`` (torch keyword -> the
    attribute it takes its value from), and to the ONNX op ``onnx_op`` with ``onnx_args``
    (ONNX attribute -> the attribute it takes its value from) and ``onnx_fixed`` (ONNX
    attribute -> a constant value, where ONNX's default differs from torch's definition).
    A row whose lowering is more than one call overrides ``torch_call`` / ``to_onnx``.
    """

    family: ClassVar[str] = "activation"
    torch_cls: ClassVar[str] = ""
    torch_args: ClassVar[dict[str, str]] = {}
    onnx_op: ClassVar[str] = ""
    onnx_args: ClassVar[dict[str, str]] = {}
    onnx_fixed: ClassVar[dict[str, Any]] = {}

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        return x

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        if not self.torch_cls:
            return super().torch_call(inputs)
        return TorchCall(self.torch_cls, {k: getattr(self, a) for k, a in self.torch_args.items()})

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        if not self.onnx_op:
            return super().to_onnx(g, inputs, types, name, params)
        attrs = {k: getattr(self, a) for k, a in self.onnx_args.items()}
        return g.node(self.onnx_op, inputs, **self.onnx_fixed, **attrs)


def _row(cls: type[_Elementwise]) -> type[_Elementwise]:
    """Register one row of the table; its docstring gives the formula, the contract is shared."""
    cls.__doc__ = (cls.__doc__ or "").rstrip() + _CONTRACT
    register(cls)
    return cls


# -- the table: one row per activation ---------------------------------------------------------
@_row
class ReLU(_Elementwise):
    """relu(x) = max(0, x)"""

    kind: ClassVar[str] = "relu"
    torch_cls: ClassVar[str] = "nn.ReLU"
    onnx_op: ClassVar[str] = "Relu"
    samples = (sample({}, (3, 4, 4)), sample({}, (5,)))

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        return np.maximum(x, 0.0)


@_row
class Sigmoid(_Elementwise):
    """sigmoid(x) = σ(x) = 1 / (1 + e^(-x)); σ'(x) = σ(x)·(1 - σ(x))"""

    kind: ClassVar[str] = "sigmoid"
    torch_cls: ClassVar[str] = "nn.Sigmoid"
    onnx_op: ClassVar[str] = "Sigmoid"
    samples = (sample({}, (2, 8)),)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        with np.errstate(over="ignore"):  # e^(-x) = inf for x << 0 gives the right 0
            return 1.0 / (1.0 + np.exp(-x))


@_row
class Tanh(_Elementwise):
    """tanh(x) = (e^x - e^(-x)) / (e^x + e^(-x)) = 2σ(2x) - 1; tanh'(x) = 1 - tanh²(x)"""

    kind: ClassVar[str] = "tanh"
    torch_cls: ClassVar[str] = "nn.Tanh"
    onnx_op: ClassVar[str] = "Tanh"
    samples = (sample({}, (2, 8)),)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        return np.tanh(x)


@_row
class GELU(_Elementwise):
    """gelu(x) = x·Φ(x) = x/2·(1 + erf(x/√2)), Φ the standard normal CDF;
    approximate=tanh: x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³)))"""

    kind: ClassVar[str] = "gelu"
    torch_cls: ClassVar[str] = "nn.GELU"
    torch_args: ClassVar[dict[str, str]] = {"approximate": "approximate"}
    onnx_op: ClassVar[str] = "Gelu"  # opset 20
    onnx_args: ClassVar[dict[str, str]] = {"approximate": "approximate"}
    samples = (
        sample({}, (6,), note="exact: erf"),
        sample({"approximate": "tanh"}, (3, 4, 4), note="tanh approximation"),
    )
    bad_samples = (BadSample(call='gelu(approximate="fast")', inputs=((3, 8, 8),), code="E1007"),)
    approximate: Literal["none", "tanh"] = "none"

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        if self.approximate == "tanh":
            return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
        erf = np.vectorize(math.erf, otypes=[np.float64])
        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


@_row
class ELU(_Elementwise):
    """elu(x) = x if x > 0 else alpha·(e^x - 1)"""

    kind: ClassVar[str] = "elu"
    torch_cls: ClassVar[str] = "nn.ELU"
    torch_args: ClassVar[dict[str, str]] = {"alpha": "alpha"}
    onnx_op: ClassVar[str] = "Elu"
    onnx_args: ClassVar[dict[str, str]] = {"alpha": "alpha"}
    positional: ClassVar[tuple[str, ...]] = ("alpha",)
    samples = (sample({"alpha": 0.5}, (3, 4, 4)),)
    bad_samples = (BadSample(call="elu(true)", inputs=((3, 8),), code="E1007"),)
    alpha: float = 1.0

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        # alpha·(e^x - 1) as expm1, taken on min(x, 0) so the unused branch cannot overflow
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0.0)))


@_row
class LeakyReLU(_Elementwise):
    """leaky_relu(x) = x if x > 0 else alpha·x"""

    kind: ClassVar[str] = "leaky_relu"
    torch_cls: ClassVar[str] = "nn.LeakyReLU"
    torch_args: ClassVar[dict[str, str]] = {"negative_slope": "alpha"}
    onnx_op: ClassVar[str] = "LeakyRelu"
    onnx_args: ClassVar[dict[str, str]] = {"alpha": "alpha"}
    positional: ClassVar[tuple[str, ...]] = ("alpha",)
    samples = (sample({"alpha": 0.2}, (2, 8)),)
    bad_samples = (BadSample(call="leaky_relu(-0.1)", inputs=((3, 8),), code="E1007"),)
    alpha: float = Field(default=0.01, ge=0)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        return np.where(x > 0, x, self.alpha * x)


# -- the modern rows: bounded, smooth and self-gated activations --------------------------------
FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32 (numpy.finfo(float32).max)


def _num(value: float) -> str:
    """A bound as a message shows it: `2` for 2.0, all digits where `:g` would round."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def check_bounds(op: Op, low: float, high: float) -> None:
    """min < max for hardtanh and clamp; the error points at the bound that was given."""
    if low < high:
        return
    given = op.model_fields_set
    arg = "max" if "max" in given or "min" not in given else "min"
    if low > high:
        fix = f"swap the bounds: `{op.kind}(min={_num(high)}, max={_num(low)})`"
    else:
        fix = f"equal bounds make every output {_num(low)}; give a max above the min"
    defaults = [f"{name}={_num(value)} is the default" for name, value in
                (("min", low), ("max", high)) if name not in given]
    raise ShapeError(
        codes.BAD_ARG,
        f"{op.kind} needs min < max, got min={_num(low)} and max={_num(high)}",
        notes=[f"min < max fails: {_num(low)} >= {_num(high)}", *defaults],
        help=fix,
        arg=arg,
    )


def _scalar(g: OnnxGraph, value: float) -> str:
    """A float32 scalar constant (Clip's bounds, softplus's beta and threshold)."""
    import numpy as np

    return g.constant(np.float32(value))


@_row
class ReLU6(_Elementwise):
    """relu6(x) = min(max(0, x), 6): relu capped at 6 (MobileNet); kinks at 0 and 6"""

    kind: ClassVar[str] = "relu6"
    torch_cls: ClassVar[str] = "nn.ReLU6"
    samples = (sample({}, (3, 4, 4)), sample({}, (5,)))
    bad_samples = (BadSample(call="relu6(6)", inputs=((3, 8),), code=codes.TOO_MANY_ARGS),)

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """Clip with the bounds 0 and 6 as inputs (opset 11+: no longer attributes)."""
        return g.node("Clip", [inputs[0], _scalar(g, 0.0), _scalar(g, 6.0)])

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        return np.minimum(np.maximum(x, 0.0), 6.0)


@_row
class Hardtanh(_Elementwise):
    """hardtanh(x) = min(max(x, min), max), min < max: tanh's piecewise-linear cousin, x itself
    between the bounds and the bound beyond them; kinks at min and max"""

    kind: ClassVar[str] = "hardtanh"
    torch_cls: ClassVar[str] = "nn.Hardtanh"
    torch_args: ClassVar[dict[str, str]] = {"min_val": "min", "max_val": "max"}
    positional: ClassVar[tuple[str, ...]] = ("min", "max")
    samples = (
        sample({}, (2, 8), note="bounds -1 and 1: both clipped branches and the linear one"),
        sample({"min": -0.5, "max": 2.0}, (3, 4, 4), note="asymmetric bounds"),
    )
    bad_samples = (
        BadSample(call="hardtanh(1, -1)", inputs=((3, 8),), code=codes.BAD_ARG),
        BadSample(call="hardtanh(min=2)", inputs=((3, 8),), code=codes.BAD_ARG),  # max=1
        BadSample(call="hardtanh(max=1e39)", inputs=((3, 8),), code=codes.BAD_ARG),  # > float32
    )
    # bounds are finite, and stay finite as the float32 the lowerings make of them
    min: float = Field(default=-1.0, gt=-FLOAT32_MAX, lt=FLOAT32_MAX, allow_inf_nan=False)
    max: float = Field(default=1.0, gt=-FLOAT32_MAX, lt=FLOAT32_MAX, allow_inf_nan=False)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        check_bounds(self, self.min, self.max)
        return super().infer(inputs)

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        check_bounds(self, self.min, self.max)
        return super().torch_call(inputs)

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """Clip with min and max as float32 scalar inputs."""
        check_bounds(self, self.min, self.max)
        return g.node("Clip", [inputs[0], _scalar(g, self.min), _scalar(g, self.max)])

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        return np.minimum(np.maximum(x, self.min), self.max)


@_row
class Clamp(_Elementwise):
    """clamp(x) = min(max(x, min), max); a bound left out is no bound (clamp(min=0) is
    max(x, 0)), at least one is given, and min < max when both are; kinks at the bounds"""

    kind: ClassVar[str] = "clamp"
    positional: ClassVar[tuple[str, ...]] = ("min", "max")
    samples = (
        sample({"min": -0.5, "max": 0.75}, (3, 4, 4),
               note="both bounds: torch Hardtanh, ONNX Clip(x, min, max)"),
        sample({"min": 0.25}, (2, 8), note="min only: torch Threshold(min, min), ONNX Clip(x, min)"),
        sample({"max": -0.25}, (2, 8),
               note="max only: torch Hardtanh(-FLOAT32_MAX, max), ONNX Clip(x, '', max)"),
    )
    bad_samples = (
        BadSample(call="clamp", inputs=((3, 8),), code=codes.MISSING_ARG),
        BadSample(call="clamp(3, 1)", inputs=((3, 8),), code=codes.BAD_ARG),
        BadSample(call="clamp(min=1, max=1)", inputs=((3, 8),), code=codes.BAD_ARG),
    )
    min: float | None = Field(default=None, gt=-FLOAT32_MAX, lt=FLOAT32_MAX, allow_inf_nan=False)
    max: float | None = Field(default=None, gt=-FLOAT32_MAX, lt=FLOAT32_MAX, allow_inf_nan=False)

    def check_arguments(self) -> None:
        """At least one bound, and min < max when both are given."""
        if self.min is None and self.max is None:
            raise ShapeError(
                codes.MISSING_ARG,
                "`clamp` needs a bound: `min`, `max` or both",
                notes=[f"signature: {self.signature()}"],
                help="`clamp(min=0)` is max(x, 0), `clamp(max=6)` is min(x, 6), "
                     "`clamp(0, 6)` both",
            )
        if self.min is not None and self.max is not None:
            check_bounds(self, self.min, self.max)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        self.check_arguments()
        return super().infer(inputs)

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        """torch.nn has no clamp module. Both bounds: Hardtanh(min, max), exactly clamp. Min
        only: Threshold(min, min) (x if x > min else min), exactly max(x, min). Max only:
        Hardtanh(-FLOAT32_MAX, max), exactly min(x, max) for every finite float32 (only an
        input of -inf becomes -FLOAT32_MAX). torch accepts ±inf as a bound, but a call's
        values are written into standalone Python with repr, and `inf` is not Python."""
        self.check_arguments()
        if self.max is None:
            return TorchCall("nn.Threshold", {"threshold": self.min, "value": self.min})
        low = -FLOAT32_MAX if self.min is None else self.min
        return TorchCall("nn.Hardtanh", {"min_val": low, "max_val": self.max})

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """Clip; a bound left out is an omitted optional input (no bound), exactly clamp."""
        self.check_arguments()
        low = "" if self.min is None else _scalar(g, self.min)
        high = [] if self.max is None else [_scalar(g, self.max)]
        return g.node("Clip", [inputs[0], low, *high])

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        if self.min is not None:
            x = np.maximum(x, self.min)
        if self.max is not None:
            x = np.minimum(x, self.max)
        return x


@_row
class Hardsigmoid(_Elementwise):
    """hardsigmoid(x) = relu6(x + 3) / 6 = min(max(0, x/6 + 1/2), 1): 0 for x <= -3, 1 for
    x >= 3, the line x/6 + 1/2 between (torch's slope 1/6, not ONNX's default 0.2)"""

    kind: ClassVar[str] = "hardsigmoid"
    torch_cls: ClassVar[str] = "nn.Hardsigmoid"
    onnx_op: ClassVar[str] = "HardSigmoid"
    onnx_fixed: ClassVar[dict[str, Any]] = {"alpha": 1.0 / 6.0, "beta": 0.5}
    samples = (sample({}, (3, 8, 8)), sample({}, (6,)))
    bad_samples = (BadSample(call="hardsigmoid(alpha=0.2)", inputs=((3, 8),),
                             code=codes.UNKNOWN_ARG),)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        return np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0


@_row
class Hardswish(_Elementwise):
    """hardswish(x) = x·relu6(x + 3) / 6 = x·hardsigmoid(x) (MobileNetV3): 0 for x <= -3, x for
    x >= 3; kinks at ±3"""

    kind: ClassVar[str] = "hardswish"
    torch_cls: ClassVar[str] = "nn.Hardswish"
    onnx_op: ClassVar[str] = "HardSwish"  # opset 14: alpha = 1/6, beta = 1/2 built in
    samples = (sample({}, (3, 8, 8)), sample({}, (6,)))
    bad_samples = (BadSample(call="hardswish(1)", inputs=((3, 8),), code=codes.TOO_MANY_ARGS),)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        return x * np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0


@_row
class SiLU(_Elementwise):
    """silu(x) = x·σ(x) = x / (1 + e^(-x)), also called swish (its β = 1 form);
    silu'(x) = σ(x)·(1 + x·(1 - σ(x)))"""

    kind: ClassVar[str] = "silu"
    aliases: ClassVar[tuple[str, ...]] = ("swish",)
    torch_cls: ClassVar[str] = "nn.SiLU"
    samples = (sample({}, (3, 4, 4)), sample({}, (6,)))
    bad_samples = (BadSample(call="silu(beta=2)", inputs=((3, 8),), code=codes.UNKNOWN_ARG),)

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """Mul(x, Sigmoid(x)): ONNX has no SiLU (Swish is opset 24)."""
        return g.node("Mul", [inputs[0], g.node("Sigmoid", inputs)])

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        with np.errstate(over="ignore"):  # e^(-x) = inf for x << 0 gives the right -0
            return x / (1.0 + np.exp(-x))


@_row
class Mish(_Elementwise):
    """mish(x) = x·tanh(softplus(x)) = x·tanh(ln(1 + e^x)) (Misra 2019)"""

    kind: ClassVar[str] = "mish"
    torch_cls: ClassVar[str] = "nn.Mish"
    onnx_op: ClassVar[str] = "Mish"  # opset 18
    samples = (sample({}, (3, 4, 4)), sample({}, (6,)))
    bad_samples = (BadSample(call="mish(1)", inputs=((3, 8),), code=codes.TOO_MANY_ARGS),)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        return x * np.tanh(np.logaddexp(0.0, x))  # ln(1 + e^x) without overflow


# where softplus's ONNX Where is left out: ln(1 + e^(-x)) < e^(-20) ≈ 2.1e-9 for x > 20 is
# below half a float32 ulp of x (≥ 9.5e-7 from 16 on), so softplus(x) rounds to x anyway
_SOFTPLUS_ROUNDS_TO_X = 20.0


@_row
class Softplus(_Elementwise):
    """softplus(x) = ln(1 + e^(β·x)) / β, a smooth relu (β = beta); x itself where
    β·x > threshold, as torch defines it (the two differ there by less than
    e^(-threshold) / β); softplus'(x) = σ(β·x)"""

    kind: ClassVar[str] = "softplus"
    torch_cls: ClassVar[str] = "nn.Softplus"
    torch_args: ClassVar[dict[str, str]] = {"beta": "beta", "threshold": "threshold"}
    positional: ClassVar[tuple[str, ...]] = ("beta", "threshold")
    samples = (
        sample({}, (2, 8), note="beta 1, threshold 20: one ONNX Softplus"),
        sample({"beta": 2.0, "threshold": 1.0}, (3, 4, 4),
               note="Mul, Softplus, Div and the Where: x > 0.5 gives x"),
        sample({"threshold": 0.75}, (6,), note="beta 1: the Where without Mul and Div"),
        sample({"beta": 0.5}, (5,), note="Mul and Div; the Where's threshold never reached"),
    )
    bad_samples = (
        BadSample(call="softplus(0)", inputs=((3, 8),), code=codes.BAD_ARG),
        BadSample(call="softplus(threshold=-1)", inputs=((3, 8),), code=codes.BAD_ARG),
        BadSample(call="softplus(beta=true)", inputs=((3, 8),), code=codes.BAD_ARG),
    )
    beta: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    threshold: float = Field(default=20.0, gt=0, allow_inf_nan=False)

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX Softplus is ln(1 + e^x), with neither beta nor threshold: b = β·x (a Mul when
        β ≠ 1), s = Softplus(b) / β (a Div when β ≠ 1), then torch's rule as
        Where(b > threshold, x, s). The Where is left out for β = 1 and threshold >= 20,
        where s already rounds to x in float32."""
        (x,) = inputs
        b = x if self.beta == 1 else g.node("Mul", [x, _scalar(g, self.beta)])
        s = g.node("Softplus", [b])
        if self.beta != 1:
            s = g.node("Div", [s, _scalar(g, self.beta)])
        if self.beta == 1 and self.threshold >= _SOFTPLUS_ROUNDS_TO_X:
            return s
        above = g.node("Greater", [b, _scalar(g, self.threshold)])
        return g.node("Where", [above, x, s])

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        b = self.beta * x
        return np.where(b > self.threshold, x, np.logaddexp(0.0, b) / self.beta)


@_row
class Softsign(_Elementwise):
    """softsign(x) = x / (1 + |x|): a sigmoid-shaped map onto (-1, 1) with polynomial tails;
    softsign'(x) = 1 / (1 + |x|)²"""

    kind: ClassVar[str] = "softsign"
    torch_cls: ClassVar[str] = "nn.Softsign"
    onnx_op: ClassVar[str] = "Softsign"
    samples = (sample({}, (3, 4, 4)), sample({}, (6,)))
    bad_samples = (BadSample(call="softsign(1)", inputs=((3, 8),), code=codes.TOO_MANY_ARGS),)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        return x / (1.0 + np.abs(x))


# -- activations with more to say ---------------------------------------------------------------
@register
class PReLU(_Elementwise):
    """Parametric ReLU (He et al. 2015): leaky_relu with a learned slope a.

    prelu(x) = max(0, x) + a·min(0, x), with one a, or one a_c per channel (axis 0).

    Shape: [*] -> [*], unchanged; per_channel needs a channel axis ([C, ...]).
    Params: weight [1], or [C] when per_channel (torch initialises a = 0.25).
    MACs: 0 (activations are not counted).
    """

    kind: ClassVar[str] = "prelu"
    samples = (
        sample({}, (3, 4, 4), note="one shared slope"),
        sample({"per_channel": True}, (3, 4, 4), note="ONNX: slope reshaped to [C, 1, 1]"),
        sample({"per_channel": True}, (4, 7), note="ONNX: slope reshaped to [C, 1]"),
        sample({"per_channel": True}, (6,), note="ONNX: rank 1, slope [C] used as is"),
    )
    bad_samples = (
        BadSample(call='prelu(per_channel="yes")', inputs=((3, 8),), code="E1007"),
        BadSample(call="prelu(0.25)", inputs=((3, 8),), code="E1006"),  # no positional args
    )
    per_channel: bool = False

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        if self.per_channel and x.rank < 1:
            raise ShapeError(
                codes.RANK,
                "prelu with per_channel needs an input with a channel axis, got rank 0",
                help="use per_channel=false for one shared slope",
                arg="per_channel",
            )
        return x

    def param_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        return {"weight": (inputs[0].shape[0] if self.per_channel else 1,)}

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        return TorchCall("nn.PReLU", {"num_parameters": self.param_shapes(inputs)["weight"][0]})

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX PRelu; a per-channel slope [C] is reshaped to [C, 1, ...] to broadcast on axis 1."""
        (x,) = types
        slope = g.initializer(f"{name}.weight", params["weight"])
        if self.per_channel and x.rank > 1:
            slope = g.reshape(slope, [x.shape[0], *[1] * (x.rank - 1)])
        return g.node("PRelu", [inputs[0], slope])

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        a = params["weight"]  # [1], or [C]: shaped [C, 1, ...] to meet axis 1 of [batch, C, ...]
        if self.per_channel:
            a = a.reshape(a.shape[0], *[1] * (x.ndim - 2))
        return np.maximum(x, 0.0) + a * np.minimum(x, 0.0)


class _OverAxis(_Elementwise):
    """Shared by softmax and log_softmax: one axis of the per-sample shape, negative allowed."""

    positional: ClassVar[tuple[str, ...]] = ("axis",)
    axis: int = 0

    def resolved_axis(self, x: TensorType) -> int:
        """The axis in [0, rank) of the per-sample shape; the batched tensor's is this + 1."""
        if not -x.rank <= self.axis < x.rank:
            raise ShapeError(
                codes.BAD_ARG,
                f"{self.kind} axis {self.axis} is out of range for {x} of rank {x.rank}",
                notes=[f"axis must lie in [-{x.rank}, {x.rank}) (the batch axis is not counted)"],
                help=f"use axis=0 for channels/classes, or axis=-1 for the last of {x}",
                arg="axis",
            )
        return self.axis % x.rank

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        self.resolved_axis(x)
        return x

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        self.resolved_axis(inputs[0])
        # the batch axis comes first: a per-sample axis a >= 0 is torch's a + 1
        return TorchCall(self.torch_cls, {"dim": self.axis + 1 if self.axis >= 0 else self.axis})

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        self.resolved_axis(types[0])
        return g.node(self.onnx_op, inputs, axis=self.axis + 1 if self.axis >= 0 else self.axis)

    def batched_axis(self, x: np.ndarray) -> int:
        """The axis of a batched array [batch, *]: the per-sample axis, plus 1."""
        return 1 + self.axis % (x.ndim - 1)


@register
class Softmax(_OverAxis):
    """softmax(x)_i = e^(x_i - m) / Σ_j e^(x_j - m), m = max_j x_j, over `axis`.

    Subtracting the max changes nothing mathematically and keeps e^x from overflowing
    (the numerically stable form). axis counts the per-sample axes: 0 = channels/classes;
    for [T, classes] give axis=-1.

    Shape: [*] -> [*], unchanged; each slice along `axis` sums to 1.
    Params: none.
    MACs: 0 (activations are not counted).
    """

    kind: ClassVar[str] = "softmax"
    torch_cls: ClassVar[str] = "nn.Softmax"
    onnx_op: ClassVar[str] = "Softmax"  # opset 13+: over one axis, as torch
    samples = (
        sample({}, (10,)),
        sample({"axis": -1}, (5, 10), note="negative axis passed through"),
        sample({"axis": 1}, (3, 4, 5), note="axis >= 0 shifted past the batch axis"),
    )
    bad_samples = (
        BadSample(call="softmax(3)", inputs=((3, 8, 8),), code="E1007"),
        BadSample(call="softmax(-4)", inputs=((3, 8, 8),), code="E1007"),
    )

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        axis = self.batched_axis(x)
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)


@register
class LogSoftmax(_OverAxis):
    """log_softmax(x)_i = x_i - m - log Σ_j e^(x_j - m), m = max_j x_j, over `axis`.

    The stable form of log(softmax(x)): never takes the log of an underflowed 0. Pairs with
    a negative log-likelihood loss (cross_entropy = log_softmax + nll).

    Shape: [*] -> [*], unchanged.
    Params: none.
    MACs: 0 (activations are not counted).
    """

    kind: ClassVar[str] = "log_softmax"
    torch_cls: ClassVar[str] = "nn.LogSoftmax"
    onnx_op: ClassVar[str] = "LogSoftmax"
    samples = (
        sample({"axis": 0}, (3, 4, 4)),
        sample({"axis": -2}, (5, 10), note="negative axis passed through"),
    )
    bad_samples = (BadSample(call="log_softmax(axis=2)", inputs=((5, 10),), code="E1007"),)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        axis = self.batched_axis(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@register
class Maxout(Op):
    """Maxout (Goodfellow et al. 2013): the max over groups of k consecutive channels.

    y[j, ...] = max_{0 <= i < k} x[j·k + i, ...]

    Shape: [C, *] -> [C / k, *]; C divisible by k (after linear(k·n): [k·n] -> [n]).
    Params: none (the pieces come from the layer before).
    MACs: 0 (activations are not counted).
    """

    kind: ClassVar[str] = "maxout"
    family: ClassVar[str] = "activation"
    positional: ClassVar[tuple[str, ...]] = ("k",)
    samples = (sample({"k": 2}, (8,)), sample({"k": 3}, (6, 4, 4)))
    bad_samples = (
        BadSample(call="maxout(3)", inputs=((8,),), code="E2104"),
        BadSample(call="maxout(0)", inputs=((8,),), code="E1007"),
    )
    k: int = Field(gt=0)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        if x.rank < 1:
            raise ShapeError(
                codes.RANK,
                "maxout expects an input of rank at least 1 ([C, ...]), got rank 0",
                help="maxout groups channels (axis 0); the input has none",
            )
        check_divisible(x.shape[0], self.k, "channels", "k", arg="k")
        return TensorType(shape=(x.shape[0] // self.k, *x.shape[1:]), dtype=x.dtype)

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        return TorchCall("Maxout", {"k": self.k})

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """Reshape [batch, C, *] to [batch, C / k, k, *], then ReduceMax over the k axis."""
        (x,) = types
        pieces = g.reshape(inputs[0], [0, x.shape[0] // self.k, self.k, *x.shape[1:]])
        return g.node("ReduceMax", [pieces, g.ints([2])], keepdims=0)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        (x,) = inputs
        b, c = x.shape[:2]
        return x.reshape(b, c // self.k, self.k, *x.shape[2:]).max(axis=2)
