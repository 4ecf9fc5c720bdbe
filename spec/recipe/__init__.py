"""nnspec.spec.recipe: the recipe language (`train` blocks), built on the core language.

A `train Model { ... }` block is read from the AST (builder.py, with each setting's
signature in args.py and tables.py), checked against its model and data (checks.py), and
becomes a frozen :class:`Recipe` (ir.py). ``splits.py`` says how a recipe divides its data
and ``rundir.py`` which file of a run directory is the run's model: the spec stage needs
both before anything runs, and the runtime uses the same functions.
"""

from nnspec.spec.recipe.elaborate import check_recipes, elaborate_recipe, find_recipe, pick_named
from nnspec.spec.recipe.ir import CLASSIFICATION_LOSSES, Recipe

__all__ = ["CLASSIFICATION_LOSSES", "Recipe", "check_recipes", "elaborate_recipe", "find_recipe",
           "pick_named"]
