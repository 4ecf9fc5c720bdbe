"""Did-you-mean by edit distance, bounded in cost.

A suggestion is only worth making for a name a person typed, so names longer than
:data:`MAX_NAME` get none, and a candidate whose length alone puts it out of reach is skipped
before the quadratic distance is computed. A check therefore spends at most
``MAX_NAME**2`` steps per candidate, whatever the names of a (generated) spec.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_NAME = 64


def edit_distance(a: str, b: str, limit: int | None = None) -> int:
    """Levenshtein distance with transpositions counted as one edit (Damerau, restricted).
    With ``limit``, stops as soon as the distance is known to exceed it (returns limit + 1)."""
    if limit is not None and abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if limit is not None and min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate within a third of the name's length (at least one edit)."""
    if len(name) > MAX_NAME:
        return None
    best, best_distance = None, max(1, len(name) // 3)
    lowered = name.lower()
    for candidate in sorted(set(candidates)):
        if len(candidate) > MAX_NAME or abs(len(candidate) - len(name)) > best_distance:
            continue
        d = edit_distance(lowered, candidate.lower(), best_distance)
        if d < best_distance or (d == best_distance and best is None):
            best, best_distance = candidate, d
    return best


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    match = closest(name, candidates)
    return f"did you mean `{match}`?" if match else None
