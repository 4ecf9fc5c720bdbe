"""nnspec.spec.search: the search language (`search` blocks), built on the recipe language.

A `search Recipe { strategy ...; PATH in SPACE; ... }` block becomes a frozen :class:`Search`
(ir.py); each of its points is a trial recipe made by putting the values into the recipe's
syntax tree and checking it as any recipe (elaborate.py), so an error in a searched value
is located at that value.
"""

from nnspec.spec.search.elaborate import check_searches, load_search, trial_recipe, trial_text
from nnspec.spec.search.ir import Point, Search

__all__ = ["Point", "Search", "check_searches", "load_search", "trial_recipe", "trial_text"]
