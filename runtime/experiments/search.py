"""`nnspec search`: train one trial per point of a `search` block and keep the best.

    SEARCH/search.json   the search IR and the spec's hash (a resume checks both)
    SEARCH/spec/...      the spec source files, as compiled
    SEARCH/trials.jsonl  one line per finished trial (appended, fsync'd): its point, its
                         objective and every validation metric (mean ± std over the folds)
    SEARCH/trials/<id>/  the trial's run directory (with `cv`: folds/<f>/ inside)
    SEARCH/results.csv   every trial, one row each       SEARCH/search.png  objective per axis
    SEARCH/best.nn       the spec with the best trial's values: `nnspec train best.nn` (the
                         files it imports are copied beside it, at their relative paths)
    SEARCH/best.json     the best trial's record

A trial scores the model the recipe would keep (runtime/experiments/cv.py kept_row) on the recipe's
validation split, or by `cv kfold(n)`: the mean over the folds. The best trial has the
smallest objective (the largest for accuracy and IoU); a trial whose loss diverged scores
nothing and is listed as such.

Resuming (``resume=SEARCH``) re-derives the same plan (random draws are seeded; refine's
rounds follow from the finished trials) and trains only the points not in trials.jsonl: a
trial interrupted half way is trained again from its start.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnspec.runtime.data.prepare import load_dataset, prepare
from nnspec.runtime.data.sources import Dataset
from nnspec.runtime.experiments.cv import cross_validate, fit_and_score
from nnspec.runtime.experiments.trials import (
    SEARCH_FILE,
    TRIALS_FILE,
    Trial,
    point_key,
)
from nnspec.runtime.loop import checkpoint as ckpt
from nnspec.runtime.loop.trainer import TrainingError
from nnspec.spec.diagnostics import DiagnosticError, render_all
from nnspec.spec.loader import Loaded
from nnspec.spec.search.elaborate import imported_files, trial_recipe, trial_text
from nnspec.spec.search.ir import Point, PointValue, Search, show


@dataclass
class SearchRun:
    """What `search` returns: the directory, every trial, the best one."""

    directory: Path
    search: Search
    trials: list[Trial]
    best: Trial | None
    finished: bool  # False when ``max_trials`` ended the call early


class Searcher:
    """Trains the trials of one search into its directory, reusing the finished ones."""

    def __init__(self, loaded: Loaded, search: Search, directory: Path, dataset: Dataset | None,
                 spec_hash: str, *, device: str | None, log: Callable[[str], None],
                 done: list[Trial], base_dir: Path | None):
        self.loaded, self.search, self.directory = loaded, search, directory
        self.dataset, self.spec_hash, self.device, self.log = dataset, spec_hash, device, log
        self.base_dir = base_dir
        self.done = {point_key(t.point): t for t in done}
        self.trials: list[Trial] = []  # this plan's, in order
        self.next_id = max((t.id for t in done), default=0) + 1
        self.trained = 0  # this call
        self.datasets: dict[str, Dataset] = {}

    # -- the plan ----------------------------------------------------------------------------
    def plan(self) -> Iterator[list[tuple[Point, int]]]:
        """The points of each round (a grid and random search have one)."""
        search, strategy = self.search, self.search.strategy
        if strategy.kind == "random":
            yield [(p, 1) for p in self._random_points()]
            return
        grids = {a.key: a.space.grid(strategy.points if a.numeric else None) for a in search.axes}
        yield [(p, 1) for p in _product(grids)]
        for round_ in range(2, (strategy.rounds if strategy.kind == "refine" else 1) + 1):
            best = self.best()
            if best is None:
                self.log(f"refine: no trial of round {round_ - 1} scored; no finer round")
                return
            grids = self._finer(grids, best.point)
            yield [(p, round_) for p in _product(grids)]

    def _random_points(self) -> list[Point]:
        strategy = self.search.strategy
        rng = np.random.default_rng(strategy.seed)
        points: list[Point] = []
        seen: set[str] = set()
        attempts = 0
        while len(points) < (strategy.trials or 0) and attempts < 100 * (strategy.trials or 0):
            attempts += 1
            point = {a.key: a.space.draw(rng) for a in self.search.axes}
            if point_key(point) not in seen:
                seen.add(point_key(point))
                points.append(point)
        if len(points) < (strategy.trials or 0):
            self.log(f"random: the space holds only {len(points)} distinct points")
        return points

    def _finer(self, grids: dict[str, list[PointValue]], best: Point) -> dict[str, list[PointValue]]:
        """Between the best value's neighbours in the last grid, as many points again; a
        choice stays at the best's value."""
        finer: dict[str, list[PointValue]] = {}
        for axis in self.search.axes:
            value = best[axis.key]
            if not axis.numeric:
                finer[axis.key] = [value]
                continue
            # the best may come from an earlier round: its neighbours among every value tried
            tried = {float(t.point[axis.key]) for t in self.trials} | {float(v) for v in grids[axis.key]}
            values = sorted(tried)
            i = values.index(float(value))
            low, high = values[max(i - 1, 0)], values[min(i + 1, len(values) - 1)]
            count = len(grids[axis.key])
            grid = axis.space.grid(count, low, high) if low < high else [value]
            # a value the 4-digit rounding put a hair off a known one is that one (0.3161 → 0.3162)
            finer[axis.key] = list(dict.fromkeys(
                next((known for known in grids[axis.key] if abs(float(v) - float(known)) <= 1e-3 * abs(float(known))), v)
                for v in grid))
        return finer

    # -- trials ------------------------------------------------------------------------------
    def best(self) -> Trial | None:
        scored = [t for t in self.trials if t.objective is not None]
        if not scored:
            return None
        sign = 1 if self.search.mode == "min" else -1
        return min(scored, key=lambda t: sign * t.objective)  # type: ignore[operator]

    def run(self, max_trials: int | None = None) -> bool:
        """Train every trial of the plan; False when ``max_trials`` new trials were trained
        and the plan goes on."""
        for points in self.plan():
            total = len(points)
            for n, (point, round_) in enumerate(points, 1):
                key = point_key(point)
                if key in self.done:
                    trial = self.done[key]
                    if trial not in self.trials:
                        self.trials.append(trial)
                        self.log(f"{self._label(trial, n, total)}: {self._score(trial)} "
                                 "(finished before)")
                    continue
                if max_trials is not None and self.trained >= max_trials:
                    return False
                trial = self.train(point, round_)
                self.trained += 1
                self.done[key] = trial
                self.trials.append(trial)
                self.log(f"{self._label(trial, n, total)}: {self._score(trial)} "
                         f"({trial.seconds:.1f} s)")
        return True

    def train(self, point: Point, round_: int) -> Trial:
        trial = Trial(id=self.next_id, round=round_, point=point, objective=None)
        self.next_id += 1
        folder = self.directory / "trials" / str(trial.id)
        if folder.exists():  # a trial interrupted before its record was written
            shutil.rmtree(folder)
        began = time.perf_counter()
        try:
            graph, recipe = trial_recipe(self.loaded, self.search, point)
        except DiagnosticError as exc:  # a drawn value the range's ends did not show
            trial.status, trial.reason = "invalid", render_all(exc.diagnostics, self.loaded.sources)
            self._append(trial)
            return trial
        dataset = self._dataset(recipe)
        device = self.device or recipe.device  # --device, else the recipe's
        if self.search.folds:
            result = cross_validate(graph, recipe, dataset, folder, self.search.folds,
                                    loaded=self.loaded, spec_hash=self.spec_hash,
                                    device=device, log=_quiet)
            fits, diverged = result.folds, result.diverged
            trial.mean, trial.std = result.mean, result.std
        else:
            fit = fit_and_score(graph, recipe, prepare(recipe, graph, dataset), folder,
                                loaded=self.loaded, spec_hash=self.spec_hash, device=device)
            fits, diverged = [fit], fit.diverged
            trial.mean = fit.metrics
        trial.epochs = int(np.mean([f.epochs_run for f in fits])) if fits else 0
        trial.seconds = time.perf_counter() - began
        if diverged:  # a loss that became NaN, or a fit that could not run (`failed`)
            status = "diverged" if "the loss became" in diverged else "failed"
            trial.status, trial.reason, trial.mean, trial.std = status, diverged, {}, {}
        else:
            value = trial.mean.get(self.search.objective)
            trial.objective = float(value) if value is not None and np.isfinite(value) else None
            if trial.objective is None:
                trial.status, trial.reason = "diverged", f"{self.search.objective} is {value}"
        self._append(trial)
        return trial

    def _dataset(self, recipe: Any) -> Dataset:
        """The data of a trial: loaded once per distinct data line (a search may vary it)."""
        if self.dataset is not None:  # given by the caller (`--data`): every trial's
            return self.dataset
        key = recipe.data.model_dump_json()
        if key not in self.datasets:
            self.datasets[key] = load_dataset(recipe, self.base_dir)
        return self.datasets[key]

    def _append(self, trial: Trial) -> None:
        with open(self.directory / TRIALS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(trial.record()) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _label(self, trial: Trial, n: int, total: int) -> str:
        values = " ".join(f"{k}={show(v)}" for k, v in trial.point.items())
        stage = f"round {trial.round}, " if self.search.strategy.kind == "refine" else ""
        return f"trial {trial.id} ({stage}{n}/{total}) {values}"

    def _score(self, trial: Trial) -> str:
        if trial.objective is None:
            return trial.status + (f": {trial.reason.splitlines()[0]}" if trial.reason else "")
        spread = f" ± {trial.std[self.search.objective]:.2g}" if trial.std else ""
        return f"{self.search.objective} {trial.objective:.5g}{spread}"


def _product(grids: dict[str, list[PointValue]]) -> list[Point]:
    keys = list(grids)
    return [dict(zip(keys, values)) for values in itertools.product(*(grids[k] for k in keys))]


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _quiet(line: str) -> None:
    return None


# -- the directory ----------------------------------------------------------------------------
def open_search_directory(loaded: Loaded, search: Search, spec_hash: str, *, out: Path | None,
                          resume: Path | None) -> tuple[Path, list[Trial]]:
    """The search directory and its finished trials: the one to resume (checked against the
    spec), or a new one with the inputs."""
    from nnspec.runtime.experiments.directory import check_new_directory, new_run_directory

    if resume is not None:
        record_path = resume / SEARCH_FILE
        if not record_path.is_file():
            raise TrainingError(f"`{resume}` is not a search directory (no {SEARCH_FILE})",
                                help="give the directory `nnspec search` printed at its start")
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            saved = Search.model_validate(record["search"])
            saved_hash = record["spec_hash"]
        except (OSError, ValueError, KeyError, TypeError):
            raise TrainingError(f"`{record_path}` is damaged", help="start the search again "
                                "in a new directory") from None
        if saved_hash != spec_hash or saved != search:
            raise TrainingError(f"`{resume}` holds a search of another spec (the file or the "
                                "search changed since)", help="search again in a new directory "
                                "(--out), or restore the spec it was started with")
        done = _read_trials(resume / TRIALS_FILE)
        # a line cut short by the interruption goes, so the next records follow whole ones
        ckpt.write_text(resume / TRIALS_FILE, "".join(json.dumps(t.record()) + "\n" for t in done))
        return resume, done
    directory = out if out is not None else new_run_directory(Path("runs"), f"search-{search.name}")
    if (directory / SEARCH_FILE).exists():
        raise TrainingError(f"`{directory}` already holds a search",
                            help=f"continue it with --resume {directory}, or choose another --out")
    check_new_directory(directory, "search")
    directory.mkdir(parents=True, exist_ok=True)
    root = loaded.sources.get(loaded.root.file)
    assert root is not None
    ckpt.write_text(directory / "spec" / Path(loaded.root.file).name, root.text)
    for relative, text in imported_files(loaded).items():  # the folder tree, as the root sees it
        ckpt.write_text(directory / "spec" / relative, text)
    ckpt.write_text(directory / SEARCH_FILE, json.dumps(
        {"search": search.model_dump(mode="json"), "spec_hash": spec_hash}, indent=2) + "\n")
    return directory, []


def _read_trials(path: Path) -> list[Trial]:
    """The finished trials; a last line cut short by an interruption is dropped."""
    if not path.is_file():
        return []
    trials = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        try:
            trials.append(Trial.from_record(json.loads(line)))
        except (ValueError, TypeError):
            if n < len(lines):
                raise TrainingError(f"`{path}` line {n} is damaged",
                                    help="remove that line: its trial is trained again") from None
    return trials


def run_search(loaded: Loaded, search: Search, *, spec_path: Path, out: Path | None = None,
               resume: Path | None = None, device: str | None = None,
               dataset: Dataset | None = None, max_trials: int | None = None,
               log: Callable[[str], None] = print) -> SearchRun:
    """Run (or resume) ``search`` of the spec ``loaded`` read from ``spec_path``; write every
    trial, the results, the plot and the best spec into the search directory."""
    from nnspec.runtime.experiments.directory import RunLock, new_run_directory

    spec_hash = loaded.spec_hash()
    if resume is None and out is None:
        out = new_run_directory(Path("runs"), f"search-{search.name}")
    # one search at a time writes into a search directory (its trials are run directories)
    with RunLock(resume if resume is not None else out, create=resume is None):
        return _run_search(loaded, search, spec_hash, spec_path=spec_path, out=out,
                           resume=resume, device=device, dataset=dataset,
                           max_trials=max_trials, log=log)


def _run_search(loaded: Loaded, search: Search, spec_hash: str, *, spec_path: Path,
                out: Path | None, resume: Path | None, device: str | None,
                dataset: Dataset | None, max_trials: int | None,
                log: Callable[[str], None]) -> SearchRun:
    from nnspec.runtime.experiments.search_report import write_results

    directory, done = open_search_directory(loaded, search, spec_hash, out=out, resume=resume)
    log(f"search directory: {directory}")
    log(search.describe())
    if done:
        log(f"resuming: {_count(len(done), 'trial')} finished before")
    searcher = Searcher(loaded, search, directory, dataset, spec_hash,
                        device=device, log=log, done=done, base_dir=spec_path.parent)
    finished = searcher.run(max_trials)
    best = searcher.best()
    best_text = None
    if best is not None:
        best_text = trial_text(loaded, search, best.point, relocate=directory)
        for relative, text in imported_files(loaded).items():  # best.nn's imports, beside it
            ckpt.write_text(directory / relative, text)
    write_results(directory, search, searcher.trials, best, best_text, finished=finished)
    return SearchRun(directory=directory, search=search, trials=searcher.trials, best=best,
                     finished=finished)


__all__ = ["SearchRun", "Trial", "run_search"]
