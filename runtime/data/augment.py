"""Batch augmentation on torch tensors ``[B, C, H, W]``, vectorised over the batch.

Every random draw comes from an explicit ``torch.Generator`` (on the CPU unless the caller
passes a device generator), and each transform draws a fixed number of values per batch, so
a pipeline is deterministic given (seed, epoch, batch order) and a resumed run reproduces it.
``train(x, g)`` augments; ``eval(x)`` is the deterministic evaluation form (identity, except
the fixed centre crop of ``RandomCrop`` and ``Normalize``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nnspec.runtime.data.sources import DataError
from nnspec.spec.suggest import did_you_mean


def generator_for(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator seeded from (seed, *keys), e.g. (seed, epoch): independent streams
    for different keys, the same stream whenever the keys repeat (resume)."""
    state = np.random.SeedSequence([int(seed), *(int(k) for k in keys)]).generate_state(1)
    return torch.Generator().manual_seed(int(state[0]))


def _uniform(n: int, low: float, high: float, g: torch.Generator, like: torch.Tensor,
             ) -> torch.Tensor:
    u = torch.rand(n, generator=g, device=g.device, dtype=torch.float32)
    return (low + (high - low) * u).to(device=like.device, dtype=like.dtype)


def _check_images(x: torch.Tensor, what: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{what} expects images [B, C, H, W], got {list(x.shape)}")


def _check_sample(shape: tuple[int, ...], what: str) -> None:
    if len(shape) != 3:
        shown = "[" + ", ".join(map(str, shape)) + "]"
        raise ValueError(f"{what} expects image samples [C, H, W], the data's are {shown}")


def _number(name: str, value: Any, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"in [{low:g}, {high:g}]" if high is not None else f"≥ {low:g}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return float(value)


class Transform:
    name = "transform"

    def train(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def sample_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of one output sample for an input sample of ``shape``."""
        return shape

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{self.name}({args})"


class Flip(Transform):
    """Mirror each image with probability ``p`` (horizontal: left-right; vertical: up-down)."""

    name = "flip"

    def __init__(self, direction: str = "horizontal", p: float = 0.5):
        if direction not in ("horizontal", "vertical"):
            raise ValueError(f"flip direction must be `horizontal` or `vertical`, got "
                             f"{direction!r}")
        self.direction, self.p = direction, _number("p", p, 0.0, 1.0)

    def train(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_images(x, "flip")
        flip = _uniform(len(x), 0.0, 1.0, generator, x) < self.p
        flipped = x.flip(-1 if self.direction == "horizontal" else -2)
        return torch.where(flip.view(-1, 1, 1, 1), flipped, x)

    def sample_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        _check_sample(shape, "flip")
        return shape


class RandomCrop(Transform):
    """Pad with ``padding`` zeros on every side, then crop a random ``size`` window per
    sample; at evaluation the fixed centre crop of the padded image (for size ≤ H that is
    the centre crop of the image itself)."""

    name = "random_crop"

    def __init__(self, size: int | Sequence[int], padding: int = 0):
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if len(hw) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                               for s in hw):
            raise ValueError(f"crop size must be a positive integer or (height, width), "
                             f"got {size!r}")
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be an integer ≥ 0, got {padding!r}")
        self.size: tuple[int, int] = (int(hw[0]), int(hw[1]))
        self.padding = padding

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, "random_crop")
        h, w = self.size
        hp, wp = x.shape[2] + 2 * self.padding, x.shape[3] + 2 * self.padding
        if h > hp or w > wp:
            raise ValueError(f"cannot crop {h}×{w} from {x.shape[2]}×{x.shape[3]} images "
                             f"padded by {self.padding} ({hp}×{wp})")
        p = self.padding
        return F.pad(x, (p, p, p, p)) if p else x

    def train(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        padded = self._padded(x)
        (h, w), (b, c, hp, wp) = self.size, padded.shape
        top = torch.randint(0, hp - h + 1, (b,), generator=generator, device=generator.device)
        left = torch.randint(0, wp - w + 1, (b,), generator=generator, device=generator.device)
        rows = (top.to(x.device)[:, None] + torch.arange(h, device=x.device))  # [B, h]
        cols = (left.to(x.device)[:, None] + torch.arange(w, device=x.device))  # [B, w]
        picked = padded.gather(2, rows[:, None, :, None].expand(b, c, h, wp))
        return picked.gather(3, cols[:, None, None, :].expand(b, c, h, w))

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        padded = self._padded(x)
        h, w = self.size
        top, left = (padded.shape[2] - h) // 2, (padded.shape[3] - w) // 2
        return padded[:, :, top: top + h, left: left + w]

    def sample_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        _check_sample(shape, "random_crop")
        hp, wp = shape[1] + 2 * self.padding, shape[2] + 2 * self.padding
        if self.size[0] > hp or self.size[1] > wp:
            raise ValueError(f"cannot crop {self.size[0]}×{self.size[1]} from {shape[1]}×"
                             f"{shape[2]} images padded by {self.padding} ({hp}×{wp})")
        return (shape[0], *self.size)


class Brightness(Transform):
    """Add one offset drawn uniformly from [-delta, delta] to each sample (no clamping)."""

    name = "brightness"

    def __init__(self, delta: float):
        self.delta = _number("delta", delta, 0.0)

    def train(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        offset = _uniform(len(x), -self.delta, self.delta, generator, x)
        return x + offset.view(-1, *([1] * (x.dim() - 1)))


class Contrast(Transform):
    """Scale each sample around its own mean (over C, H, W) by a factor drawn uniformly from
    [1 - delta, 1 + delta]."""

    name = "contrast"

    def __init__(self, delta: float):
        self.delta = _number("delta", delta, 0.0, 1.0)

    def train(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        shape = (-1, *([1] * (x.dim() - 1)))
        factor = _uniform(len(x), 1 - self.delta, 1 + self.delta, generator, x).view(shape)
        mean = x.reshape(len(x), -1).mean(dim=1).view(shape)
        return (x - mean) * factor + mean


class Normalize(Transform):
    """``(x - mean) / std`` per channel (axis 1); scalars apply to every channel. The same in
    training and evaluation."""

    name = "normalize"

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]):
        means = [mean] if isinstance(mean, (int, float)) else list(mean)
        stds = [std] if isinstance(std, (int, float)) else list(std)
        for s in stds:
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not s > 0:
                raise ValueError(f"normalize std must be > 0, got {std!r}")
        if len(means) != len(stds) and 1 not in (len(means), len(stds)):
            raise ValueError(f"normalize has {len(means)} means but {len(stds)} stds")
        self.mean, self.std = [float(m) for m in means], [float(s) for s in stds]

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        channels = max(len(self.mean), len(self.std))
        if channels > 1 and (x.dim() < 2 or x.shape[1] != channels):
            raise ValueError(f"normalize has statistics for {channels} channels but the batch "
                             f"is {list(x.shape)}")
        shape = (1, -1, *([1] * (x.dim() - 2)))
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return (x - mean) / std

    def train(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self._apply(x)

    def sample_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        channels = max(len(self.mean), len(self.std))
        if channels > 1 and (not shape or shape[0] != channels):
            raise ValueError(f"normalize has statistics for {channels} channels but samples "
                             f"are {list(shape)}")
        return shape

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(x)


class Pipeline:
    """Transforms applied in order; ``train`` draws from one generator, ``eval`` draws none."""

    def __init__(self, transforms: Iterable[Transform] = ()):
        self.transforms = list(transforms)

    def train(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for t in self.transforms:
            x = t.train(x, generator)
        return x

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            x = t.eval(x)
        return x

    def sample_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The sample shape the model sees; ValueError when a transform cannot apply."""
        out = tuple(int(d) for d in shape)
        for t in self.transforms:
            out = t.sample_shape(out)
        return out

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        return f"Pipeline({self.transforms!r})"


AUGMENTATIONS: dict[str, type[Transform]] = {
    t.name: t for t in (Flip, RandomCrop, Brightness, Contrast, Normalize)
}


def build_augmentations(specs: Iterable[tuple[Any, ...]]) -> Pipeline:
    """A pipeline from ``(name, kwargs)`` or ``(name, args, kwargs)`` items, e.g.
    ``[("flip", {"direction": "horizontal"}), ("random_crop", (32,), {"padding": 4})]``.
    Unknown names or options and bad values raise :class:`DataError` with a fix."""
    transforms: list[Transform] = []
    for item in specs:
        name, args, kwargs = (item[0], (), item[1]) if len(item) == 2 else item
        where = f"augment {name}"
        if name not in AUGMENTATIONS:
            raise DataError(f"unknown augmentation `{name}`", where,
                            did_you_mean(name, AUGMENTATIONS) or
                            f"augmentations: {', '.join(AUGMENTATIONS)}")
        cls = AUGMENTATIONS[name]
        params = inspect.signature(cls).parameters
        for key in kwargs:
            if key not in params:
                raise DataError(f"unknown option `{key}` for {name} (takes "
                                f"{', '.join(params)})", where, did_you_mean(key, params))
        try:
            inspect.signature(cls).bind(*args, **kwargs)
            transforms.append(cls(*args, **kwargs))
        except (TypeError, ValueError) as exc:
            raise DataError(str(exc), where) from None
    return Pipeline(transforms)
