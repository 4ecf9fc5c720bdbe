"""Dense layers on the last axis: linear (fully connected) and embedding (a table lookup).

MACs convention (all families): MACs count the multiply-adds of linear maps (linear, conv,
recurrent) and of normalisations; activations, dropout and lookups count 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from .. import codes
from ..ir import TensorType
from .base import BadSample, Op, ShapeError, TorchCall, register, sample

if TYPE_CHECKING:
    import numpy as np

    from .base import OnnxGraph


def expect_float(x: TensorType, what: str) -> None:
    """Ops with weights multiply floats: integer token ids need an `embedding` first."""
    if x.dtype != "float32":
        raise ShapeError(
            codes.DTYPE,
            f"{what} expects a float input, got {x}",
            notes=[f"input {x} has dtype {x.dtype}"],
            help="integer ids go through `embedding(num, dim)` first; or declare the input "
            "as floats",
        )


@register
class Linear(Op):
    """Fully connected layer on the last axis (torch.nn.Linear).

    y = x·Wᵀ + b, i.e. y[..., o] = b[o] + Σ_i W[o, i] · x[..., i]

    Shape: [F] -> [out]; [*, F] -> [*, out] (leading axes are kept, each row mapped alone).
    Params: weight [out, F], bias [out] (when bias): (F + 1)·out.
    MACs: F · out · (product of the leading axes).
    """

    kind: ClassVar[str] = "linear"
    family: ClassVar[str] = "linear"
    positional: ClassVar[tuple[str, ...]] = ("features",)
    samples = (
        sample({"features": 5}, (7,), note="ONNX: Gemm with bias"),
        sample({"features": 5, "bias": False}, (3, 7), note="ONNX: MatMul, no bias"),
    )
    bad_samples = (
        BadSample(call="linear(0)", inputs=((3, 8, 8),), code="E1007"),
        BadSample(call="linear", inputs=((3, 8),), code="E1005"),
    )

    features: int = Field(gt=0)
    bias: bool = True
    tie: str | None = None  # `linear(vocab, tie=embed)`: use that layer's weight

    def ties(self) -> dict[str, str]:
        return {"weight": self.tie} if self.tie else {}

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        if x.rank < 1:
            raise ShapeError(
                codes.RANK,
                f"linear expects an input of rank at least 1 ([F] or [*, F]), got rank {x.rank}",
                help="the batch dimension is implicit; use `reshape` to give the input a "
                "feature axis",
            )
        expect_float(x, self.kind)
        return TensorType(shape=(*x.shape[:-1], self.features))

    def param_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        (x,) = inputs
        shapes: dict[str, tuple[int, ...]] = {"weight": (self.features, x.shape[-1])}
        if self.bias:
            shapes["bias"] = (self.features,)
        return shapes

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        (x,) = inputs
        return x.shape[-1] * self.features * math.prod(x.shape[:-1])

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        (x,) = inputs
        if self.tie:
            return TorchCall("TiedLinear", {
                "in_features": x.shape[-1], "out_features": self.features, "bias": self.bias,
            })
        return TorchCall("nn.Linear", {
            "in_features": x.shape[-1], "out_features": self.features, "bias": self.bias,
        })

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX Gemm(x, W, b, transB=1) on [batch, F]; MatMul with Wᵀ (+ b) on [batch, *, F]."""
        weight = g.initializer(f"{name}.weight", params["weight"])
        bias = g.initializer(f"{name}.bias", params["bias"]) if "bias" in params else None
        if types[0].rank == 1:
            return g.node("Gemm", [inputs[0], weight, *([bias] if bias else [])], transB=1)
        y = g.node("MatMul", [inputs[0], g.node("Transpose", [weight], perm=[1, 0])])
        return g.node("Add", [y, bias]) if bias else y

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        (x,) = inputs
        y = x @ params["weight"].T
        return y + params["bias"] if self.bias else y


@register
class Embedding(Op):
    """Lookup table of learned vectors, one row per token id (torch.nn.Embedding).

    y[..., :] = W[x[...], :]; ids must lie in [0, num) (checked when data arrives).
    With `padding_idx` p, row W[p] starts at zero and receives no gradient.

    Shape: int[*] -> [*, dim], e.g. int[T] -> [T, dim]; the input must be int64 ids.
    Params: weight [num, dim]: num·dim.
    MACs: 0 (a lookup copies rows; nothing is multiplied).
    """

    kind: ClassVar[str] = "embedding"
    family: ClassVar[str] = "linear"
    positional: ClassVar[tuple[str, ...]] = ("num", "dim")
    samples = (
        sample({"num": 10, "dim": 4}, (6,), ids=True),
        sample({"num": 10, "dim": 4, "padding_idx": 0}, (2, 3), ids=True),
        sample({"num": 10, "dim": 4, "padding_idx": -1}, (5,), ids=True,
               note="negative padding_idx counts from the end"),
    )
    bad_samples = (
        BadSample(call="embedding(10, 4)", inputs=((6,),), code="E2109"),
        BadSample(call="embedding(0, 4)", inputs=((6,),), code="E1007"),
    )

    num: int = Field(gt=0)
    dim: int = Field(gt=0)
    padding_idx: int | None = None

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        if x.dtype != "int64":
            raise ShapeError(
                codes.DTYPE,
                f"embedding expects integer ids, got {x}",
                notes=[
                    f"input {x} has dtype {x.dtype}; embedding reads rows W[id] of [{self.num}, "
                    f"{self.dim}]"
                ],
                help="declare the input as ids, e.g. `input x: int[...]`; for float features "
                "use `linear`",
            )
        p = self.padding_idx
        if p is not None and not -self.num <= p < self.num:
            raise ShapeError(
                codes.BAD_ARG,
                f"padding_idx ({p}) is outside the table of {self.num} rows",
                notes=[f"padding_idx must lie in [-{self.num}, {self.num})"],
                help=f"use an id below {self.num}, e.g. padding_idx=0",
                arg="padding_idx",
            )
        return TensorType(shape=(*x.shape, self.dim))

    def param_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.num, self.dim)}

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        return TorchCall("nn.Embedding", {
            "num_embeddings": self.num, "embedding_dim": self.dim, "padding_idx": self.padding_idx,
        })

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX Gather(W, ids, axis=0); padding_idx only matters for training."""
        return g.node("Gather", [g.initializer(f"{name}.weight", params["weight"]), inputs[0]],
                      axis=0)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """Row lookup; padding_idx changes only training (its row is used as it stands)."""
        (ids,) = inputs
        return params["weight"][ids]
