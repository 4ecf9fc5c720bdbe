"""`nnspec.search(...)`: compile a spec, then run one of its `search` blocks."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from nnspec.runtime.data.sources import Dataset
from nnspec.runtime.experiments.search import SearchRun


def search(
    spec: str | os.PathLike[str],
    name: str | None = None,
    *,
    data: Dataset | str | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    device: str | None = None,
    max_trials: int | None = None,
    log: Callable[[str], None] = print,
) -> SearchRun:
    """Run the search ``name`` of ``spec`` (the file's only one by default): one trial per
    point, each trained and scored on the validation split or by cross-validation.

    Returns the :class:`SearchRun`: its directory (results.csv, search.png, best.nn), every
    trial and the best. ``resume=SEARCH_DIR`` continues an interrupted search without
    training its finished trials again; ``max_trials=k`` ends this call after k new trials.
    """
    from nnspec.api import open_spec
    from nnspec.runtime.experiments.search import run_search
    from nnspec.spec.search.elaborate import load_search
    from nnspec.training import dataset_from_argument

    spec_path = Path(spec)
    loaded = open_spec(spec_path)
    chosen = load_search(loaded, name)
    dataset = dataset_from_argument(data) if isinstance(data, str) else data
    return run_search(loaded, chosen, spec_path=spec_path, out=Path(out) if out else None,
                      resume=Path(resume) if resume else None, device=device, dataset=dataset,
                      max_trials=max_trials, log=log)
