"""Hyperparameter search (`search` blocks, `nnspec search`): the syntax and its located errors,
each trial's recipe built in the syntax tree, the best spec written back as text, the three
strategies, the known optimum of a known-shaped problem, resume, and the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

import nnspec  # noqa: E402
from nnspec.api import load_recipe, open_spec  # noqa: E402
from nnspec.cli import app  # noqa: E402
from nnspec.runtime.data.sources import load_builtin  # noqa: E402
from nnspec.runtime.loop.trainer import TrainingError  # noqa: E402
from nnspec.spec import codes  # noqa: E402
from nnspec.spec.search.elaborate import check_searches, load_search, trial_recipe, trial_text  # noqa: E402
from nnspec.spec.search.ir import Search, Space  # noqa: E402

QUIET = {"log": lambda line: None}

MODEL = """\
model Reg(features: int = 1, hidden: int = 4) {
    input x: [features]
    x -> linear(1) -> output
}
"""
RECIPE = """\
train Reg {
    data       csv("bmi.csv", target="y")
    split      0.6 / 0.2 / 0.2
    batch      full
    epochs     1
    loss       mse
    optimizer  gd(lr=0.2)
    metrics    mae
    seed       0
}
"""


def write_bmi(folder: Path) -> None:
    """One feature of scikit-learn's diabetes data (body mass index) and the disease score.
    Standardised on the training split, the mse J(w, b) = mean((w·x + b − y)²) has the
    Hessian 2·[[mean x², mean x], [mean x, 1]] = 2·I: every direction has curvature λ = 2, so
    one gradient step of lr = 1/λ = 0.5 lands on the least-squares solution (Newton's step),
    and after one step the error is (1 − 2·lr)·(θ0 − θ*): a valley with its floor at 0.5."""
    data = load_builtin("diabetes")
    rows = ["bmi,y"] + [f"{x!r},{y!r}" for x, y in zip(data.x[:, 2].tolist(), data.y.tolist())]
    (folder / "bmi.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def spec(folder: Path, search: str, recipe: str = RECIPE) -> Path:
    write_bmi(folder)
    path = folder / "reg.nn"
    path.write_text(MODEL + "\n" + recipe + "\n" + search, encoding="utf-8")
    return path


def search_errors(folder: Path, search: str, recipe: str = RECIPE):
    loaded = open_spec(spec(folder, search, recipe))
    found, diags = check_searches(loaded)
    return [d for d in diags if d.severity == "error"]


# == the language ==============================================================================
def test_a_search_block_reads_into_plain_data(tmp_path):
    path = spec(tmp_path, """\
search Reg as lr {
    strategy  random(trials=4, seed=3)
    optimizer.lr in log(1e-3, 1)
    model.hidden in linear(2, 10, points=3)
    batch in [8, 16, full]
    objective val_mae
}
""")
    found = load_search(open_spec(path))
    assert (found.name, found.recipe, found.objective, found.mode) == ("lr", "Reg", "val_mae", "min")
    assert (found.strategy.kind, found.strategy.trials, found.strategy.seed) == ("random", 4, 3)
    assert [a.key for a in found.axes] == ["optimizer.lr", "model.hidden", "batch"]
    assert found.axes[1].space == Space(kind="linear", low=2, high=10, points=3, integer=True)
    assert found.axes[2].space.choices == ("8", "16", "full")
    assert found.axes[0].span.line == MODEL.count("\n") + RECIPE.count("\n") + 5
    assert Search.model_validate_json(found.model_dump_json()) == found


def test_in_stays_a_name_outside_search_blocks():
    model = nnspec.load(text="model M(in: int = 3) {\n    input x: [4]\n    x -> linear(in) -> output\n}\n")
    assert model.graph.outputs[0].type.shape == (3,)


def test_ranges_give_exact_grids_and_seeded_draws():
    assert Space(kind="log", low=1e-3, high=1, points=4).grid() == [0.001, 0.01, 0.1, 1.0]
    assert Space(kind="log", low=16, high=256, integer=True).grid() == [16, 32, 64, 128, 256]
    assert Space(kind="linear", low=0.1, high=0.9, points=9).grid() == \
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert Space(kind="linear", low=1, high=3, points=5, integer=True).grid() == [1, 2, 3]
    space = Space(kind="log", low=1e-4, high=1e-1)
    draws = [space.draw(np.random.default_rng(7)) for _ in range(2)]
    assert draws[0] == draws[1] and 1e-4 <= draws[0] <= 1e-1
    rng = np.random.default_rng(0)
    exponents = np.log10([space.draw(rng) for _ in range(4000)])
    # uniform in log space: each decade of the three holds a third of the draws (± 3σ)
    shares = np.histogram(exponents, bins=[-4, -3, -2, -1])[0] / 4000
    assert np.all(np.abs(shares - 1 / 3) < 3 * np.sqrt(2 / 9 / 4000))


BAD = [
    # (search block, code, message, line offset in the block, column)
    ("search Rge { optimizer.lr in log(1e-3, 1) }", codes.SEARCH,
     "no recipe named `Rge` to search", 0, 8),
    ("search Reg { optimizer.lrr in log(1e-3, 1) }", codes.SEARCH,
     "`optimizer` has no `lrr` to vary", 0, 24),
    ("search Reg { optimiser.lr in log(1e-3, 1) }", codes.SEARCH,
     "unknown setting `optimiser`", 0, 14),
    ("search Reg { optimizer.lr in log(0, 1) }", codes.SEARCH,
     "a log range needs low > 0, got 0", 0, 34),
    ("search Reg { optimizer.lr in log(1, 0.1) }", codes.SEARCH,
     "a range needs low < high, got 1 and 0.1", 0, 30),
    ("search Reg { optimizer.lr in [0.1, -1] }", codes.RECIPE_VALUE,
     "`lr` of `gd` must be > 0, got -1.0", 0, 36),
    ("search Reg { batch in 32 }", codes.SEARCH,
     "expected the values to search: `log(a, b)`, `linear(a, b)` or a list `[a, b, c]`", 0, 23),
    ("search Reg {\n  objective val_accuracy\n  batch in [8, 16]\n}", codes.SEARCH,
     "recipe `Reg` does not compute `val_accuracy`", 1, 13),
    ("search Reg {\n  epochs 3\n  batch in [8, 16]\n}", codes.SEARCH,
     "unknown search setting `epochs`", 1, 3),
    ("search Reg { model.width in [1, 2] }", codes.SEARCH,
     "model `Reg` has no parameter `width`", 0, 20),
    ("search Reg {\n  batch in [8, 16]\n  batch in [4]\n}", codes.SEARCH,
     "`batch` is searched twice", 2, 3),
    ("search Reg {\n  optimizer in [adam, sgd]\n  optimizer.lr in [0.1]\n}", codes.SEARCH,
     "`optimizer.lr` and `optimizer` vary the same setting", 2, 3),
    ("search Reg { }", codes.SEARCH, "search `Reg` varies nothing", 0, 8),
    ("search Reg { batch in [8, 8] }", codes.SEARCH, "`8` is listed twice", 0, 23),
    ("search Reg { epochs in linear(1, 3.5) }", codes.RECIPE_VALUE,
     "`epochs` must be an integer, got 1.0", 0, 24),
    ("search Reg { optimizer in [adma(lr=0.1)] }", codes.RECIPE_CHOICE,
     "unknown optimizer `adma`", 0, 28),
    ("search Reg { regularize.l2 in log(1e-5, 1e-2) }", codes.SEARCH,
     "recipe `Reg` has no `regularize` line to set `l2` in", 0, 25),
    ("search Reg {\n  cv kfold(3, k=(1, 3))\n  batch in [8, 16]\n}", codes.SEARCH,
     "a search scores every trial by k-fold cross-validation; `k=` chooses kNN's neighbours "
     "in a recipe", 1, 17),
    ("search Reg {\n  strategy refine\n  batch in [8, 16]\n}", codes.SEARCH,
     "`refine` narrows a log or linear range, but every axis is a list", 1, 3),
]


@pytest.mark.parametrize("block, code, message, line, col", BAD, ids=[b[2][:40] for b in BAD])
def test_a_wrong_search_is_a_located_error(tmp_path, block, code, message, line, col):
    first = MODEL.count("\n") + RECIPE.count("\n") + 3  # the line of `search`
    (diag,) = search_errors(tmp_path, block + "\n")
    assert (diag.code, diag.message) == (code, message)
    assert (diag.span.line, diag.span.col) == (first + line, col)


def test_an_error_of_a_searched_value_names_the_value(tmp_path):
    (diag,) = search_errors(tmp_path, "search Reg { optimizer.lr in [0.1, -1] }\n")
    assert diag.notes[-1] == "with optimizer.lr = -1 (search `Reg`)"


def test_a_search_without_a_validation_split_needs_cv(tmp_path):
    recipe = RECIPE.replace("0.6 / 0.2 / 0.2", "0.8 / 0 / 0.2")
    (diag,) = search_errors(tmp_path, "search Reg { optimizer.lr in [0.1, 0.2] }\n", recipe)
    assert diag.message == ("the search scores each trial on the validation split, but recipe "
                            "`Reg` has none (split 0.8 / 0 / 0.2)")
    assert search_errors(tmp_path, "search Reg {\n  cv kfold(3)\n  optimizer.lr in [0.1, 0.2]\n}\n",
                         recipe) == []


def test_nnspec_check_reports_searches(tmp_path):
    path = spec(tmp_path, "search Reg as lr { optimizer.lr in log(1e-3, 1, points=4) }\n")
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert ("search lr: recipe Reg, grid of 4; optimizer.lr in log(0.001, 1); minimise val_loss "
            "on the validation split") in result.stdout
    payload = json.loads(CliRunner().invoke(app, ["check", str(path), "--json"]).stdout)
    assert payload["searches"][0]["axes"][0]["key"] == "optimizer.lr"
    path.write_text(path.read_text().replace("1e-3", "-1"))
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1 and "error[E5016]: a log range needs low > 0, got -1" in result.output


# == trials: in the syntax tree, and written back as text =========================================
AXES = """\
search Reg as many {
    optimizer in [adam]
    model.hidden in [8]
    schedule in [step(10)]
    early_stop.patience in [3]
}
"""


def test_a_trial_puts_each_value_in_place(tmp_path):
    recipe = RECIPE.replace("    seed       0\n", "    seed       0\n    early_stop patience=5\n")
    path = spec(tmp_path, """\
search Reg {
    optimizer.lr in [0.05]
    model.hidden in [8]
    schedule in [step(10)]
    early_stop.patience in [3]
    regularize.l2 in [0.01]
}
""", recipe.replace("    loss       mse\n", "    loss       mse\n    regularize l2(1e-4), max_norm(3)\n"))
    loaded = open_spec(path)
    found = load_search(loaded)
    point = {"optimizer.lr": "0.05", "model.hidden": "8", "schedule": "step(10)",
             "early_stop.patience": "3", "regularize.l2": "0.01"}
    graph, recipe_ir = trial_recipe(loaded, found, point)
    assert recipe_ir.optimizer.lr == 0.05 and recipe_ir.model_args == {"hidden": 8}
    assert recipe_ir.schedule.kind == "step" and recipe_ir.schedule.args["every"] == 10
    assert recipe_ir.early_stop.patience == 3
    assert [(r.kind, r.value) for r in recipe_ir.regularize] == [("l2", 0.01), ("max_norm", 3.0)]
    # the text of the best trial is a spec that trains exactly that recipe
    text = trial_text(loaded, found, point)
    assert "search Reg" not in text and "schedule step(10)  # searched: Reg" in text
    assert "train Reg(hidden=8) {" in text and "optimizer  gd(lr=0.05)" in text
    assert "regularize l2(0.01), max_norm(3)" in text and "early_stop patience=3" in text
    (tmp_path / "best.nn").write_text(text)
    _, again = load_recipe(tmp_path / "best.nn")
    assert again.model_dump(exclude={"span"}) == recipe_ir.model_dump(exclude={"span"})


def test_arguments_added_to_a_bare_choice_share_one_call(tmp_path):
    recipe = RECIPE.replace("optimizer  gd(lr=0.2)", "optimizer  adam")
    path = spec(tmp_path, "search Reg {\n    optimizer.lr in [0.01]\n    optimizer.eps in [1e-6]\n}\n",
                recipe)
    loaded = open_spec(path)
    found = load_search(loaded)
    point = {"optimizer.lr": "0.01", "optimizer.eps": "1e-6"}
    _, recipe_ir = trial_recipe(loaded, found, point)
    assert (recipe_ir.optimizer.lr, recipe_ir.optimizer.eps) == (0.01, 1e-6)
    assert "optimizer  adam(lr=0.01, eps=1e-6)" in trial_text(loaded, found, point)


def test_the_best_spec_finds_its_imports_in_the_search_directory(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.nn").write_text(
        "block Dense(units: int) {\n    input x\n    x -> linear(units) -> output\n}\n")
    write_bmi(tmp_path)
    (tmp_path / "reg.nn").write_text(
        'import "lib/blocks.nn"\n\nmodel Reg {\n    input x: [1]\n    x -> Dense(1) -> output\n}\n\n'
        + RECIPE + "\n# the learning rate\nsearch Reg { optimizer.lr in [0.1, 0.3] }\n")
    result = nnspec.search(tmp_path / "reg.nn", out=tmp_path / "runs" / "s", **QUIET)
    text = (result.directory / "best.nn").read_text()
    assert 'import "lib/blocks.nn"' in text and "# the learning rate" not in text
    assert (result.directory / "lib" / "blocks.nn").is_file()
    assert (result.directory / "spec" / "lib" / "blocks.nn").is_file()
    model = nnspec.load(result.directory / "best.nn")
    assert model.summary().total_params == 2


# == running a search ==============================================================================
VALLEY = "search Reg as lr {\n    optimizer.lr in linear(0.1, 0.9, points=9)\n}\n"


def test_grid_search_finds_the_newton_step_of_a_quadratic(tmp_path):
    """The known shape: after one step the parameters are θ* + (1 − 2·lr)(θ0 − θ*), so the
    validation loss falls to its floor near lr = 0.5 and rises again."""
    result = nnspec.search(spec(tmp_path, VALLEY), out=tmp_path / "s", **QUIET)
    by_lr = {t.point["optimizer.lr"]: t.objective for t in result.trials}
    assert list(by_lr) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert result.best.point == {"optimizer.lr": 0.5}
    losses = list(by_lr.values())
    assert all(a > b for a, b in zip(losses[:4], losses[1:5]))  # down to 0.5
    assert all(a < b for a, b in zip(losses[4:-1], losses[5:]))  # up from 0.5
    # θ1 = θ0 − lr·∇J(θ0) is affine in lr, so the validation loss is a parabola in lr: the
    # nine scores fit one to float32 rounding, with its vertex near the Newton step 0.5 (the
    # validation split's own optimum lies a little off the training split's)
    fit, residual, *_ = np.polyfit(list(by_lr), losses, 2, full=True)
    assert np.sqrt(residual[0] / 9) < 1e-4 * min(losses)
    assert abs(-fit[1] / (2 * fit[0]) - 0.5) < 0.05
    rows = list(csv.DictReader((result.directory / "results.csv").open()))
    assert [r["optimizer.lr"] for r in rows][:3] == ["0.1", "0.2", "0.3"]
    assert float(rows[4]["objective (val_loss)"]) == pytest.approx(result.best.objective)
    assert rows[4]["status"] == "ok" and rows[4]["epochs"] == "1"
    assert (result.directory / "search.png").stat().st_size > 10_000
    best = json.loads((result.directory / "best.json").read_text())
    assert best["point"] == {"optimizer.lr": 0.5} and best["objective_name"] == "val_loss"
    # best.nn trains the best trial again, to the same validation loss
    again = nnspec.train(result.directory / "best.nn", out=tmp_path / "again", progress=False,
                         **QUIET)
    assert again.history[-1]["val_loss"] == pytest.approx(result.best.objective, rel=1e-6)


def test_refine_narrows_the_grid_around_the_best(tmp_path):
    block = ("search Reg as lr {\n    strategy refine(rounds=3, points=5)\n"
             "    optimizer.lr in log(0.01, 10)\n}\n")
    result = nnspec.search(spec(tmp_path, block), out=tmp_path / "s", **QUIET)
    rounds = {r: [t.point["optimizer.lr"] for t in result.trials if t.round == r] for r in (1, 2, 3)}
    assert rounds[1] == [0.01, 0.05623, 0.3162, 1.778, 10.0]
    # round 2: five points between the best's neighbours 0.05623 and 1.778, the known ones reused
    assert rounds[2] == [0.1333, 0.7498]
    # round 3: between 0.3162's neighbours 0.1333 and 0.7498
    assert rounds[3] == [0.2053, 0.4869]
    assert abs(result.best.point["optimizer.lr"] - 0.5) < 0.05
    assert all(t.status == "ok" for t in result.trials if t.point["optimizer.lr"] <= 1)
    # lr = 10: |1 − 20| = 19 times the initial error; the loss is scored, just large
    assert max(t.objective for t in result.trials) == \
        next(t.objective for t in result.trials if t.point["optimizer.lr"] == 10.0)


def test_random_search_is_seeded_and_distinct(tmp_path):
    block = ("search Reg as r {\n    strategy random(trials=5, seed=1)\n"
             "    optimizer.lr in log(0.1, 0.9)\n    batch in [32, full]\n}\n")
    path = spec(tmp_path, block)
    first = nnspec.search(path, out=tmp_path / "a", **QUIET)
    second = nnspec.search(path, out=tmp_path / "b", **QUIET)
    points = [t.point for t in first.trials]
    assert points == [t.point for t in second.trials] and len(points) == 5
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 5
    assert all(0.1 <= p["optimizer.lr"] <= 0.9 and p["batch"] in ("32", "full") for p in points)
    assert [t.objective for t in first.trials] == [t.objective for t in second.trials]


def test_a_diverging_trial_is_recorded_and_the_search_goes_on(tmp_path):
    recipe = RECIPE.replace("epochs     1", "epochs     200")
    block = "search Reg as d {\n    optimizer.lr in [0.5, 2]\n}\n"
    result = nnspec.search(spec(tmp_path, block, recipe), out=tmp_path / "s", **QUIET)
    ok, bad = result.trials
    assert ok.status == "ok" and result.best is ok
    # lr = 2: the error grows by |1 − 4| = 3 per step until it overflows
    assert bad.status == "diverged" and bad.objective is None and "the loss became" in bad.reason
    assert list(csv.DictReader((result.directory / "results.csv").open()))[1]["status"] == "diverged"


def test_a_search_by_cross_validation_scores_the_mean_of_the_folds(tmp_path):
    block = "search Reg as cv {\n    cv kfold(3)\n    optimizer.lr in [0.3, 0.5]\n}\n"
    result = nnspec.search(spec(tmp_path, block), out=tmp_path / "s", **QUIET)
    for trial in result.trials:
        folds = [json.loads((result.directory / "trials" / str(trial.id) / "folds" / str(f) /
                             "metrics.jsonl").read_text().splitlines()[-1])["val_loss"]
                 for f in range(3)]
        assert trial.objective == pytest.approx(np.mean(folds), rel=1e-9)
        assert trial.std["val_loss"] == pytest.approx(np.std(folds), rel=1e-9)
    assert result.best.point == {"optimizer.lr": "0.5"}
    header = (result.directory / "results.csv").read_text().splitlines()[0]
    assert "val_loss_std" in header and "val_mae_std" in header


# == resume ========================================================================================
def test_an_interrupted_search_resumes_without_redoing_finished_trials(tmp_path):
    path = spec(tmp_path, VALLEY)
    whole = nnspec.search(path, out=tmp_path / "whole", **QUIET)
    lines: list[str] = []
    part = nnspec.search(path, out=tmp_path / "part", max_trials=4, log=lines.append)
    assert not part.finished and len(part.trials) == 4
    # a trial cut short leaves its directory without a record: it is trained again
    (tmp_path / "part" / "trials" / "5").mkdir()
    (tmp_path / "part" / "trials" / "5" / "junk").write_text("half")
    lines.clear()
    resumed = nnspec.search(path, resume=tmp_path / "part", log=lines.append)
    assert resumed.finished
    assert sum("(finished before)" in line for line in lines) == 4
    assert [(t.point, t.objective) for t in resumed.trials] == \
        [(t.point, t.objective) for t in whole.trials]
    records = (tmp_path / "part" / "trials.jsonl").read_text().splitlines()
    assert len(records) == 9 and not (tmp_path / "part" / "trials" / "5" / "junk").exists()
    assert (tmp_path / "part" / "best.nn").read_text().count("gd(lr=0.5)") == 1


def test_resume_refuses_another_spec_and_a_directory_without_a_search(tmp_path):
    path = spec(tmp_path, VALLEY)
    nnspec.search(path, out=tmp_path / "s", max_trials=1, **QUIET)
    path.write_text(path.read_text().replace("points=9", "points=5"))
    with pytest.raises(TrainingError, match="holds a search of another spec"):
        nnspec.search(path, resume=tmp_path / "s", **QUIET)
    with pytest.raises(TrainingError, match="is not a search directory"):
        nnspec.search(path, resume=tmp_path, **QUIET)
    with pytest.raises(TrainingError, match="already holds a search"):
        nnspec.search(path, out=tmp_path / "s", **QUIET)


# == the command line ==============================================================================
def test_cli_search_prints_the_table_and_the_best(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec(tmp_path, "search Reg as lr {\n    optimizer.lr in [0.3, 0.5]\n}\n")
    result = CliRunner().invoke(app, ["search", "reg.nn", "--out", "s"])
    assert result.exit_code == 0, result.output
    assert "search lr: 2 trials, best val_loss first" in result.stdout
    assert "best: trial 2, val_loss" in result.stdout and "nnspec train s/best.nn" in result.stdout
    result = CliRunner().invoke(app, ["search", "reg.nn", "--out", "s"])
    assert result.exit_code == 1
    assert "error: `s` already holds a search" in result.output
    assert "help: continue it with --resume s" in result.output


def test_cli_search_without_a_search_block_is_an_error(tmp_path):
    path = spec(tmp_path, "")
    result = CliRunner().invoke(app, ["search", str(path)])
    assert result.exit_code == 1
    assert "error[E5016]: the file has no search" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["search", str(path), "--device", "tpu"])
    assert result.exit_code == 2


def test_refine_finds_the_neighbours_of_the_best_among_every_value_tried(tmp_path):
    """With an even number of points a finer grid does not hold the best it refines (0.65 is
    not among 0.35, 0.55, 0.75, 0.95): the next round's neighbours come from every value
    tried, never from the last grid alone."""
    block = ("search Reg as lr {\n    strategy refine(rounds=3)\n"
             "    optimizer.lr in linear(0.05, 0.95, points=4)\n}\n")
    result = nnspec.search(spec(tmp_path, block), out=tmp_path / "s", **QUIET)
    rounds = [[t.point["optimizer.lr"] for t in result.trials if t.round == r] for r in (1, 2, 3)]
    assert rounds[0] == [0.05, 0.35, 0.65, 0.95]
    assert rounds[1] == [0.55, 0.75]  # between 0.35 and 0.95 (0.65 was best)
    assert rounds[2] == [0.45]  # between 0.35 and 0.65, the neighbours of 0.55 among all tried
    assert result.best.point == {"optimizer.lr": 0.55}


def test_a_flat_settings_positional_value_is_replaced(tmp_path):
    recipe = RECIPE.replace("    seed       0\n", "    seed       0\n    early_stop 5\n")
    path = spec(tmp_path, "search Reg { early_stop.patience in [2, 3] }\n", recipe)
    loaded = open_spec(path)
    found = load_search(loaded)
    _, recipe_ir = trial_recipe(loaded, found, {"early_stop.patience": "2"})
    assert recipe_ir.early_stop.patience == 2
    assert "early_stop 2" in trial_text(loaded, found, {"early_stop.patience": "2"})


def test_a_search_checks_its_folds_against_the_training_split(tmp_path):
    recipe = RECIPE.replace('csv("bmi.csv", target="y")', "diabetes").replace(
        "train Reg {", "train Reg(features=10) {")
    (diag,) = search_errors(tmp_path, "search Reg {\n  cv kfold(1000)\n  batch in [8, 16]\n}\n",
                            recipe)
    assert diag.message == ("1000 folds need at least 1000 training samples, but recipe `Reg`'s "
                            "split holds 265")


def test_a_recipe_that_trains_an_ensemble_cannot_be_searched(tmp_path):
    recipe = RECIPE.replace("    seed       0\n", "    seed       0\n    ensemble   3\n")
    (diag,) = search_errors(tmp_path, "search Reg { optimizer.lr in [0.1, 0.3] }\n", recipe)
    assert diag.message == ("a search trains one model per trial, but recipe `Reg` trains an "
                            "ensemble of 3")


def test_a_record_cut_short_is_trained_again_and_a_damaged_one_is_an_error(tmp_path):
    path = spec(tmp_path, VALLEY)
    nnspec.search(path, out=tmp_path / "s", max_trials=2, **QUIET)
    records = tmp_path / "s" / "trials.jsonl"
    first, second = records.read_text().splitlines()
    records.write_text(first + "\n" + second[: len(second) // 2])  # the write was interrupted
    lines: list[str] = []
    resumed = nnspec.search(path, resume=tmp_path / "s", log=lines.append)
    assert sum("(finished before)" in line for line in lines) == 1 and len(resumed.trials) == 9
    again = nnspec.search(path, resume=tmp_path / "s", **QUIET)  # the cut line is gone
    assert [t.objective for t in again.trials] == [t.objective for t in resumed.trials]
    records.write_text("{not json\n" + records.read_text())
    with pytest.raises(TrainingError, match="trials.jsonl` line 1 is damaged"):
        nnspec.search(path, resume=tmp_path / "s", **QUIET)
