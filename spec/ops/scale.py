"""Learnable scales: layer_scale (a per-channel multiplier on a residual branch).

An op here keeps its own constant initialisation under a recipe's `init` schemes
(`keeps_own_init`): a layer scale starts small on purpose, so that each residual block starts
near the identity, and no fan-in scheme applies to a vector of multipliers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from .. import codes
from ..ir import TensorType
from .axes import Axis, resolve_axis
from .base import BadSample, Op, ShapeError, TorchCall, register, sample

if TYPE_CHECKING:
    import numpy as np

    from .base import OnnxGraph


@register
class LayerScale(Op):
    """Layer scale (Touvron et al. 2021, CaiT; ConvNeXt): y = γ ⊙ x, γ learnable per channel.

    γ has the size of axis `axis` (default 0 = channels; `axis=-1` for the D features of a
    [L, D] token sequence) and is broadcast over the axes after it and before it; it starts
    at the constant `init` (1e-6 by default, as ConvNeXt), whatever the recipe's `init` says.

    Shape: [*] unchanged (rank 1 or more).
    Params: scale γ of shape (size of `axis`, 1, ..., 1), one 1 per axis after `axis`:
    [C, 1, 1] on [C, H, W] (torchvision's CNBlock.layer_scale), [D] on [L, D] with axis=-1.
    MACs: numel (one multiply per element).
    """

    kind: ClassVar[str] = "layer_scale"
    family: ClassVar[str] = "scale"
    positional: ClassVar[tuple[str, ...]] = ("init",)
    keeps_own_init: ClassVar[bool] = True

    init: float = Field(default=1e-6, allow_inf_nan=False)
    axis: Axis = 0

    samples = (
        sample({}, (4, 3, 3), note="[C, H, W]: γ [C, 1, 1]"),
        sample({"init": 0.5, "axis": -1}, (5, 6), note="tokens [L, D]: γ [D]"),
        sample({"init": 0.1}, (3, 7), note="[C, L]: γ [C, 1]"),
        sample({"axis": "height"}, (2, 3, 4), note="a named axis: γ [H, 1]"),
        sample({"init": 2.0}, (6,), note="a vector: γ [F]"),
    )
    bad_samples = (
        BadSample(call="layer_scale(axis=3)", inputs=((4, 8, 8),), code=codes.ARGUMENT_SHAPE),
        BadSample(call="layer_scale(axis=width)", inputs=((4, 8),), code=codes.ARGUMENT_SHAPE),
        BadSample(call="layer_scale(init=true)", inputs=((4, 8, 8),), code=codes.BAD_ARG),
        BadSample(call="layer_scale(1e-6, 0)", inputs=((4, 8, 8),), code=codes.TOO_MANY_ARGS),
    )

    def _axis(self, x: TensorType) -> int:
        try:
            return resolve_axis(self.axis, x.rank, self.kind, "axis")
        except ShapeError as exc:
            if exc.help is None:  # an axis number out of range: say what the two usual mean
                first = ", ".join([str(x.shape[0])] + ["1"] * (x.rank - 1))
                exc.help = (f"axis=0 scales the {x.shape[0]} channels (scale [{first}]); "
                            f"axis=-1 the {x.shape[-1]} values of the last axis (scale "
                            f"[{x.shape[-1]}])")
            raise

    def scale_shape(self, x: TensorType) -> tuple[int, ...]:
        """(size of axis, 1, ..., 1): one 1 for each axis after `axis`."""
        a = self._axis(x)
        return (x.shape[a],) + (1,) * (x.rank - a - 1)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        if x.rank < 1:
            raise ShapeError(
                codes.RANK,
                f"layer_scale expects an input of rank at least 1 ([C] or [C, *]), got rank "
                f"{x.rank}",
                help="the batch dimension is implicit; there is no axis to scale",
            )
        self._axis(x)
        return x

    def param_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        return {"scale": self.scale_shape(inputs[0])}

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        """numel: one multiply per element."""
        return inputs[0].numel

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        return TorchCall("LayerScale", {"shape": self.scale_shape(inputs[0]), "init": self.init})

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """Mul(x, scale): the initializer (size of axis, 1, ..., 1) broadcasts from the right,
        over the batch axis and the axes before `axis`."""
        return g.node("Mul", [inputs[0], g.initializer(f"{name}.scale", params["scale"])])

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """y[b, ..., i, ...] = γ_i · x[b, ..., i, ...], i the index along `axis`."""
        import numpy as np
        x = np.asarray(inputs[0], np.float64)
        a = self._axis(TensorType(shape=x.shape[1:]))
        gamma = np.asarray(params["scale"], np.float64).reshape(-1)
        shape = [1] * x.ndim
        shape[a + 1] = gamma.size
        return x * gamma.reshape(shape)
