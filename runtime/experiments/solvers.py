"""The epoch each `solver` of a recipe trains with, handed to the loop (runtime/loop/hooks.py)."""

from __future__ import annotations

from nnspec.runtime.experiments.knn import fit_epoch
from nnspec.runtime.experiments.solver import solve_epoch
from nnspec.runtime.loop.trainer import EpochFit
from nnspec.spec.recipe.ir import Recipe


def epoch_fit(recipe: Recipe) -> EpochFit | None:
    """None for `solver gradient` (the loop's own epochs); else the solver's one pass:
    θ of the normal equation (solver.py), or kNN's stored training split (knn.py)."""
    if recipe.solver == "normal_equation":
        return solve_epoch
    if recipe.solver == "knn":
        return fit_epoch
    return None


__all__ = ["epoch_fit"]
