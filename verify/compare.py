"""Elementwise comparison that names the worst element, for every check's messages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tolerances import Tolerance


@dataclass(frozen=True)
class Comparison:
    """``actual`` vs ``expected`` under ``tol``: the worst element, by |Δ| over its bound.

    ``index`` is that element's position, ``actual_value``/``expected_value`` both values
    there, ``error`` its absolute difference and ``relative`` that over |expected|.
    ``max_error`` is the largest absolute difference anywhere.
    """

    ok: bool
    index: tuple[int, ...]
    actual_value: float
    expected_value: float
    error: float
    relative: float
    max_error: float
    shape_mismatch: str = ""

    def describe(self, what: str = "") -> str:
        if self.shape_mismatch:
            return self.shape_mismatch
        where = f"{what}[{', '.join(map(str, self.index))}]" if self.index else what or "value"
        return (f"worst at {where}: {self.actual_value:.9g} vs {self.expected_value:.9g} "
                f"(|Δ| = {self.error:.3g}, relative {self.relative:.3g})")


def compare(actual, expected, tol: Tolerance) -> Comparison:
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return Comparison(False, (), float("nan"), float("nan"), float("inf"), float("inf"),
                          float("inf"), f"shape {list(a.shape)} vs {list(e.shape)}")
    if a.size == 0:
        return Comparison(True, (), 0.0, 0.0, 0.0, 0.0, 0.0)
    diff = np.abs(a - e)
    bound = tol.atol + tol.rtol * np.abs(e)
    finite = np.isfinite(a) & np.isfinite(e)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bound > 0, diff / np.where(bound > 0, bound, 1.0),
                         np.where(diff > 0, np.inf, 0.0))
    # a non-finite value on either side fails unless both agree exactly (inf == inf)
    ratio = np.where(finite, ratio, np.where(a == e, 0.0, np.inf))
    flat = int(np.argmax(ratio))  # the element nearest to (or furthest past) its bound
    index = tuple(int(i) for i in np.unravel_index(flat, a.shape))
    err = float(diff.flat[flat]) if finite.flat[flat] else float("inf")
    rel = err / abs(float(e.flat[flat])) if e.flat[flat] != 0 else (0.0 if err == 0 else float("inf"))
    max_error = float(np.max(np.where(finite, diff, np.where(a == e, 0.0, np.inf))))
    return Comparison(bool(ratio.flat[flat] <= 1), index, float(a.flat[flat]),
                      float(e.flat[flat]), err, rel, max_error)
