"""Small torch modules for ops that torch.nn has no class for.

This file imports only torch: the standalone model files written by `nnspec compile --emit
torch` copy the classes they use from here verbatim, so keep each class self-contained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Add(nn.Module):
    """Elementwise sum of two or more tensors of one shape (a residual connection)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


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
