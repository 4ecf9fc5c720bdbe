"""What a search leaves for people: results.csv, the table, search.png, best.nn and best.json."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnspec.runtime.experiments.trials import BEST_FILE, BEST_SPEC, PLOT_FILE, RESULTS_FILE, Trial
from nnspec.runtime.loop.checkpoint import atomic_write, write_text
from nnspec.spec.search.ir import Axis, Search, show

if TYPE_CHECKING:
    from rich.table import Table


SHOWN_ROWS = 15


def ranked(search: Search, trials: Sequence[Trial]) -> list[Trial]:
    """Best first; the trials without a score last, in the order they ran."""
    sign = 1 if search.mode == "min" else -1
    return sorted(trials, key=lambda t: (t.objective is None,
                                         sign * t.objective if t.objective is not None else 0, t.id))


def csv_text(search: Search, trials: Sequence[Trial]) -> str:
    """One row per trial, in the order they ran: its values, its objective, the mean (and std
    over the folds) of every validation metric, its status, epochs and seconds."""
    metrics = sorted({k for t in trials for k in t.mean})
    columns = ["trial", "round", *(a.key for a in search.axes), f"objective ({search.objective})",
               *metrics, *(f"{m}_std" for m in metrics if search.folds), "status", "epochs", "seconds"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for t in sorted(trials, key=lambda t: t.id):
        row: list[Any] = [t.id, t.round, *(show(t.point[a.key]) for a in search.axes),
                          "" if t.objective is None else repr(t.objective)]
        row += [repr(t.mean[m]) if m in t.mean else "" for m in metrics]
        if search.folds:
            row += [repr(t.std[m]) if m in t.std else "" for m in metrics]
        row += [t.status, t.epochs, f"{t.seconds:.3f}"]
        writer.writerow(row)
    return buffer.getvalue()


def table(search: Search, trials: Sequence[Trial], rows: int = SHOWN_ROWS) -> Table:
    """The best trials first, as a rich table."""
    from rich.table import Table

    count = f"{len(trials)} trial{'' if len(trials) == 1 else 's'}"
    view = Table(show_edge=False, pad_edge=False, title=f"search {search.name}: "
                 f"{count}, best {search.objective} first")
    view.add_column("#", justify="right")
    view.add_column("trial", justify="right")
    for axis in search.axes:
        view.add_column(axis.key, justify="right" if axis.numeric else "left")
    view.add_column(search.objective + (" (mean ± std)" if search.folds else ""), justify="right")
    view.add_column("status")
    for rank, t in enumerate(ranked(search, trials)[:rows], 1):
        score = "" if t.objective is None else f"{t.objective:.5g}"
        if t.objective is not None and t.std:
            score += f" ± {t.std[search.objective]:.2g}"
        view.add_row(str(rank), str(t.id), *(show(t.point[a.key]) for a in search.axes), score,
                     t.status)
    return view


def _numeric(axis: Axis, values: Sequence[Any]) -> list[float] | None:
    """An axis's values as numbers: a range's, or a list's when every item is a number."""
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def plot(path: Path, search: Search, trials: Sequence[Trial], best: Trial | None) -> None:
    """search.png: the objective against each searched value, one panel per axis (a log axis
    for a log range; a list of names as categories); diverged trials marked at the top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = search.axes
    fig, panels = plt.subplots(1, len(axes), figsize=(4.6 * len(axes), 3.6), squeeze=False)
    scored = [t for t in trials if t.objective is not None]
    failed = [t for t in trials if t.objective is None]
    values = [t.objective for t in scored]
    top = max(values, default=1.0)
    spread = bool(values) and min(values) > 0 and top / min(values) > 100
    for panel, axis in zip(panels[0], axes, strict=True):
        order = [str(c) for c in axis.space.choices]
        numbers = _numeric(axis, [t.point[axis.key] for t in trials])
        where = {id(t): float(t.point[axis.key]) if numbers is not None
                 else float(order.index(str(t.point[axis.key]))) for t in trials}
        for round_ in sorted({t.round for t in scored}):
            these = [t for t in scored if t.round == round_]
            panel.scatter([where[id(t)] for t in these], [t.objective for t in these], s=22,
                          label=f"round {round_}" if search.strategy.kind == "refine" else "trials")
        if failed:
            panel.scatter([where[id(t)] for t in failed], [top] * len(failed), marker="x", c="red",
                          label="not scored")
        if best is not None:
            panel.scatter([where[id(best)]], [best.objective], marker="*", s=180, c="orange",
                          edgecolors="black", label="best", zorder=3)
        if axis.space.kind == "log":
            panel.set_xscale("log")
        if spread:  # losses that span decades (a learning rate near divergence)
            panel.set_yscale("log")
        if numbers is None:
            panel.set_xticks(range(len(order)), order, rotation=20)
        panel.set_xlabel(axis.key)
        panel.set_ylabel(search.objective)
        panel.grid(alpha=0.3)
    panels[0][0].legend(fontsize=8)
    fig.suptitle(f"search {search.name}: {search.objective} "
                 f"({'mean over ' + str(search.folds) + ' folds' if search.folds else 'validation split'})")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def write_results(directory: Path, search: Search, trials: Sequence[Trial], best: Trial | None,
                  best_text: str | None, *, finished: bool) -> None:

    write_text(directory / RESULTS_FILE, csv_text(search, trials))
    if trials:
        plot(directory / PLOT_FILE, search, trials, best)
    if best is not None and best_text is not None:
        header = (f"# The best trial of search `{search.name}` (trial {best.id}: "
                  + ", ".join(f"{k} = {show(v)}" for k, v in best.point.items())
                  + f"; {search.objective} {best.objective:.6g}"
                  + ("" if finished else "; the search was not finished") + ").\n"
                  f"# Train it with `nnspec train {BEST_SPEC}`.\n\n")
        write_text(directory / BEST_SPEC, header + best_text)
        write_text(directory / BEST_FILE, json.dumps(
            {**best.record(), "objective_name": search.objective, "mode": search.mode,
             "finished": finished, "spec": BEST_SPEC}, indent=2) + "\n")


__all__ = ["csv_text", "plot", "ranked", "table", "write_results"]

