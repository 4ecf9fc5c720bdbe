"""Activations: the elementwise table, prelu, softmax / log_softmax over an axis, maxout.

MACs convention: MACs count the multiply-adds of linear maps (linear, conv, recurrent) and of
normalisations only; every activation here, prelu included, counts 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

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
    (ONNX attribute -> the attribute it takes its value from).
    """

    family: ClassVar[str] = "activation"
    torch_cls: ClassVar[str] = ""
    torch_args: ClassVar[dict[str, str]] = {}
    onnx_op: ClassVar[str] = ""
    onnx_args: ClassVar[dict[str, str]] = {}

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
        return g.node(self.onnx_op, inputs, **{k: getattr(self, a) for k, a in self.onnx_args.items()})


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
