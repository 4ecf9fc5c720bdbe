"""Attention: multi-head scaled dot-product attention over token sequences [L, D].

Vaswani et al. 2017, "Attention is all you need": for queries Q [Lq, d_k], keys K [Lk, d_k]
and values V [Lk, d_k] of one head,

    Attention(Q, K, V) = softmax(Q·Kᵀ / √d_k + M)·V

with M = 0, or for a causal layer M[i, j] = -∞ where j > i (query i sees keys 0..i).
A layer projects its input to Q, K, V for each of h heads (d_k = D / h), runs the heads in
parallel and projects their concatenation back to D.

A sequence is a [L, D] tensor: L tokens (axis 0) of D features (axis 1), the layout the
`linear`, `layernorm(1)` and recurrent ops use for [T, F].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from .. import codes
from ..ir import TensorType
from .arith import check_divisible
from .base import GLOBAL, BadSample, Op, ShapeError, TorchCall, register, sample
from .linear import expect_float

if TYPE_CHECKING:
    import numpy as np

    from .base import OnnxGraph


def expect_tokens(kind: str, x: TensorType, operand: int | None = None) -> None:
    """A token sequence [L, D] of floats (rank 2, the batch axis not counted)."""
    if x.rank != 2:
        raise ShapeError(
            codes.RANK,
            f"{kind} expects a token sequence [L, D] (rank 2), got {x} of rank {x.rank}",
            help="the batch dimension is implicit; `patchify(p, dim)` turns an image into "
                 "tokens, `reshape` or `permute` another layout",
            operand=operand,
        )
    expect_float(x, kind)


@register
class Attention(Op):
    """Multi-head attention (torch.nn.MultiheadAttention's layout and arithmetic).

    Self-attention `x -> attention(h)`: Q, K, V all from x [L, D]. Cross-attention
    `attention(q, kv, heads=h)` (or `q -> attention(kv, heads=h)`): Q from q [Lq, D], K and V
    from kv [Lk, D]. With W = in_proj_weight = [W_q; W_k; W_v] ([3D, D]) and b = in_proj_bias:

        Q = q·W_qᵀ + b_q,  K = kv·W_kᵀ + b_k,  V = kv·W_vᵀ + b_v        ([L, D] each)
        head_i = softmax(Q_i·K_iᵀ / √d_k + M)·V_i    (Q_i = columns i·d_k .. (i+1)·d_k)
        y = concat(head_1, ..., head_h)·W_oᵀ + b_o   (W_o = out_proj.weight [D, D])

    d_k = D / h (D divisible by heads). `causal`: M[i, j] = -∞ for j > i (query i attends to
    keys 0..i; with Lq ≠ Lk the mask is aligned at the top left, torch.ones(Lq, Lk).tril()),
    else M = 0. `dropout` drops attention weights in training only. `bias=false` leaves out
    b and b_o.

    Shape: [L, D] -> [L, D]; cross: [Lq, D], [Lk, D] -> [Lq, D].
    Params: in_proj_weight [3D, D], in_proj_bias [3D], out_proj.weight [D, D], out_proj.bias
    [D] (the biases when bias): 4D² + 4D, as nn.MultiheadAttention(D, heads, bias=bias),
    so a state_dict moves between the two unchanged.
    MACs: projections L·D·3D (cross: Lq·D·D + 2·Lk·D·D), QKᵀ Lq·Lk·D, AV Lq·Lk·D, output
    Lq·D·D; the softmax and the 1/√d_k scaling are not counted.
    """

    kind: ClassVar[str] = "attention"
    family: ClassVar[str] = "attention"
    positional: ClassVar[tuple[str, ...]] = ("heads",)
    arity: ClassVar[int | None] = None
    min_arity: ClassVar[int] = 1
    max_arity: ClassVar[int | None] = 2

    heads: int = Field(gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    causal: bool = False
    bias: bool = True

    samples = (
        sample({"heads": 2}, (5, 8), note="self-attention, L = 5"),
        sample({"heads": 4, "causal": True}, (3, 8), note="causal, L = 3: the additive mask"),
        sample({"heads": 2, "causal": True}, (7, 4), note="causal, L = 7, d_k = 2"),
        sample({"heads": 1, "bias": False}, (4, 6), note="one head, no biases: ONNX MatMul only"),
        sample({"heads": 2}, (3, 8), (5, 8), note="cross-attention, Lq = 3, Lk = 5"),
        sample({"heads": 2, "causal": True, "bias": False}, (4, 8), (6, 8),
               note="causal cross-attention without biases, top-left aligned mask"),
        sample({"heads": 2, "dropout": 0.25}, (4, 8),
               note="dropout on the attention weights (training only)"),
    )
    bad_samples = (
        BadSample(call="x0 -> attention(3)", inputs=((5, 8),), code=codes.DIVISIBLE),
        BadSample(call="x0 -> attention(2)", inputs=((8,),), code=codes.RANK),
        BadSample(call="attention(x0, x1, heads=2)", inputs=((3, 8), (5, 6)),
                  code=codes.ARGUMENT_SHAPE),
        BadSample(call="attention(x0, x1, x0, heads=2)", inputs=((3, 8), (5, 8)),
                  code=codes.BAD_ARG),
        BadSample(call="x0 -> attention(0)", inputs=((5, 8),), code=codes.BAD_ARG),
        BadSample(call="x0 -> attention(2, dropout=1)", inputs=((5, 8),), code=codes.BAD_ARG),
    )

    # -- the rules --------------------------------------------------------------------
    def _check(self, inputs: Sequence[TensorType]) -> tuple[int, int, int]:
        """(Lq, Lk, D) after the checks."""
        q = inputs[0]
        expect_tokens(self.kind, q, operand=0)
        kv = inputs[1] if len(inputs) > 1 else q
        if len(inputs) > 1:
            expect_tokens(self.kind, kv, operand=1)
            if kv.shape[1] != q.shape[1]:
                raise ShapeError(
                    codes.ARGUMENT_SHAPE,
                    f"cross-attention needs queries and keys/values of one width D: the "
                    f"query is {q}, the keys/values {kv}",
                    notes=[f"D = {q.shape[1]} (query) ≠ {kv.shape[1]} (keys/values); the "
                           f"packed projection [3D, D] maps both from D features"],
                    help=f"project the keys/values to {q.shape[1]} features first, with "
                         f"`linear({q.shape[1]})`",
                    operand=1,
                )
        d = q.shape[1]
        check_divisible(d, self.heads, "the embedding width D", "heads", arg="heads")
        return q.shape[0], kv.shape[0], d

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        self._check(inputs)
        return TensorType(shape=inputs[0].shape)

    def param_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        d = inputs[0].shape[-1]
        shapes: dict[str, tuple[int, ...]] = {"in_proj_weight": (3 * d, d)}
        if self.bias:
            shapes["in_proj_bias"] = (3 * d,)
        shapes["out_proj.weight"] = (d, d)
        if self.bias:
            shapes["out_proj.bias"] = (d,)
        return shapes

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        lq, lk, d = self._check(inputs)
        projections = lq * d * 3 * d if len(inputs) == 1 else lq * d * d + 2 * lk * d * d
        return projections + 2 * lq * lk * d + lq * d * d

    def receptive_step(self, inputs: Sequence[TensorType]) -> Literal["global"]:
        return GLOBAL  # every query mixes every (allowed) position

    # -- lowerings ------------------------------------------------------------------------
    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        self._check(inputs)
        return TorchCall("Attention", {
            "embed_dim": inputs[0].shape[-1], "num_heads": self.heads, "dropout": self.dropout,
            "causal": self.causal, "bias": self.bias,
        })

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """softmax(Q·Kᵀ / √d_k + M)·V per head, in float64, from the formula above."""
        import numpy as np
        q_in = np.asarray(inputs[0], np.float64)
        kv_in = np.asarray(inputs[1], np.float64) if len(inputs) > 1 else q_in
        b, lq, d = q_in.shape
        lk = kv_in.shape[1]
        h, dk = self.heads, d // self.heads
        w = params["in_proj_weight"]
        bias = params["in_proj_bias"] if self.bias else np.zeros(3 * d)
        q = q_in @ w[:d].T + bias[:d]
        k = kv_in @ w[d:2 * d].T + bias[d:2 * d]
        v = kv_in @ w[2 * d:].T + bias[2 * d:]
        split = lambda t, n: t.reshape(b, n, h, dk).transpose(0, 2, 1, 3)  # noqa: E731
        scores = split(q, lq) @ split(k, lk).transpose(0, 1, 3, 2) / math.sqrt(dk)
        if self.causal:
            scores = scores + np.where(np.arange(lk)[None, :] > np.arange(lq)[:, None],
                                       -np.inf, 0.0)
        scores = scores - scores.max(axis=-1, keepdims=True)
        weights = np.exp(scores)
        weights = weights / weights.sum(axis=-1, keepdims=True)
        heads = (weights @ split(v, lk)).transpose(0, 2, 1, 3).reshape(b, lq, d)
        y = heads @ params["out_proj.weight"].T
        return y + params["out_proj.bias"] if self.bias else y

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """Decomposed (opset 21 has no attention op): MatMul with the transposed packed
        projection (+ bias) and a Split into Q, K, V (cross: the weight Split into W_q and
        [W_k; W_v] first); Reshape [0, L, h, d_k] and Transpose to heads [B, h, L, d_k]
        (K to [B, h, d_k, Lk]); MatMul, Mul by 1/√d_k, Add the causal mask (a constant
        [Lq, Lk] of 0 and -inf), Softmax over the keys, MatMul with V; Transpose and Reshape
        back to [B, Lq, D]; MatMul with out_proj.weightᵀ (+ bias)."""
        import numpy as np
        lq, lk, d = self._check(types)
        h, dk = self.heads, d // self.heads
        weight = g.initializer(f"{name}.in_proj_weight", params["in_proj_weight"])
        bias = g.initializer(f"{name}.in_proj_bias", params["in_proj_bias"]) if self.bias else None

        def project(x: str, w: str, b: str | None) -> str:
            y = g.node("MatMul", [x, g.node("Transpose", [w], perm=[1, 0])])
            return g.node("Add", [y, b]) if b is not None else y

        def split(x: str, sizes: list[int], axis: int) -> list[str]:
            outs = [g.fresh(f"{name}/split") for _ in sizes]
            g.node("Split", [x, g.ints(sizes)], outputs=outs, axis=axis)
            return outs

        if len(inputs) == 1:
            q, k, v = split(project(inputs[0], weight, bias), [d, d, d], axis=2)
        else:
            w_q, w_kv = split(weight, [d, 2 * d], axis=0)
            b_q, b_kv = split(bias, [d, 2 * d], axis=0) if bias is not None else (None, None)
            q = project(inputs[0], w_q, b_q)
            k, v = split(project(inputs[1], w_kv, b_kv), [d, d], axis=2)

        def to_heads(x: str, length: int, perm: list[int]) -> str:
            return g.node("Transpose", [g.reshape(x, [0, length, h, dk])], perm=perm)

        scores = g.node("MatMul", [to_heads(q, lq, [0, 2, 1, 3]), to_heads(k, lk, [0, 2, 3, 1])])
        scores = g.node("Mul", [scores, g.constant(np.array(1 / math.sqrt(dk), np.float32))])
        if self.causal:
            mask = np.where(np.arange(lk)[None, :] > np.arange(lq)[:, None], -np.inf, 0.0)
            scores = g.node("Add", [scores, g.constant(mask.astype(np.float32))])
        attended = g.node("MatMul", [g.node("Softmax", [scores], axis=-1),
                                     to_heads(v, lk, [0, 2, 1, 3])])
        merged = g.reshape(g.node("Transpose", [attended], perm=[0, 2, 1, 3]), [0, lq, d])
        out_w = g.initializer(f"{name}.out_proj.weight", params["out_proj.weight"])
        out_b = (g.initializer(f"{name}.out_proj.bias", params["out_proj.bias"])
                 if self.bias else None)
        return project(merged, out_w, out_b)
