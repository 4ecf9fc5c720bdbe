"""`solver normal_equation`: closed-form linear regression equals scikit-learn on the same
standardised training split, writes a normal run directory, and every model or setting it
cannot solve is a located error. (Closed form against gradient descent: tests/test_train.py,
which reuses its one 6000-epoch run.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
linear_model = pytest.importorskip("sklearn.linear_model")

import nnspec  # noqa: E402
from nnspec.api import load_recipe  # noqa: E402
from nnspec.runtime.data.prepare import load_dataset, prepare  # noqa: E402
from nnspec.runtime.experiments.solver import least_squares  # noqa: E402
from nnspec.spec import codes  # noqa: E402
from nnspec.spec.diagnostics import Diagnostic, DiagnosticError  # noqa: E402

EXAMPLES = Path(__file__).parent.parent / "examples"
QUIET = {"progress": False, "log": lambda line: None}

MODELS = """\
model Lin(features: int = 10, bias: bool = true) {
    input x: [features]
    x -> linear(1, bias=bias) -> output
}
model Image {
    input x: [1, 8, 8]
    x -> flatten -> linear(1) -> output
}
model Rows {
    input x: [8, 8]
    x -> linear(1) -> output
}
model Deep {
    input x: [10]
    x -> linear(8) -> relu -> linear(1) -> output
}
model Two {
    input x: [10]
    x -> linear(8) -> linear(1) -> output
}
"""
FIRST = MODELS.count("\n") + 2  # the line of a recipe's first setting


def recipe_text(head: str, *settings: str) -> str:
    return MODELS + f"train {head} {{\n" + "".join(f"    {s}\n" for s in settings) + "}\n"


def training_split(path: Path, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The training split exactly as a run of the recipe sees it (normalised), in float64."""
    model, recipe = load_recipe(path, name)
    data = prepare(recipe, model.graph, load_dataset(recipe, path.parent))
    x, y = data.train
    return x.reshape(len(x), -1).double().numpy(), y.double().numpy()


@pytest.fixture(scope="module")
def closed_form(tmp_path_factory):
    return nnspec.train(EXAMPLES / "linreg.nn", "closed_form",
                        out=tmp_path_factory.mktemp("solver") / "run", **QUIET)


def theta_of(run) -> tuple[np.ndarray, np.ndarray, dict]:
    """(W, b) as the module holds them (float32) and solver.json (θ in float64)."""
    state = run.module.state_dict()
    record = json.loads((run.directory / "solver.json").read_text())
    return state["linear_1.weight"].numpy(), state["linear_1.bias"].numpy(), record


# == the fit ================================================================================
def test_theta_equals_scikit_learn_on_the_standardised_training_split(closed_form):
    x, y = training_split(EXAMPLES / "linreg.nn", "closed_form")
    assert x.shape == (354, 10)
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-6)  # standardised on this split
    reference = linear_model.LinearRegression().fit(x, y)
    weight, bias, record = theta_of(closed_form)
    # float64 θ: the same least-squares problem, solved twice (measured: 2.6e-13)
    np.testing.assert_allclose(record["weight"][0], reference.coef_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(record["bias"], [reference.intercept_], rtol=0, atol=1e-9)
    # the module's float32 copy: float32 rounding only (|b| = 152.3, one ulp is 1.5e-5)
    np.testing.assert_allclose(weight[0], reference.coef_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(bias, [reference.intercept_], rtol=1e-6)
    assert (record["rank"], record["samples"], record["features"]) == (11, 354, 10)
    assert 1 < record["condition"] < 100  # standardised diabetes is well conditioned
    assert record["bias"][0] == pytest.approx(152.2655, abs=1e-4)


def test_the_run_directory_holds_one_epoch_of_a_normal_run(closed_form):
    files = {p.name for p in closed_form.directory.iterdir()}
    assert {"ir.json", "recipe.json", "metrics.jsonl", "best.safetensors", "last.safetensors",
            "state.pt", "curves.png", "summary.md", "test.json", "normalizer.json",
            "solver.json"} <= files
    (line,) = (closed_form.directory / "metrics.jsonl").read_text().splitlines()
    row = json.loads(line)
    assert set(row) == {"epoch", "train_loss", "train_mae", "val_loss", "val_mae", "seconds",
                        "samples_per_s"}  # no learning rate: there was none
    x, y = training_split(EXAMPLES / "linreg.nn", "closed_form")
    weight, bias, _ = theta_of(closed_form)
    residual = x @ weight[0].astype(np.float64) + bias[0] - y
    assert row["train_loss"] == pytest.approx(np.mean(residual**2), rel=1e-5)
    assert row["train_mae"] == pytest.approx(np.mean(np.abs(residual)), rel=1e-5)
    recipe = json.loads((closed_form.directory / "recipe.json").read_text())
    assert (recipe["solver"], recipe["epochs"], recipe["batch"]) == ("normal_equation", 1, None)
    assert "Epochs run: 1" in (closed_form.directory / "summary.md").read_text()
    from nnspec.runtime.loop.checkpoint import load_weights

    best, _ = load_weights(closed_form.directory / "best.safetensors")
    assert all(torch.equal(best[k], v) for k, v in closed_form.module.state_dict().items())
    assert closed_form.history[0]["epoch"] == 1 and closed_form.extra["finished"]


def test_ridge_equals_scikit_learn_ridge(tmp_path):
    # J = mean (ŷ - y)² + λ‖w‖²  <=>  ‖ŷ - y‖² + nλ‖w‖²: sklearn's Ridge with alpha = nλ
    path = tmp_path / "ridge.nn"
    path.write_text(recipe_text("Lin as ridge", "data diabetes", "split 0.8 / 0.2", "loss mse",
                                "regularize l2(0.05)", "solver normal_equation"))
    run = nnspec.train(path, out=tmp_path / "run", **QUIET)
    x, y = training_split(path)
    reference = linear_model.Ridge(alpha=len(x) * 0.05).fit(x, y)
    _, _, record = theta_of(run)
    np.testing.assert_allclose(record["weight"][0], reference.coef_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(record["bias"], [reference.intercept_], rtol=0, atol=1e-9)
    assert record["l2"] == 0.05
    plain = linear_model.LinearRegression().fit(x, y)
    assert np.linalg.norm(reference.coef_) < 0.8 * np.linalg.norm(plain.coef_)  # it shrank


def test_a_flattened_image_model_with_a_rank_deficient_design(tmp_path):
    # digits as [1, 8, 8] images: some border pixels are 0 in every image, so [1 X] has rank
    # < 65 and θ is not unique; the fitted values are, and equal scikit-learn's
    path = tmp_path / "image.nn"
    path.write_text(recipe_text("Image", "data digits(as_image=true)", "loss mse",
                                "solver normal_equation"))
    lines: list[str] = []
    run = nnspec.train(path, out=tmp_path / "run", progress=False, log=lines.append)
    x, y = training_split(path)
    record = json.loads((run.directory / "solver.json").read_text())
    assert record["rank"] < 65 and record["condition"] is None  # infinite
    assert any(line.startswith(f"normal equation: A has rank {record['rank']} < 65 columns")
               for line in lines)
    fitted = x @ np.array(record["weight"][0]) + record["bias"][0]
    reference = linear_model.LinearRegression().fit(x, y).predict(x)
    np.testing.assert_allclose(fitted, reference, atol=1e-8)


def test_least_squares_without_a_bias_and_with_several_outputs():
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(50, 4)), rng.normal(size=(4, 3))
    y = x @ w + 0.01 * rng.normal(size=(50, 3))
    solution = least_squares(x, y, bias=False)
    reference = linear_model.LinearRegression(fit_intercept=False).fit(x, y)
    np.testing.assert_allclose(solution.weight, reference.coef_, atol=1e-12)
    assert solution.intercept is None and solution.weight.shape == (3, 4)
    # the normal equation itself holds: Aᵀ(Aθ - Y) = 0
    np.testing.assert_allclose(x.T @ (x @ solution.theta - y), 0, atol=1e-10)


def test_a_model_without_bias_fits_through_the_origin(tmp_path):
    path = tmp_path / "origin.nn"
    path.write_text(recipe_text("Lin(bias=false)", "data diabetes", "loss mse",
                                "solver normal_equation"))
    run = nnspec.train(path, out=tmp_path / "run", **QUIET)
    x, y = training_split(path)
    reference = linear_model.LinearRegression(fit_intercept=False).fit(x, y)
    record = json.loads((run.directory / "solver.json").read_text())
    assert record["bias"] is None and "linear_1.bias" not in run.module.state_dict()
    np.testing.assert_allclose(record["weight"][0], reference.coef_, atol=1e-9)


# == misuse: located errors ===================================================================
def diagnostics(head: str, *settings: str) -> list[Diagnostic]:
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=recipe_text(head, *settings))
    return list(info.value.diagnostics)


def where(diag: Diagnostic) -> tuple[int, int]:
    return diag.span.line, diag.span.col


SOLVE = "solver normal_equation"


def test_a_model_that_is_not_one_linear_layer():
    (diag,) = diagnostics("Deep", "data diabetes", "loss mse", SOLVE)
    assert (diag.code, diag.message) == (
        codes.RECIPE_SOLVER, "the normal equation fits one `linear` layer, but `Deep` also has "
        "`relu`")
    assert diag.notes == ("`Deep`: linear -> relu -> linear",)
    assert diag.help == ("use `solver gradient` (the default): only a single linear layer under "
                         "mse has a closed-form minimiser")
    assert where(diag) == (FIRST + 2, 12)
    assert [(lb.span.line, lb.message) for lb in diag.labels] == [(FIRST + 2, "closed form"),
                                                                  (15, "`relu` here")]
    (diag,) = diagnostics("Two", "data diabetes", "loss mse", SOLVE)
    assert diag.message == "the normal equation fits one `linear` layer, but `Two` has 2 " \
                           "`linear` layers"
    (diag,) = diagnostics("Rows", 'data npz("rows.npz")', "loss mse", SOLVE)
    assert (diag.message, diag.help) == (
        "`linear` acts on the last axis of [8, 8], one row at a time, but the normal equation "
        "fits one feature vector per sample", "put `flatten` before `linear`")


def test_a_loss_other_than_mse():
    (diag,) = diagnostics("Lin", "data diabetes", "loss l1", SOLVE)
    assert (diag.code, diag.message, diag.help) == (
        codes.RECIPE_SOLVER, "the normal equation minimises the squared error, but the loss is l1",
        "use `loss mse`, or `solver gradient` to minimise l1")
    assert where(diag) == (FIRST + 2, 12)
    assert [lb.span.line for lb in diag.labels if not lb.primary] == [FIRST + 1]  # the loss


def test_regularizers_without_a_closed_form_freeze_and_random_augmentation():
    found = diagnostics("Lin", "data diabetes", "loss mse", SOLVE,
                        "regularize l2(0.1), l1(0.1), max_norm(2.0)", 'freeze "linear_1.*"')
    assert [(d.code, d.message) for d in found] == [
        (codes.RECIPE_SOLVER, "l1 has no closed form: the normal equation cannot include it"),
        (codes.RECIPE_SOLVER, "max_norm has no closed form: the normal equation cannot "
                              "include it"),
        (codes.RECIPE_SOLVER, "the normal equation solves every weight at once: none can stay "
                              "frozen")]
    assert [where(d) for d in found] == [(FIRST + 3, 25), (FIRST + 3, 34), (FIRST + 4, 12)]
    assert found[0].help == "l2(λ) has one (ridge regression); for l1 use `solver gradient`"
    (diag,) = diagnostics("Image", "data digits(as_image=true)", "loss mse", SOLVE,
                          "augment flip(horizontal)")
    assert (diag.code, diag.message) == (
        codes.RECIPE_SOLVER, "flip draws a new random transform each epoch, but the normal "
        "equation solves once, on the data as it is")


def test_settings_of_gradient_descent_warn_that_they_do_nothing():
    model, recipe = load_recipe(text=recipe_text(
        "Lin", "data diabetes", "loss mse", SOLVE, "optimizer adam(lr=0.1)", "epochs 50",
        "batch 16", "early_stop patience=2", "schedule step(every=100)"))
    assert [(w.code, w.message.split("`")[1]) for w in model.warnings] == [
        (codes.RECIPE_NO_EFFECT, name) for name in
        ("optimizer", "epochs", "batch", "early_stop", "schedule")]
    assert model.warnings[0].message == ("`optimizer` has no effect with `solver "
                                         "normal_equation`: the weights are solved in closed "
                                         "form, in one step")
    # one exact solve: one "epoch", the whole split at once
    assert (recipe.epochs, recipe.batch, recipe.solver) == (1, None, "normal_equation")
    assert recipe.describe() == ("recipe Lin: Lin on diabetes, mse, normal equation (least "
                                 "squares, closed form)")


def test_solver_names():
    (diag,) = diagnostics("Lin", "data diabetes", "loss mse", "solver normal")
    assert (diag.code, diag.message, diag.help) == (
        codes.RECIPE_VALUE,
        "`solver` must be one of `gradient`, `normal_equation`, `knn`, got `normal`",
        "did you mean `normal_equation`?")
    (diag,) = diagnostics("Lin", "data diabetes", "loss mse", "optimizer normal_equation")
    assert diag.help == "`normal_equation` is a solver: `solver ...`"
    _, recipe = load_recipe(text=recipe_text("Lin", "data diabetes", "loss mse",
                                             "solver gradient"))
    assert recipe.solver == "gradient" and recipe.epochs == 10
