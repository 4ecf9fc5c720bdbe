"""`nnspec.train(...)`: compile a spec, then train its model by one of its recipes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nnspec.runtime.data.sources import Dataset, load_data
from nnspec.runtime.loop.trainer import Run
from nnspec.spec.recipe.ir import Recipe


def with_overrides(recipe: Recipe, **changes: Any) -> Recipe:
    """A copy of the recipe with some values replaced, validated again."""
    data = recipe.model_dump()
    data.update({k: v for k, v in changes.items() if v is not None})
    return Recipe.model_validate(data)


def dataset_from_argument(value: str, base_dir: Path | None = None) -> Dataset:
    """`--data`: a built-in set (`iris`), or a file or folder by its suffix: `.csv` (the last
    column is the target), `.npz` (arrays x and y), a folder of class subfolders (images)."""
    path = Path(value)
    if path.suffix == ".csv":
        return load_data("csv", str(path), base_dir=base_dir)
    if path.suffix == ".npz":
        return load_data("npz", str(path), base_dir=base_dir)
    if path.is_dir():
        return load_data("images", str(path), base_dir=base_dir)
    return load_data(value)


def train(
    spec: str | os.PathLike[str],
    recipe: str | None = None,
    *,
    data: Dataset | str | None = None,
    epochs: int | None = None,
    out: str | os.PathLike[str] | None = None,
    device: str | None = None,
    amp: bool = False,
    compile: bool = False,
    resume: str | os.PathLike[str] | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    log: Callable[[str], None] = print,
    nproc: int | None = None,
) -> Run:
    """Train the model of ``spec`` by its recipe ``recipe`` (the file's only one by default).

    Returns the :class:`Run`: its directory, the trained module, the per-epoch history and
    the test metrics. ``stop_after=k`` ends this call after epoch k; ``resume=RUN_DIR``
    continues such a run to the same final weights as an uninterrupted one.

    ``nproc=N`` trains N processes with DistributedDataParallel (gloo on the CPU, NCCL with
    one GPU per process); the recipe's batch is the global batch, split across them. Run in
    processes started by torchrun, every process calls ``train`` and joins the group. The
    returned Run carries rank 0's results (``run.module`` on the CPU for ``nproc``) and,
    in ``run.extra``, ``world_size``, ``ranks_equal`` and each rank's parameter checksum.
    """
    from nnspec.api import load_recipe
    from nnspec.runtime.experiments.run import run_training

    spec_path = Path(spec)
    model, chosen = load_recipe(spec_path, recipe)
    chosen = with_overrides(chosen, epochs=epochs)
    dataset = dataset_from_argument(data) if isinstance(data, str) else data
    return run_training(
        model.loaded, model.graph, chosen, base_dir=spec_path.parent,
        out=Path(out) if out is not None else None, resume=Path(resume) if resume else None,
        device=device, amp=amp, compile=compile, dataset=dataset, progress=progress,
        stop_after=stop_after, log=log, nproc=nproc,
    )
