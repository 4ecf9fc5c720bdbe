"""Normalisations: batchnorm, layernorm, instancenorm, groupnorm, rmsnorm.

Every op here keeps its own initialisation (γ = 1, β = 0) under a recipe's `init` schemes
(`keeps_own_init`).

The first four compute x̂ = (x - μ) / √(σ² + ε) over their own set of elements (σ² biased,
divisor n), then y = γ·x̂ + β when `affine`. They differ only in which elements share μ and
σ². rmsnorm does not centre: y = γ ⊙ x / √(mean(x²) + ε) over the last axis.

MACs convention (the same for all five): one multiply-add per element, numel in total, with
γ, β and the statistics folded into y = s·x + t (rmsnorm: y = s·x); computing μ, σ² or the
mean square is not counted, and an `affine` layer costs the same as a plain one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field

from .. import codes
from ..ir import TensorType
from .arith import check_divisible, expect_rank
from .base import BadSample, Op, ShapeError, TorchCall, register, sample

if TYPE_CHECKING:
    import numpy as np

    from .base import OnnxGraph


class _Norm(Op):
    """Shared by normalisations: eps, affine γ/β per channel, numel MACs, shape kept."""

    family: ClassVar[str] = "norm"
    keeps_own_init: ClassVar[bool] = True
    ranks: ClassVar[tuple[int, ...]] = (2, 3)
    layouts: ClassVar[str] = "[C, L] or [C, H, W]"

    eps: float = Field(default=1e-5, gt=0)
    affine: bool = True

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_rank(x.rank, self.ranks, self.kind, self.layouts)
        return x

    def param_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        c = inputs[0].shape[0]
        return {"weight": (c,), "bias": (c,)} if self.affine else {}

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        return inputs[0].numel

    def _affine(self, g: OnnxGraph, name: str, params: dict[str, np.ndarray],
                shape: tuple[int, ...]) -> tuple[str, str]:
        """γ and β as initializers, or constants 1 and 0 when not `affine` (ONNX needs them)."""
        import numpy as np
        if "weight" in params:
            return (g.initializer(f"{name}.weight", params["weight"]),
                    g.initializer(f"{name}.bias", params["bias"]))
        return (g.constant(np.ones(shape, np.float32)), g.constant(np.zeros(shape, np.float32)))

    def _normalise(self, x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        """x̂ = (x - μ) / √(σ² + ε), μ and σ² (biased: divisor n) over ``axes``."""
        import numpy as np
        mean = x.mean(axis=axes, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps)

    def _per_channel(self, y: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        """y·γ_c + β_c with γ, β on the channel axis (axis 1, after the batch), when affine."""
        import numpy as np
        if not self.affine:
            return y
        shape = (1, -1) + (1,) * (y.ndim - 2)
        return y * np.reshape(params["weight"], shape) + np.reshape(params["bias"], shape)


@register
class BatchNorm(_Norm):
    """Batch normalisation (Ioffe & Szegedy 2015); 1-d on [C] or [C, L], 2-d on [C, H, W].

    train: μ_c, σ²_c = mean and biased variance of channel c over the batch and every
    position (N·L or N·H·W values); y = γ_c·(x - μ_c) / √(σ²_c + ε) + β_c;
    running ← (1 - momentum)·running + momentum·batch (running_var takes the unbiased σ²).
    eval: μ_c, σ²_c = running_mean[c], running_var[c]: a fixed per-channel affine map.

    Shape: [C] / [C, L] / [C, H, W], unchanged (the rank picks BatchNorm1d or BatchNorm2d).
    Params: weight γ [C], bias β [C] (when affine): 2C.
    Buffers: running_mean [C], running_var [C], num_batches_tracked [] (torch's state_dict).
    MACs: numel (see the module docstring).
    """

    kind: ClassVar[str] = "batchnorm"
    ranks: ClassVar[tuple[int, ...]] = (1, 2, 3)
    layouts: ClassVar[str] = "[C], [C, L] or [C, H, W]"

    momentum: float = Field(default=0.1, ge=0, le=1)

    samples = (
        sample({}, (6,), note="BatchNorm1d on [C]"),
        sample({}, (4, 10), note="BatchNorm1d on [C, L]"),
        sample({"eps": 1e-3, "momentum": 0.01}, (3, 5, 5), note="BatchNorm2d"),
        sample({"affine": False}, (3, 5, 5), note="ONNX: constant scale 1 and bias 0"),
        sample({"affine": False}, (6,), note="ONNX: constant scale and bias on a rank-1 input"),
    )
    bad_samples = (
        BadSample(call="batchnorm", inputs=((2, 6, 8, 8),), code=codes.RANK),
        BadSample(call="batchnorm(eps=0)", inputs=((6, 8, 8),), code=codes.BAD_ARG),
        BadSample(call="batchnorm(momentum=2)", inputs=((6, 8, 8),), code=codes.BAD_ARG),
    )

    def buffer_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        c = inputs[0].shape[0]
        return {"running_mean": (c,), "running_var": (c,), "num_batches_tracked": ()}

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        (x,) = inputs
        return TorchCall(f"nn.BatchNorm{max(x.rank - 1, 1)}d", {
            "num_features": x.shape[0], "eps": self.eps, "momentum": self.momentum,
            "affine": self.affine,
        })

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX BatchNormalization in inference mode (training_mode=0): the running statistics.
        ONNX's momentum weighs the old value (running·m + batch·(1 - m)): torch's 1 - momentum."""
        scale, bias = self._affine(g, name, params, (types[0].shape[0],))
        mean = g.initializer(f"{name}.running_mean", params["running_mean"])
        var = g.initializer(f"{name}.running_var", params["running_var"])
        return g.node("BatchNormalization", [inputs[0], scale, bias, mean, var],
                      epsilon=self.eps, momentum=1.0 - self.momentum)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """Eval: y = γ_c·(x - running_mean_c) / √(running_var_c + ε) + β_c."""
        import numpy as np
        x = np.asarray(inputs[0], np.float64)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean = np.reshape(params["running_mean"], shape)
        var = np.reshape(params["running_var"], shape)
        return self._per_channel((x - mean) / np.sqrt(var + self.eps), params)


@register
class LayerNorm(_Norm):
    """Layer normalisation (Ba et al. 2016): per sample, over its last `dims` axes, or per
    position over the channel axis (`dims=channels`, ConvNeXt's LayerNorm2d).

    μ, σ² = mean and biased variance of each sample over the last `dims` axes (all its
    features for `dims=all`, the default); y = γ ⊙ (x - μ) / √(σ² + ε) + β, the same in
    train and eval (no running statistics). On a [C, H, W] map the default normalises all
    C·H·W values together, not each position's C values: lint warns (W0003) when `dims` is
    left out there, and `dims=all` says it on purpose.
    `dims=channels` on [C, *spatial] (rank 2 or more): μ_p, σ²_p = mean and biased variance
    of the C values x[:, p] at each position p; y[c, p] = γ_c·(x[c, p] - μ_p) / √(σ²_p + ε)
    + β_c (torchvision's LayerNorm2d: the channel axis moved last, then LayerNorm over it).

    Shape: [*] unchanged; normalised shape = the last `dims` axes of the input, or [C] with
    `dims=channels` (which needs rank >= 2).
    Params: weight γ, bias β (when affine), each of the normalised shape ([C] for channels).
    MACs: numel (see the module docstring).
    """

    kind: ClassVar[str] = "layernorm"
    positional: ClassVar[tuple[str, ...]] = ("dims",)
    shown_defaults: ClassVar[dict[str, str]] = {"dims": "all"}

    # None: left out (every feature, and lint warns on a [C, H, W] map); "all": said so;
    # "channels": each position's C values (LayerNorm2d)
    dims: Annotated[int, Field(gt=0)] | Literal["all", "channels"] | None = None

    samples = (
        sample({}, (3, 4, 4), note="every feature of the sample"),
        sample({"dims": 1, "eps": 1e-6}, (5, 8), note="last axis only"),
        sample({"dims": 2, "affine": False}, (3, 4, 4), note="ONNX: constant scale and bias"),
        sample({"affine": False}, (7,)),
        sample({"dims": "all"}, (2, 3, 4), note="every feature, said explicitly"),
        sample({"dims": "channels", "eps": 1e-6}, (4, 3, 5),
               note="LayerNorm2d: ONNX Transpose, LayerNormalization over C, Transpose"),
        sample({"dims": "channels"}, (3, 6), note="per position of [C, L]"),
        sample({"dims": "channels", "affine": False}, (5, 2, 3),
               note="ONNX: constant scale and bias of shape [C]"),
        sample({"dims": "channels"}, (3, 2, 2, 3), note="per position of [C, D, H, W]"),
    )
    bad_samples = (
        BadSample(call="layernorm(4)", inputs=((6, 8, 8),), code=codes.BAD_ARG),
        BadSample(call="layernorm(eps=-1)", inputs=((6, 8, 8),), code=codes.BAD_ARG),
        BadSample(call="layernorm(dims=al)", inputs=((6, 8, 8),), code=codes.BAD_ARG),
        BadSample(call="layernorm(0)", inputs=((6, 8, 8),), code=codes.BAD_ARG),
        BadSample(call="layernorm(dims=channels)", inputs=((8,),), code=codes.RANK),
        BadSample(call="layernorm(dims=channel)", inputs=((6, 8, 8),), code=codes.BAD_ARG),
    )

    def normalized_shape(self, x: TensorType) -> tuple[int, ...]:
        """The axes normalised together: the trailing ones (torch's `normalized_shape`), or
        the channel axis alone ([C]) for `dims=channels`."""
        if self.dims == "channels":
            return x.shape[:1]
        return x.shape if not isinstance(self.dims, int) else x.shape[x.rank - self.dims :]

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        if x.rank < 1:
            raise ShapeError(
                codes.RANK,
                f"layernorm expects an input of rank at least 1 ([F] or [*, F]), got rank {x.rank}",
                help="the batch dimension is implicit; there are no features to normalise",
            )
        if self.dims == "channels" and x.rank < 2:
            raise ShapeError(
                codes.RANK,
                f"layernorm(dims=channels) normalises the C channel values at each position of "
                f"a [C, *spatial] map (rank 2 or more), got {x} of rank {x.rank}",
                notes=[f"{x} has one axis: no positions, so no per-position channel values"],
                help=f"use `layernorm` to normalise the {x.shape[0]} features together "
                     "(`layernorm(dims=all)`)",
                arg="dims",
            )
        if isinstance(self.dims, int) and self.dims > x.rank:
            raise ShapeError(
                codes.BAD_ARG,
                f"layernorm over the last {self.dims} axes needs rank {self.dims} or more, "
                f"got {x} of rank {x.rank}",
                help=f"use dims between 1 and {x.rank}, or `dims=all` to normalise all features",
                arg="dims",
            )
        return x

    def param_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        shape = self.normalized_shape(inputs[0])
        return {"weight": shape, "bias": shape} if self.affine else {}

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        if self.dims == "channels":
            return TorchCall("ChannelLayerNorm", {
                "channels": inputs[0].shape[0], "eps": self.eps, "affine": self.affine,
            })
        return TorchCall("nn.LayerNorm", {
            "normalized_shape": self.normalized_shape(inputs[0]), "eps": self.eps,
            "elementwise_affine": self.affine,
        })

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX LayerNormalization (opset 17) over the axes from -len(normalized shape) on;
        `dims=channels`: Transpose the channel axis last, LayerNormalization(axis=-1) with γ,
        β of shape [C], Transpose back (perm [0, 2, ..., r, 1], then [0, r, 1, ..., r - 1])."""
        shape = self.normalized_shape(types[0])
        scale, bias = self._affine(g, name, params, shape)
        if self.dims != "channels":
            return g.node("LayerNormalization", [inputs[0], scale, bias], axis=-len(shape),
                          epsilon=self.eps)
        r = types[0].rank  # the last axis of [N, C, *spatial] is r
        last = g.node("Transpose", [inputs[0]], perm=[0, *range(2, r + 1), 1])
        y = g.node("LayerNormalization", [last, scale, bias], axis=-1, epsilon=self.eps)
        return g.node("Transpose", [y], perm=[0, r, *range(1, r)])

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """y = γ ⊙ (x - μ) / √(σ² + ε) + β, μ and σ² per sample over the last `dims` axes;
        `dims=channels`: μ, σ² over the channel axis (axis 1) at each position, γ_c, β_c."""
        import numpy as np
        x = np.asarray(inputs[0], np.float64)
        if self.dims == "channels":
            return self._per_channel(self._normalise(x, (1,)), params)
        dims = x.ndim - 1 if not isinstance(self.dims, int) else self.dims
        y = self._normalise(x, tuple(range(x.ndim - dims, x.ndim)))
        return y * params["weight"] + params["bias"] if self.affine else y


@register
class InstanceNorm(_Norm):
    """Instance normalisation (Ulyanov et al. 2016): per sample and channel.

    μ_nc, σ²_nc = mean and biased variance of channel c of sample n over its positions
    (L or H·W values); y = γ_c·(x - μ_nc) / √(σ²_nc + ε) + β_c, the same in train and eval.

    Shape: [C, L] or [C, H, W], unchanged.
    Params: weight γ [C], bias β [C] when affine (default off, as torch); no buffers.
    MACs: numel (see the module docstring).
    """

    kind: ClassVar[str] = "instancenorm"

    affine: bool = False

    samples = (
        sample({}, (3, 10), note="InstanceNorm1d; ONNX: constant scale and bias"),
        sample({"affine": True}, (3, 5, 5), note="InstanceNorm2d"),
        sample({"affine": True}, (3, 9), note="InstanceNorm1d with γ, β"),
    )
    bad_samples = (
        BadSample(call="instancenorm", inputs=((6,),), code=codes.RANK),
        BadSample(call="instancenorm(eps=0)", inputs=((3, 10),), code=codes.BAD_ARG),
    )

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        (x,) = inputs
        return TorchCall(f"nn.InstanceNorm{x.rank - 1}d", {
            "num_features": x.shape[0], "eps": self.eps, "affine": self.affine,
        })

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX InstanceNormalization (its scale and B are required: 1 and 0 when not affine)."""
        scale, bias = self._affine(g, name, params, (types[0].shape[0],))
        return g.node("InstanceNormalization", [inputs[0], scale, bias], epsilon=self.eps)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """y = γ_c·(x - μ_nc) / √(σ²_nc + ε) + β_c, μ and σ² over each channel's positions."""
        import numpy as np
        x = np.asarray(inputs[0], np.float64)
        return self._per_channel(self._normalise(x, tuple(range(2, x.ndim))), params)


@register
class GroupNorm(_Norm):
    """Group normalisation (Wu & He 2018): per sample, over groups of C / G channels.

    μ_ng, σ²_ng = mean and biased variance of sample n over the (C / G)·L or (C / G)·H·W
    values of group g; y = γ_c·(x - μ_ng) / √(σ²_ng + ε) + β_c with γ, β per channel
    (torch, and ONNX GroupNormalization from opset 21; opset 18 had them per group).
    G = 1 is layernorm over all features with per-channel γ; G = C is instancenorm.

    Shape: [C], [C, L] or [C, H, W], unchanged; C divisible by groups.
    Params: weight γ [C], bias β [C] (when affine): 2C.
    MACs: numel (see the module docstring).
    """

    kind: ClassVar[str] = "groupnorm"
    positional: ClassVar[tuple[str, ...]] = ("groups",)
    ranks: ClassVar[tuple[int, ...]] = (1, 2, 3)
    layouts: ClassVar[str] = "[C], [C, L] or [C, H, W]"

    groups: int = Field(gt=0)

    samples = (
        sample({"groups": 2}, (4, 5, 5)),
        sample({"groups": 3}, (6, 10)),
        sample({"groups": 2}, (4,), note="[C]: groups of C / G single values"),
        sample({"groups": 1, "affine": False}, (4, 3, 3),
               note="one group; ONNX: constant scale and bias"),
    )
    bad_samples = (
        BadSample(call="groupnorm(4)", inputs=((6, 8, 8),), code=codes.DIVISIBLE),
        BadSample(call="groupnorm(2)", inputs=((2, 6, 8, 8),), code=codes.RANK),
    )

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        x = super().infer(inputs)
        check_divisible(x.shape[0], self.groups, "channels", "groups", arg="groups")
        return x

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        return TorchCall("nn.GroupNorm", {
            "num_groups": self.groups, "num_channels": inputs[0].shape[0], "eps": self.eps,
            "affine": self.affine,
        })

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX GroupNormalization of opset 21: scale and bias per channel, as torch (opset 18
        had them per group)."""
        scale, bias = self._affine(g, name, params, (types[0].shape[0],))
        y = g.node("GroupNormalization", [inputs[0], scale, bias], num_groups=self.groups,
                   epsilon=self.eps)
        return g.declare(y, types[0].dtype, types[0].shape)  # onnx 1.23 cannot infer it

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """y = γ_c·(x - μ_ng) / √(σ²_ng + ε) + β_c, μ and σ² over each group's C / G channels."""
        import numpy as np
        x = np.asarray(inputs[0], np.float64)
        grouped = x.reshape(x.shape[0], self.groups, -1)
        y = self._normalise(grouped, (2,)).reshape(x.shape)
        return self._per_channel(y, params)


@register
class RMSNorm(Op):
    """Root-mean-square normalisation (Zhang & Sennrich 2019): per position, over the last axis.

    r = √(mean_d(x_d²) + ε) over the D values of the last axis; y = γ ⊙ x / r. No centring
    and no bias (torch.nn.RMSNorm); the same in train and eval.

    Shape: [*, D] unchanged (rank 1 or more); normalised shape = [D], the last axis.
    Params: weight γ [D] (when affine): D.
    MACs: numel (see the module docstring).
    """

    kind: ClassVar[str] = "rmsnorm"
    family: ClassVar[str] = "norm"
    keeps_own_init: ClassVar[bool] = True

    eps: float = Field(default=1e-6, gt=0)
    affine: bool = True

    samples = (
        sample({}, (8,), note="[D]"),
        sample({"eps": 1e-5}, (5, 8), note="tokens [T, D]"),
        sample({}, (3, 4, 6), note="the last axis of a rank-3 input"),
        sample({"affine": False}, (4, 6), note="ONNX: no Mul by γ"),
    )
    bad_samples = (
        BadSample(call="rmsnorm(eps=0)", inputs=((4, 8),), code=codes.BAD_ARG),
        BadSample(call="rmsnorm(eps=-1e-6)", inputs=((4, 8),), code=codes.BAD_ARG),
        BadSample(call="rmsnorm(affine=1)", inputs=((4, 8),), code=codes.BAD_ARG),
    )

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        if x.rank < 1:
            raise ShapeError(
                codes.RANK,
                f"rmsnorm expects an input of rank at least 1 ([D] or [*, D]), got rank {x.rank}",
                help="the batch dimension is implicit; there is no axis to normalise",
            )
        return x

    def param_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        return {"weight": (inputs[0].shape[-1],)} if self.affine else {}

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        return inputs[0].numel

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        return TorchCall("nn.RMSNorm", {
            "normalized_shape": (inputs[0].shape[-1],), "eps": self.eps,
            "elementwise_affine": self.affine,
        })

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """Decomposed (RMSNormalization is opset 23; the project's opset is 21):
        Mul(x, x) -> ReduceMean(axes=[-1], keepdims) -> Add ε -> Sqrt -> Div -> Mul γ."""
        import numpy as np
        x = inputs[0]
        square = g.node("Mul", [x, x])
        mean = g.node("ReduceMean", [square, g.ints([-1])], keepdims=1)
        shifted = g.node("Add", [mean, g.constant(np.array(self.eps, np.float32))])
        y = g.node("Div", [x, g.node("Sqrt", [shifted])])
        if self.affine:
            y = g.node("Mul", [y, g.initializer(f"{name}.weight", params["weight"])])
        return y

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """y = γ ⊙ x / √(mean(x²) + ε), the mean over the last axis."""
        import numpy as np
        x = np.asarray(inputs[0], np.float64)
        y = x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + self.eps)
        return y * params["weight"] if self.affine else y
