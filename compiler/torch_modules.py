"""Small torch modules for ops that torch.nn has no class for.

This file imports only torch: the standalone model files written by `nnspec compile --emit
torch` copy the classes they use from here verbatim, so keep each class self-contained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Concat(nn.Module):
    """Concatenation along one axis (``dim`` counts the batch axis)."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)


class Reshape(nn.Module):
    """Reshape every sample to ``shape`` (the batch axis is kept)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


class Permute(nn.Module):
    """Reorder the axes of every sample: output axis i is input axis ``dims[i]`` (the
    sample's axes, counted from 0; the batch axis stays first)."""

    def __init__(self, dims: tuple[int, ...]):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, *(d + 1 for d in self.dims))


class CenterCrop(nn.Module):
    """Remove ``crop[i] = (before, after)`` positions from spatial axis i."""

    def __init__(self, crop: tuple[tuple[int, int], ...]):
        super().__init__()
        self.crop = tuple(tuple(p) for p in crop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = [slice(None), slice(None)]
        for before, after in self.crop:
            index.append(slice(before, x.shape[len(index)] - after))
        return x[tuple(index)]


class Pad(nn.Module):
    """Pad spatial axes by ``pads[i] = (before, after)``: constant, reflect or replicate."""

    def __init__(self, pads: tuple[tuple[int, int], ...], mode: str = "constant", value: float = 0.0):
        super().__init__()
        self.pads = tuple(tuple(p) for p in pads)
        self.mode = mode
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat: list[int] = []
        for before, after in reversed(self.pads):  # F.pad starts from the last axis
            flat += [before, after]
        if self.mode == "constant":
            return F.pad(x, flat, mode="constant", value=self.value)
        return F.pad(x, flat, mode=self.mode)


class Maxout(nn.Module):
    """Max over groups of ``k`` consecutive channels: [B, C, ...] -> [B, C/k, ...]."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[0], x.shape[1]
        return x.reshape(b, c // self.k, self.k, *x.shape[2:]).amax(dim=2)


class SeparableConv(nn.Module):
    """Depthwise convolution (groups = C_in) followed by a pointwise 1x1 convolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, ...],
                 stride: tuple[int, ...], padding: tuple[int, ...] | str,
                 dilation: tuple[int, ...], bias: bool):
        super().__init__()
        conv = nn.Conv1d if len(kernel_size) == 1 else nn.Conv2d
        ones = (1,) * len(kernel_size)
        self.depthwise = conv(in_channels, in_channels, kernel_size, stride=stride, padding=padding,
                              dilation=dilation, groups=in_channels, bias=bias)
        self.pointwise = conv(in_channels, out_channels, ones, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class _SelectStep:
    """Mixin for nn.RNN / nn.LSTM / nn.GRU (batch_first): return every step, or the last.

    ``select="last"`` returns the final hidden state of the last layer, both directions
    concatenated ([B, H·dirs]); for a bidirectional net this differs from ``output[:, -1]``.
    """

    select: str

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        output, state = super().forward(x)  # type: ignore[misc]
        if self.select == "sequence":
            return output
        h_n = state[0] if isinstance(state, tuple) else state
        directions = 2 if self.bidirectional else 1  # type: ignore[attr-defined]
        return torch.cat(tuple(h_n[-directions:]), dim=-1)


class RNN(_SelectStep, nn.RNN):
    def __init__(self, *args, select: str = "last", **kwargs):
        super().__init__(*args, batch_first=True, **kwargs)
        self.select = select


class LSTM(_SelectStep, nn.LSTM):
    def __init__(self, *args, select: str = "last", **kwargs):
        super().__init__(*args, batch_first=True, **kwargs)
        self.select = select


class GRU(_SelectStep, nn.GRU):
    def __init__(self, *args, select: str = "last", **kwargs):
        super().__init__(*args, batch_first=True, **kwargs)
        self.select = select


class KNN(nn.Module):
    """k-nearest-neighbour vote over stored samples ``memory`` [M, F] with one-hot ``labels``
    [M, C]: the fraction of the k nearest stored samples that vote for each class. Ties in
    distance take the lower stored index first (a stable sort, as ONNX TopK does); for l2 the
    ranking is ‖m‖² − 2x·m, i.e. ‖x − m‖² less the ‖x‖² that is the same for every m."""

    def __init__(self, features: int, memory: int, classes: int, k: int, distance: str = "l2"):
        super().__init__()
        self.k, self.distance = k, distance
        self.register_buffer("memory", torch.zeros(memory, features))
        self.register_buffer("labels", torch.zeros(memory, classes))

    @staticmethod
    def votes(x: torch.Tensor, memory: torch.Tensor, labels: torch.Tensor, k: int,
              distance: str = "l2") -> torch.Tensor:
        if distance == "l2":
            ranks = memory.square().sum(1) - 2 * x @ memory.T
        else:
            ranks = (x[:, None, :] - memory[None]).abs().sum(-1)
        nearest = torch.sort(ranks, dim=1, stable=True).indices[:, :k]
        return labels[nearest].mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.votes(x, self.memory, self.labels, self.k, self.distance)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis at each position of [N, C, *spatial] (ConvNeXt's
    LayerNorm2d): the channel axis moved last, ``F.layer_norm`` over its C values, moved back.
    Parameters ``weight`` γ [C] and ``bias`` β [C] (when affine), initialised to 1 and 0."""

    def __init__(self, channels: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.channels, self.eps = channels, eps
        if affine:
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.movedim(1, -1), (self.channels,), self.weight, self.bias, self.eps)
        return y.movedim(-1, 1)


class LayerScale(nn.Module):
    """y = γ ⊙ x with a learnable ``scale`` γ of ``shape`` (the scaled axis, then 1 for each
    axis after it: broadcast over the batch and the other axes), initialised to ``init``
    (CaiT, Touvron et al. 2021; ConvNeXt's layer_scale, shape [C, 1, 1] on [C, H, W])."""

    def __init__(self, shape: tuple[int, ...], init: float = 1e-6):
        super().__init__()
        self.scale = nn.Parameter(torch.full(tuple(shape), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016), per sample (torchvision's StochasticDepth,
    mode="row"): in training each sample is kept whole with probability 1 - p and scaled by
    1 / (1 - p), or zeroed; in eval (and for p = 0) the identity."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * mask.bernoulli_(keep).div_(keep)


class Elementwise(nn.Module):
    """``op`` ("add", "sub", "mul", "div") over two or more tensors, left to right, with
    numpy broadcasting of the sample axes: ``lift[i]`` size-1 axes are inserted after the
    batch axis of input i first, so a [B, D] operand of a [B, L, D] one becomes [B, 1, D]."""

    def __init__(self, op: str, lift: tuple[int, ...] = ()):
        super().__init__()
        self.op = op
        self.lift = tuple(lift)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.lift:
            xs = tuple(x.reshape(x.shape[0], *([1] * k), *x.shape[1:]) if k else x
                       for x, k in zip(xs, self.lift))
        out = xs[0]
        for x in xs[1:]:
            if self.op == "add":
                out = out + x
            elif self.op == "sub":
                out = out - x
            elif self.op == "mul":
                out = out * x
            else:
                out = out / x
        return out


class Scalar(nn.Module):
    """``op`` between a tensor and the number ``value``; ``scalar_first`` puts the number on
    the left (``1 - x``, ``1 / x``)."""

    def __init__(self, op: str, value: float, scalar_first: bool = False):
        super().__init__()
        self.op = op
        self.value = value
        self.scalar_first = scalar_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = (self.value, x) if self.scalar_first else (x, self.value)
        if self.op == "add":
            return a + b
        if self.op == "sub":
            return a - b
        if self.op == "mul":
            return a * b
        return a / b


class Attention(nn.Module):
    """Multi-head attention with nn.MultiheadAttention's parameters (``in_proj_weight``
    [3D, D] packing W_q, W_k, W_v; ``in_proj_bias``; ``out_proj``), computed by
    F.scaled_dot_product_attention on [B, L, D] (batch first). ``forward(x)`` is
    self-attention, ``forward(q, kv)`` cross-attention. ``causal``: query i attends to keys
    0..i (top-left aligned when Lq != Lk). ``dropout`` applies in training only."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0,
                 causal: bool = False, bias: bool = True):
        super().__init__()
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.dropout, self.causal = dropout, causal
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        if bias:
            self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        nn.init.xavier_uniform_(self.in_proj_weight)  # nn.MultiheadAttention's initialisation
        if bias:
            nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, kv: torch.Tensor | None = None) -> torch.Tensor:
        d, h = self.embed_dim, self.num_heads
        if kv is None:
            q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            w_q, w_kv = self.in_proj_weight.split([d, 2 * d])
            b_q, b_kv = (None, None) if self.in_proj_bias is None else self.in_proj_bias.split([d, 2 * d])
            q = F.linear(x, w_q, b_q)
            k, v = F.linear(kv, w_kv, b_kv).chunk(2, dim=-1)
        q, k, v = (t.unflatten(-1, (h, d // h)).transpose(1, 2) for t in (q, k, v))
        mask, is_causal = None, self.causal
        if self.causal and (kv is not None and q.shape[2] != k.shape[2]):
            # an explicit top-left mask: kernels differ in how they align is_causal then
            mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=x.device).tril()
            is_causal = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).flatten(2))


class Patchify(nn.Conv2d):
    """ViT's patch embedding: a ``patch``×``patch`` convolution of stride ``patch``, its map
    flattened to tokens in row-major order: [B, C, H, W] -> [B, (H/p)(W/p), dim]."""

    def __init__(self, in_channels: int, dim: int, patch: int, bias: bool = True):
        super().__init__(in_channels, dim, patch, stride=patch, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).flatten(2).transpose(1, 2)


class ClassToken(nn.Module):
    """Prepend a learned token [1, 1, D] (zeros at first, as torchvision's class_token)."""

    def __init__(self, dim: int):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)


class PositionEmbedding(nn.Module):
    """Add the first L rows of a learned table [max_len, D] (N(0, 0.02²) at first)."""

    def __init__(self, max_len: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_len, dim).normal_(std=0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight[: x.shape[1]]


class SinusoidalPosition(nn.Module):
    """Add Vaswani et al.'s table: PE[t, 2i] = sin(t / 10000^(2i/D)), PE[t, 2i+1] = cos(...).
    Computed in float64 for the input's length, then cast to its dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length, dim = x.shape[1], x.shape[2]
        t = torch.arange(length, dtype=torch.float64, device=x.device)[:, None]
        even = torch.arange(0, dim, 2, dtype=torch.float64, device=x.device)
        angle = t / 10000.0 ** (even / dim)
        table = torch.zeros(length, dim, dtype=torch.float64, device=x.device)
        table[:, 0::2] = torch.sin(angle)
        table[:, 1::2] = torch.cos(angle[:, : dim // 2])
        return x + table.to(x.dtype)


class TokenMean(nn.Module):
    """The mean of the tokens: [B, L, D] -> [B, D]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


class Take(nn.Module):
    """The token at ``index`` (from 0): [B, L, D] -> [B, D]."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]


class Narrow(nn.Module):
    """Positions ``start`` to ``start + length`` of axis ``dim`` (counting the batch axis)."""

    def __init__(self, dim: int, start: int, length: int):
        super().__init__()
        self.dim = dim
        self.start = start
        self.length = length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.narrow(self.dim, self.start, self.length)


class TiedLinear(nn.Module):
    """nn.Linear whose weight another layer owns (weight tying, Press & Wolf 2017): it holds
    only its bias and reads ``owner.<attr>`` at every call. The owner is kept in a tuple, not
    as a submodule, so the shared weight is counted, saved and optimised once."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        if bias:  # nn.Linear's default: U(-1/√in, 1/√in)
            bound = 1.0 / in_features ** 0.5
            self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)
        self._owner: tuple[nn.Module, str] | None = None

    def tie(self, key: str, owner: nn.Module, attr: str) -> None:
        self._owner = (owner, attr)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._owner is None:
            raise RuntimeError("TiedLinear is not tied to a weight: call tie() first")
        owner, attr = self._owner
        return F.linear(x, getattr(owner, attr), self.bias)
