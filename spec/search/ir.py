"""The search IR: which recipe values a `search` block varies, over which values, how trials
are chosen and how they are scored. Plain frozen pydantic data that round-trips through JSON,
like the model and recipe IRs; the runtime (runtime/experiments/search.py) reads nothing else.

A trial is a *point*: one value per axis, keyed by the axis's path (``optimizer.lr``,
``model.hidden``, ``batch``). Numbers of a range are rounded to 4 significant digits, so a
point prints exactly and the best spec file reproduces it; a choice is the item's source text.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from nnspec.spec.source import Span

if TYPE_CHECKING:
    import numpy as np

PointValue = int | float | str
Point = dict[str, PointValue]

_FROZEN = ConfigDict(frozen=True, extra="forbid")
DEFAULT_POINTS = 5  # per range axis of a grid, and of each refine round


def nice(value: float, integer: bool) -> int | float:
    """A range value as trials use it: 4 significant digits, or the nearest integer."""
    if integer:
        return int(round(value))
    return float(f"{value:.4g}")


def show(value: PointValue) -> str:
    """How a value is written in a spec: `0.001`, `64`, `adam(lr=1e-3)`."""
    if isinstance(value, float):
        text = f"{value:g}"
        return text if float(text) == value else repr(value)
    return str(value)


class Space(BaseModel):
    """The values of one axis.

    log(low, high):    low · (high/low)^t, t ∈ [0, 1] (a grid: t = i/(points − 1));
    linear(low, high): low + (high − low) · t;
    [a, b, c]:         the items as written (``choices``, source text).

    ``integer``: low and high were written as integers, and so is every value (rounded,
    repeats dropped).
    """

    model_config = _FROZEN

    kind: Literal["log", "linear", "choice"]
    low: float | None = None
    high: float | None = None
    points: int = DEFAULT_POINTS
    integer: bool = False
    choices: tuple[str, ...] = ()

    def _at(self, t: float, low: float | None = None, high: float | None = None) -> float:
        lo = self.low if low is None else low
        hi = self.high if high is None else high
        assert lo is not None and hi is not None
        if self.kind == "log":
            return math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))
        return lo + t * (hi - lo)

    def grid(self, points: int | None = None, low: float | None = None,
             high: float | None = None) -> list[PointValue]:
        """Every choice, or ``points`` evenly spaced values of the range (or of [low, high]
        inside it, for refine), repeats dropped."""
        if self.kind == "choice":
            return list(self.choices)
        n = points or self.points
        values: list[PointValue] = []
        for i in range(n):
            v = nice(self._at(i / (n - 1), low, high), self.integer)
            if v not in values:
                values.append(v)
        return values

    def draw(self, rng: np.random.Generator) -> PointValue:
        """One value drawn uniformly: uniform in log space for log, in the value for linear,
        one item for a choice."""
        if self.kind == "choice":
            return self.choices[int(rng.integers(len(self.choices)))]
        return nice(self._at(float(rng.random())), self.integer)

    def describe(self) -> str:
        if self.kind == "choice":
            return "[" + ", ".join(self.choices) + "]"
        return f"{self.kind}({show(nice(self.low or 0, self.integer))}, " \
               f"{show(nice(self.high or 0, self.integer))})"


class Axis(BaseModel):
    """One searched value: ``key`` is its path as written (``optimizer.lr``); ``path[0]`` is a
    recipe setting, or ``model`` for a model argument."""

    model_config = _FROZEN

    key: str
    path: tuple[str, ...]
    space: Space
    span: Span

    @property
    def numeric(self) -> bool:
        return self.space.kind != "choice"


class Strategy(BaseModel):
    """grid: every combination. random(trials, seed): ``trials`` points drawn independently.
    refine(rounds, points): a grid (``points`` per range, else each range's own); then,
    ``rounds − 1`` times, a finer grid of as many points between the best value's neighbours
    in the previous grid, choices fixed at the best's."""

    model_config = _FROZEN

    kind: Literal["grid", "random", "refine"] = "grid"
    trials: int | None = None  # random
    seed: int = 0  # random
    rounds: int = 2  # refine
    points: int | None = None  # grid and refine: per range axis, else each range's own


class Search(BaseModel):
    """One `search` block, checked against its recipe: every axis value compiles."""

    model_config = _FROZEN

    name: str  # `as name`, else the recipe's name
    recipe: str
    strategy: Strategy
    axes: tuple[Axis, ...]
    folds: int | None = None  # `cv kfold(n)`: score by n-fold cross-validation; else the val split
    objective: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    span: Span

    def grid_size(self, points: int | None = None) -> int:
        return math.prod(len(a.space.grid(points)) for a in self.axes)

    def describe(self) -> str:
        how = {"grid": f"grid of {self.grid_size(self.strategy.points)}",
               "random": f"random, {self.strategy.trials} trials",
               "refine": f"refine, {self.strategy.rounds} rounds of "
                         f"{self.grid_size(self.strategy.points)}"}[self.strategy.kind]
        scored = f"{self.folds}-fold cross-validation" if self.folds else "the validation split"
        axes = ", ".join(f"{a.key} in {a.space.describe()}" for a in self.axes)
        return (f"search {self.name}: recipe {self.recipe}, {how}; {axes}; "
                f"{'minimise' if self.mode == 'min' else 'maximise'} {self.objective} on {scored}")
