"""Regularisation layers: dropout (elements), dropout2d (whole channels) and drop_path
(whole samples: stochastic depth).

All are inverted dropout: kept values are scaled by 1 / (1 - p) during training, so the
expected activation is unchanged and evaluation is the identity (nothing to rescale).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from ..ir import TensorType
from .arith import expect_rank
from .base import BadSample, Op, TorchCall, register, sample

if TYPE_CHECKING:
    import numpy as np

    from .base import OnnxGraph


@register
class Dropout(Op):
    """Dropout (Srivastava et al. 2014), inverted scaling.

    train: y = m ⊙ x / (1 - p), m_i ~ Bernoulli(1 - p) drawn per element and sample.
    eval: y = x.

    Shape: [*] -> [*], unchanged; 0 <= p < 1.
    Params: none.
    MACs: 0 (only linear maps and normalisations are counted).
    """

    kind: ClassVar[str] = "dropout"
    family: ClassVar[str] = "regularization"
    positional: ClassVar[tuple[str, ...]] = ("p",)
    torch_cls: ClassVar[str] = "nn.Dropout"
    samples = (sample({"p": 0.3}, (10,)), sample({}, (3, 4, 4)))
    bad_samples = (
        BadSample(call="dropout(1.0)", inputs=((10,),), code="E1007"),
        BadSample(call="dropout(-0.1)", inputs=((10,),), code="E1007"),
    )

    p: float = Field(default=0.5, ge=0, lt=1)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        return x

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        return TorchCall(self.torch_cls, {"p": self.p})

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """Eval semantics: the identity, no node at all."""
        return inputs[0]

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """Eval mode: y = x (inverted dropout rescales only while training)."""
        (x,) = inputs
        return x.copy()


@register
class Dropout2d(Dropout):
    """Channel dropout (Tompson et al. 2015): zeroes whole feature maps, inverted scaling.

    train: y[c] = m_c · x[c] / (1 - p), m_c ~ Bernoulli(1 - p) per sample and channel.
    eval: y = x. Neighbouring pixels are correlated, so dropping pixels alone hardly
    regularises a conv net; dropping channels does.

    Shape: [C, H, W] -> [C, H, W]; 0 <= p < 1.
    Params: none.
    MACs: 0 (only linear maps and normalisations are counted).
    """

    kind: ClassVar[str] = "dropout2d"
    torch_cls: ClassVar[str] = "nn.Dropout2d"
    samples = (sample({"p": 0.2}, (3, 4, 4)),)
    bad_samples = (
        BadSample(call="dropout2d", inputs=((3, 8),), code="E2103"),
        BadSample(call="dropout2d(1.5)", inputs=((3, 8, 8),), code="E1007"),
    )

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_rank(x.rank, (3,), self.kind, "[C, H, W]")
        return x


@register
class DropPath(Dropout):
    """Stochastic depth (Huang et al. 2016), per sample: torchvision's StochasticDepth(p,
    mode="row"), put on a residual branch (`x + (x -> ... -> drop_path(0.1))`).

    train: y = m · x / (1 - p), m ~ Bernoulli(1 - p) drawn once per sample: each sample's
    whole tensor is kept (scaled) or zeroed. eval: y = x (ONNX: no node). p = 0: y = x.

    Shape: [*] -> [*], unchanged; 0 <= p < 1 (p is required, as in torchvision).
    Params: none.
    MACs: 0 (only linear maps and normalisations are counted).
    """

    kind: ClassVar[str] = "drop_path"
    torch_cls: ClassVar[str] = "DropPath"
    samples = (
        sample({"p": 0.2}, (3, 4, 4), note="a [C, H, W] branch"),
        sample({"p": 0.5}, (5, 8), note="tokens [T, D]"),
        sample({"p": 0.0}, (6,), note="p = 0: the identity in training too"),
    )
    bad_samples = (
        BadSample(call="drop_path", inputs=((3, 8, 8),), code="E1005"),
        BadSample(call="drop_path(1.0)", inputs=((3, 8, 8),), code="E1007"),
        BadSample(call="drop_path(-0.1)", inputs=((10,),), code="E1007"),
    )

    p: float = Field(ge=0, lt=1)
