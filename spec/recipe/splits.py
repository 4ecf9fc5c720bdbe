"""How a recipe's `split` and `cv kfold(n)` divide the samples: seeded, stratified, exact.

A pure function of (labels or n, fractions, seed): the spec stage calls it too, to know the
size of the training split before any data is loaded (spec/recipe/checks.py), so it needs
numpy only (scikit-learn's folds are imported when asked for).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _allocate(total: int, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integers summing to ``total``, proportional to ``weights`` (largest remainder; ties
    broken at random so no class or split is always favoured)."""
    if total == 0 or weights.sum() == 0:
        return np.zeros(len(weights), np.int64)
    exact = total * weights / weights.sum()
    counts = np.floor(exact + 1e-9).astype(np.int64)
    remainder = exact - counts
    order = np.lexsort((rng.random(len(weights)), -remainder))
    counts[order[: total - counts.sum()]] += 1
    return counts


def _labels_or_n(labels_or_n: int | np.ndarray | Sequence[Any], stratify: bool,
                 ) -> tuple[int, np.ndarray]:
    if isinstance(labels_or_n, (int, np.integer)):
        n, groups = int(labels_or_n), np.zeros(int(labels_or_n), np.int64)
    else:
        labels = np.asarray(labels_or_n)
        n = len(labels)
        # float targets (regression) cannot be stratified: one group
        if stratify and labels.ndim == 1 and labels.dtype.kind in "biuUSO":
            groups = np.unique(labels, return_inverse=True)[1].reshape(-1)
        else:
            groups = np.zeros(n, np.int64)
    if n < 1:
        raise ValueError("cannot split an empty dataset")
    return n, groups


def split_indices(labels_or_n: int | np.ndarray | Sequence[Any],
                  fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0,
                  stratify: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded train / val / test indices (each sorted). Given class labels (integers or
    strings) each class is split in the same proportions; split sizes are exact
    (largest remainder of n · fraction). Two fractions mean no test split."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) not in (2, 3) or any(f < 0 or not math.isfinite(f) for f in fractions):
        raise ValueError(f"split needs 2 or 3 fractions ≥ 0, got {fractions}")
    if abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {' + '.join(map(str, fractions))}"
                         f" = {sum(fractions):g}")
    fractions = (*fractions, 0.0)[:3]
    n, groups = _labels_or_n(labels_or_n, stratify)
    rng = np.random.default_rng(seed)
    totals = _allocate(n, np.array(fractions), rng)
    members = [rng.permutation(np.flatnonzero(groups == g)) for g in range(groups.max() + 1)]
    remaining = np.array([len(m) for m in members])
    taken = np.zeros(len(members), np.int64)
    parts: list[list[np.ndarray]] = [[], [], []]
    for s in range(3):
        counts = remaining if s == 2 else _allocate(int(totals[s]), remaining, rng)
        for g, m in enumerate(members):
            parts[s].append(m[taken[g]: taken[g] + counts[g]])
        taken += counts
        remaining = remaining - counts
    train, val, test = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    return train, val, test


def kfold_indices(labels_or_n: int | np.ndarray | Sequence[Any], k: int, seed: int = 0,
                  stratify: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, val) index pairs, shuffled with ``seed``; stratified when labels are given."""
    from sklearn.model_selection import KFold, StratifiedKFold

    n, groups = _labels_or_n(labels_or_n, stratify)
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= n:
        raise ValueError(f"k-fold needs 2 ≤ k ≤ {n} (the number of samples), got {k}")
    if groups.max() > 0 and np.bincount(groups).max() >= k:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr.astype(np.int64), va.astype(np.int64))
            for tr, va in splitter.split(np.zeros((n, 1)), groups)]


__all__ = ["kfold_indices", "split_indices"]
