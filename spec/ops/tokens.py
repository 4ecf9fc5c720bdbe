"""Token ops: images to token sequences and back to one vector (Vision Transformers).

A token sequence is [L, D]: L tokens (axis 0) of D features (axis 1). `patchify` makes one
from an image (ViT's conv stem), `class_token` prepends a learned token, `position_embedding`
and `sinusoidal_position` add position information, `token_mean` and `take` reduce the
sequence to one [D] vector for a head.

MACs: patchify counts its convolution (dim·C·p² per token); token_mean one add per element
(as average pooling); the others 0 (copies and additions).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from .. import codes
from ..ir import TensorType
from .arith import divisors, expect_rank
from .attention import expect_tokens
from .base import GLOBAL, BadSample, Op, ShapeError, TorchCall, WindowStep, register, sample
from .linear import expect_float

if TYPE_CHECKING:
    import numpy as np

    from .base import OnnxGraph


def sinusoid_table(length: int, dim: int) -> np.ndarray:
    """Vaswani et al.'s table [length, dim] in float64: PE[t, 2i] = sin(t / 10000^(2i/D)),
    PE[t, 2i + 1] = cos(t / 10000^(2i/D)), for t < length and 2i, 2i + 1 < D."""
    import numpy as np
    t = np.arange(length, dtype=np.float64)[:, None]
    even = np.arange(0, dim, 2, dtype=np.float64)  # 2i
    angle = t / 10000.0 ** (even / dim)
    table = np.zeros((length, dim))
    table[:, 0::2] = np.sin(angle)
    table[:, 1::2] = np.cos(angle[:, : dim // 2])
    return table


class _Tokens(Op):
    """Shared by the ops on a sequence [L, D]."""

    family: ClassVar[str] = "tokens"

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_tokens(self.kind, x)
        return x


@register
class Patchify(Op):
    """ViT's patch embedding (torchvision VisionTransformer.conv_proj + _process_input):
    a p×p convolution of stride p, its [dim, H/p, W/p] map flattened to tokens in row-major
    order (token r·(W/p) + c is the patch at row r, column c):

        y[r·(W/p) + c, o] = b[o] + Σ_{k, i, j} W[o, k, i, j] · x[k, r·p + i, c·p + j]

    Shape: [C, H, W] -> [(H/p)·(W/p), dim]; H and W divisible by p.
    Params: weight [dim, C, p, p], bias [dim] (when bias): (C·p² + 1)·dim, as nn.Conv2d.
    MACs: (H/p)·(W/p) · dim · C·p².
    """

    kind: ClassVar[str] = "patchify"
    family: ClassVar[str] = "tokens"
    positional: ClassVar[tuple[str, ...]] = ("p", "dim")

    p: int = Field(gt=0)
    dim: int = Field(gt=0)
    bias: bool = True

    samples = (
        sample({"p": 2, "dim": 5}, (3, 4, 6), note="2×3 patches, row-major tokens"),
        sample({"p": 3, "dim": 4, "bias": False}, (2, 3, 3), note="one patch, no bias"),
        sample({"p": 1, "dim": 3}, (2, 2, 3), note="p = 1: a 1×1 conv per pixel"),
    )
    bad_samples = (
        BadSample(call="patchify(3, 8)", inputs=((3, 8, 9),), code=codes.DIVISIBLE),
        BadSample(call="patchify(4, 8)", inputs=((3, 8, 6),), code=codes.DIVISIBLE),
        BadSample(call="patchify(2, 8)", inputs=((3, 8),), code=codes.RANK),
        BadSample(call="patchify(0, 8)", inputs=((3, 8, 8),), code=codes.BAD_ARG),
    )

    def grid(self, x: TensorType) -> tuple[int, int]:
        expect_rank(x.rank, (3,), self.kind, "[C, H, W]")
        expect_float(x, self.kind)
        _, h, w = x.shape
        for axis, size in (("height", h), ("width", w)):
            if size % self.p:
                common = [d for d in divisors(math.gcd(h, w)) if d > 1]
                raise ShapeError(
                    codes.DIVISIBLE,
                    f"the {axis} ({size}) is not divisible by the patch size p ({self.p})",
                    notes=[f"tokens along the {axis}: {size} / {self.p} = {size / self.p:.2f}"],
                    help=(f"use a patch size dividing both {h} and {w}: "
                          f"{', '.join(str(d) for d in common[:8])}" if common else
                          f"{h} and {w} have no common divisor above 1: resize or crop the "
                          f"image (`center_crop`, `pad`) to multiples of {self.p}"),
                    arg="p",
                )
        return h // self.p, w // self.p

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        rows, cols = self.grid(inputs[0])
        return TensorType(shape=(rows * cols, self.dim))

    def param_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        c = inputs[0].shape[0]
        shapes: dict[str, tuple[int, ...]] = {"weight": (self.dim, c, self.p, self.p)}
        if self.bias:
            shapes["bias"] = (self.dim,)
        return shapes

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        return output.shape[0] * self.dim * inputs[0].shape[0] * self.p * self.p

    def receptive_step(self, inputs: Sequence[TensorType]) -> WindowStep:
        return WindowStep(window=(self.p, self.p), stride=(self.p, self.p))

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        self.grid(inputs[0])
        return TorchCall("Patchify", {"in_channels": inputs[0].shape[0], "dim": self.dim,
                                      "patch": self.p, "bias": self.bias})

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """Cut [B, C, H, W] into [B, H/p, W/p, C·p·p] patches, multiply by W as [dim, C·p²]."""
        (x,) = inputs
        b, c, h, w = x.shape
        p = self.p
        patches = x.reshape(b, c, h // p, p, w // p, p).transpose(0, 2, 4, 1, 3, 5)
        y = patches.reshape(b, (h // p) * (w // p), c * p * p) @ params["weight"].reshape(
            self.dim, -1).T
        return y + params["bias"] if self.bias else y

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX Conv (kernel p, stride p) -> Reshape [0, dim, L] -> Transpose [0, 2, 1]."""
        rows, cols = self.grid(types[0])
        conv_inputs = [inputs[0], g.initializer(f"{name}.weight", params["weight"])]
        if self.bias:
            conv_inputs.append(g.initializer(f"{name}.bias", params["bias"]))
        y = g.node("Conv", conv_inputs, kernel_shape=[self.p, self.p], strides=[self.p, self.p])
        return g.node("Transpose", [g.reshape(y, [0, self.dim, rows * cols])], perm=[0, 2, 1])


@register
class ClassToken(_Tokens):
    """Prepend a learned token (ViT's [class] token, torchvision's class_token):
    y[0] = token, y[t + 1] = x[t].

    Shape: [L, D] -> [L + 1, D].
    Params: token [1, 1, D] (torchvision's shape; zeros at initialisation, as torchvision).
    MACs: 0 (a copy).
    """

    kind: ClassVar[str] = "class_token"

    samples = (
        sample({}, (4, 6)),
        sample({}, (1, 3), note="a one-token sequence"),
    )
    bad_samples = (
        BadSample(call="class_token", inputs=((6,),), code=codes.RANK),
        BadSample(call="class_token", inputs=((3, 4, 4),), code=codes.RANK),
    )

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        x = super().infer(inputs)
        return TensorType(shape=(x.shape[0] + 1, x.shape[1]))

    def param_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        return {"token": (1, 1, inputs[0].shape[1])}

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        super().infer(inputs)
        return TorchCall("ClassToken", {"dim": inputs[0].shape[1]})

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        import numpy as np
        (x,) = inputs
        token = np.broadcast_to(params["token"], (x.shape[0], 1, x.shape[2]))
        return np.concatenate([token, x], axis=1)

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """Expand the token [1, 1, D] to [B, 1, D] (B read by Shape from x), Concat on axis 1.
        onnx cannot infer Expand's batch from a computed shape: its type is declared."""
        d = types[0].shape[1]
        token = g.initializer(f"{name}.token", params["token"])
        batch = g.node("Shape", [inputs[0]], start=0, end=1)
        shape = g.node("Concat", [batch, g.ints([1, d])], axis=0)
        expanded = g.declare(g.node("Expand", [token, shape]), types[0].dtype, (1, d))
        return g.node("Concat", [expanded, inputs[0]], axis=1)


@register
class PositionEmbedding(_Tokens):
    """Add a learned position table (ViT's pos_embedding, BERT's position embeddings):
    y[t] = x[t] + W[t] for t < L, from a table of max_len rows.

    Shape: [L, D] -> [L, D]; L <= max_len.
    Params: weight [max_len, D] (N(0, 0.02²) at initialisation, as torchvision).
    MACs: 0 (additions).
    """

    kind: ClassVar[str] = "position_embedding"
    positional: ClassVar[tuple[str, ...]] = ("max_len",)

    max_len: int = Field(gt=0)

    samples = (
        sample({"max_len": 5}, (5, 4), note="L = max_len: the whole table"),
        sample({"max_len": 9}, (3, 6), note="L < max_len: ONNX slices the first L rows"),
    )
    bad_samples = (
        BadSample(call="position_embedding(4)", inputs=((5, 8),), code=codes.ARGUMENT_SHAPE),
        BadSample(call="position_embedding(8)", inputs=((8,),), code=codes.RANK),
        BadSample(call="position_embedding(0)", inputs=((5, 8),), code=codes.BAD_ARG),
    )

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        x = super().infer(inputs)
        if x.shape[0] > self.max_len:
            raise ShapeError(
                codes.ARGUMENT_SHAPE,
                f"position_embedding has {self.max_len} positions but the sequence has "
                f"{x.shape[0]} tokens",
                notes=[f"input {x}: L = {x.shape[0]} > max_len = {self.max_len}"],
                help=f"use max_len={x.shape[0]} or more",
                arg="max_len",
            )
        return x

    def param_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.max_len, inputs[0].shape[1])}

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        self.infer(inputs)
        return TorchCall("PositionEmbedding", {"max_len": self.max_len, "dim": inputs[0].shape[1]})

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        (x,) = inputs
        return x + params["weight"][: x.shape[1]]

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """Add the table (broadcast over the batch); Slice rows [0, L) first when L < max_len."""
        length = types[0].shape[0]
        table = g.initializer(f"{name}.weight", params["weight"])
        if length < self.max_len:
            table = g.node("Slice", [table, g.ints([0]), g.ints([length]), g.ints([0])])
        return g.node("Add", [inputs[0], table])


@register
class SinusoidalPosition(_Tokens):
    """Add the fixed sinusoidal position table of Vaswani et al. 2017 (no parameters):

        y[t, 2i] = x[t, 2i] + sin(t / 10000^(2i/D)),  y[t, 2i+1] = x[t, 2i+1] + cos(t / 10000^(2i/D))

    for positions t = 0..L-1 (an odd D ends with a sine column).
    Shape: [L, D] -> [L, D].
    Params: none (the table is computed, not stored).
    MACs: 0 (additions).
    """

    kind: ClassVar[str] = "sinusoidal_position"

    samples = (
        sample({}, (6, 8)),
        sample({}, (4, 5), note="odd D: the last column is a sine"),
    )
    bad_samples = (
        BadSample(call="sinusoidal_position", inputs=((8,),), code=codes.RANK),
    )

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        super().infer(inputs)
        return TorchCall("SinusoidalPosition", {})

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        (x,) = inputs
        return x + sinusoid_table(x.shape[1], x.shape[2])

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """Add the table as a float32 constant [L, D] (a Constant node: not a weight)."""
        import numpy as np
        length, dim = types[0].shape
        return g.node("Add", [inputs[0], g.constant(sinusoid_table(length, dim).astype(np.float32))])


@register
class TokenMean(_Tokens):
    """Average the tokens (a global average pool over the sequence): y[d] = (1/L) Σ_t x[t, d].

    Shape: [L, D] -> [D].
    Params: none.
    MACs: L·D, the input size (one add per element, as global_avgpool).
    """

    kind: ClassVar[str] = "token_mean"

    samples = (sample({}, (5, 4)), sample({}, (1, 3), note="one token"))
    bad_samples = (BadSample(call="token_mean", inputs=((3, 4, 4),), code=codes.RANK),)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        x = super().infer(inputs)
        return TensorType(shape=(x.shape[1],))

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        return inputs[0].numel

    def receptive_step(self, inputs: Sequence[TensorType]) -> Literal["global"]:
        return GLOBAL

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        super().infer(inputs)
        return TorchCall("TokenMean", {})

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        (x,) = inputs
        return x.sum(axis=1) / x.shape[1]

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX ReduceMean over axis 1 (the tokens), keepdims=0."""
        return g.node("ReduceMean", [inputs[0], g.ints([1])], keepdims=0)


@register
class Take(_Tokens):
    """The token at `index` (ViT's class-token readout x[:, 0]): y = x[index], negative
    counting from the end (-1 is the last token).

    Shape: [L, D] -> [D]; -L <= index < L.
    Params: none.
    MACs: 0 (a copy).
    """

    kind: ClassVar[str] = "take"
    positional: ClassVar[tuple[str, ...]] = ("index",)

    index: int

    samples = (
        sample({"index": 0}, (4, 3), note="the first token (the class token)"),
        sample({"index": -1}, (4, 3), note="the last token"),
        sample({"index": 2}, (5, 2)),
    )
    bad_samples = (
        BadSample(call="take(4)", inputs=((4, 8),), code=codes.ARGUMENT_SHAPE),
        BadSample(call="take(-5)", inputs=((4, 8),), code=codes.ARGUMENT_SHAPE),
        BadSample(call="take(0)", inputs=((8,),), code=codes.RANK),
    )

    def position(self, x: TensorType) -> int:
        """The index in [0, L)."""
        expect_tokens(self.kind, x)
        length = x.shape[0]
        if not -length <= self.index < length:
            raise ShapeError(
                codes.ARGUMENT_SHAPE,
                f"take index={self.index} is out of range for a sequence of {length} tokens",
                notes=[f"input {x}: valid indices {-length} <= index < {length} "
                       f"(negative counts from the end)"],
                help=f"use an index from 0 to {length - 1}, or -1 for the last token",
                arg="index",
            )
        return self.index % length

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        self.position(x)
        return TensorType(shape=(x.shape[1],))

    def receptive_step(self, inputs: Sequence[TensorType]) -> Literal["global"]:
        return GLOBAL

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        return TorchCall("Take", {"index": self.position(inputs[0])})

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        (x,) = inputs
        return x[:, self.index]

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """ONNX Gather on axis 1 with a scalar index (the axis is dropped)."""
        import numpy as np
        index = g.constant(np.array(self.position(types[0]), np.int64))
        return g.node("Gather", [inputs[0], index], axis=1)

