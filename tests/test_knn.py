"""k nearest neighbours (`knn` op, `solver knn`, `cv kfold`): the stored vote equals
scikit-learn's KNeighborsClassifier on the same standardised split, cross-validation equals
scikit-learn's on the same folds, the ONNX graph predicts what the module predicts, and every
misuse is a located error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
neighbors = pytest.importorskip("sklearn.neighbors")
ort = pytest.importorskip("onnxruntime")


from cli_runner import cli  # noqa: E402

import nnspec  # noqa: E402
from nnspec.api import load_recipe  # noqa: E402
from nnspec.runtime import Session  # noqa: E402
from nnspec.runtime.data.prepare import load_dataset, prepare  # noqa: E402
from nnspec.runtime.data.sources import Dataset, load_builtin  # noqa: E402
from nnspec.runtime.experiments.knn import predict  # noqa: E402
from nnspec.runtime.loop.trainer import TrainingError  # noqa: E402
from nnspec.spec import codes  # noqa: E402
from nnspec.spec.diagnostics import Diagnostic, DiagnosticError  # noqa: E402
from nnspec.spec.recipe.splits import kfold_indices  # noqa: E402

EXAMPLES = Path(__file__).parent.parent / "examples"
SPEC = EXAMPLES / "knn_digits.nn"
QUIET = {"progress": False, "log": lambda line: None}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    lines: list[str] = []
    result = nnspec.train(SPEC, out=tmp_path_factory.mktemp("knn") / "run", progress=False,
                          log=lines.append)
    result.extra["log"] = lines
    return result


@pytest.fixture(scope="module")
def splits():
    """The three splits exactly as the run sees them (standardised on the training split)."""
    model, recipe = load_recipe(SPEC)
    data = prepare(recipe, model.graph, load_dataset(recipe, SPEC.parent))
    return {name: (x.numpy().astype(np.float64), y.numpy())
            for name, (x, y) in (("train", data.train), ("val", data.val), ("test", data.test))}


def module_predictions(module, x: np.ndarray) -> np.ndarray:
    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(x).float()).argmax(1).numpy()


# == the fit and the vote ======================================================================
def test_the_run_stores_the_training_split_and_equals_scikit_learn(run, splits):
    x, y = splits["train"]
    assert x.shape == (1437, 64)
    state = run.module.state_dict()
    np.testing.assert_array_equal(state["knn_1.memory"].numpy(), x.astype(np.float32))
    np.testing.assert_array_equal(state["knn_1.labels"].numpy().argmax(1), y)
    assert state["knn_1.labels"].sum().item() == 1437  # one-hot rows
    k = json.loads((run.directory / "cv.json").read_text())["chosen"]
    assert k == 5 and run.module.knn_1.k == 5
    reference = neighbors.KNeighborsClassifier(n_neighbors=k).fit(x, y)
    for split in ("val", "test"):
        xs, _ = splits[split]
        np.testing.assert_array_equal(module_predictions(run.module, xs), reference.predict(xs))
    # measured: 176 of the 180 test digits (k = 5, standardised pixels)
    assert run.test_accuracy == pytest.approx(176 / 180)
    assert reference.score(*splits["test"]) == pytest.approx(176 / 180)


@pytest.mark.parametrize("k", [1, 2, 4, 9])
def test_every_k_and_both_distances_predict_as_scikit_learn(splits, k):
    # even k make ties between classes: both give them to the smaller class index
    x, y = splits["train"]
    xs, _ = splits["test"]
    memory = torch.from_numpy(x).float()
    onehot = torch.nn.functional.one_hot(torch.from_numpy(y).long(), 10).float()
    for distance, metric in (("l2", "euclidean"), ("l1", "manhattan")):
        ours = predict(torch.from_numpy(xs).float(), memory, onehot, k, distance).numpy()
        theirs = neighbors.KNeighborsClassifier(n_neighbors=k, metric=metric).fit(x, y)
        np.testing.assert_array_equal(ours, theirs.predict(xs))


def test_a_tie_between_classes_goes_to_the_smaller_index():
    memory = torch.tensor([[0.0], [1.0], [3.0], [4.0]])
    onehot = torch.nn.functional.one_hot(torch.tensor([2, 2, 1, 1]), 3).float()
    query = torch.tensor([[2.0]])  # 2 of class 2 at distance 1, 2 of class 1 at distance 1, 2
    assert predict(query, memory, onehot, 4, "l2").tolist() == [1]
    # k = 2 among equal distances: the lower stored index first (rows 1 and 2, one vote each)
    from nnspec.compiler.torch_modules import KNN

    assert KNN.votes(query, memory, onehot, 2).tolist() == [[0.0, 0.5, 0.5]]


def test_cross_validation_equals_scikit_learn_on_the_same_folds(run, splits):
    record = json.loads((run.directory / "cv.json").read_text())
    x, y = splits["train"]
    folds = kfold_indices(y, 5, seed=0)
    assert record["folds"] == 5 and record["samples"] == 1437
    assert [c["k"] for c in record["candidates"]] == [1, 3, 5, 7]
    for candidate in record["candidates"]:
        expected = [neighbors.KNeighborsClassifier(n_neighbors=candidate["k"])
                    .fit(x[tr], y[tr]).score(x[va], y[va]) for tr, va in folds]
        assert candidate["fold_accuracy"] == pytest.approx(expected, abs=1e-12)
        assert candidate["mean_accuracy"] == pytest.approx(np.mean(expected), abs=1e-12)
    means = [c["mean_accuracy"] for c in record["candidates"]]
    # measured: 0.9617, 0.9680, 0.9715, 0.9680
    assert means == pytest.approx([0.9617, 0.9680, 0.9715, 0.9680], abs=5e-5)
    assert any("cv k=5: mean accuracy 0.9715" in line and "chosen" in line
               for line in run.extra["log"])


def test_the_run_directory(run):
    files = {p.name for p in run.directory.iterdir()}
    assert {"ir.json", "cv.json", "knn.json", "best.safetensors", "test.json",
            "summary.md", "normalizer.json"} <= files
    ir = json.loads((run.directory / "ir.json").read_text())
    assert ir["args"]["k"] == 5  # the chosen k: an export of the run rebuilds this graph
    assert ir["nodes"][0]["buffers"] == {"memory": [1437, 64], "labels": [1437, 10]}
    stored = json.loads((run.directory / "knn.json").read_text())
    assert (stored["k"], stored["stored"], stored["features"]) == (5, 1437, 64)
    assert sum(stored["class_counts"]) == 1437
    (line,) = (run.directory / "metrics.jsonl").read_text().splitlines()
    assert "lr" not in json.loads(line)
    recipe = json.loads((run.directory / "recipe.json").read_text())
    assert (recipe["solver"], recipe["cv"], recipe["epochs"]) == (
        "knn", {"folds": 5, "k": [1, 3, 5, 7]}, 1)


# == ONNX ======================================================================================


def test_export_and_predict_agree_with_the_module_on_the_test_split(run, splits, tmp_path):
    out = tmp_path / "knn.onnx"
    assert cli("export", SPEC, "--weights", run.directory, "-o", out).exit_code == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in _graph_ops(out)]
    assert {"MatMul", "TopK", "Gather", "ReduceMean"} <= set(ops)
    xs, ys = splits["test"]
    votes = session.run(None, {"x": xs.astype(np.float32)})[0]
    np.testing.assert_allclose(votes.sum(1), 1, atol=1e-6)
    np.testing.assert_array_equal(votes.argmax(1), module_predictions(run.module, xs))
    # `nnspec predict` on raw pixels: the run's normaliser is in the model's metadata
    digits = load_builtin("digits")
    from nnspec.spec.recipe.splits import split_indices

    test_idx = split_indices(digits.y, (0.8, 0.1, 0.1), seed=0)[2]
    raw = digits.x[test_idx].astype(np.float32)
    prediction = Session(out).predict(raw)
    np.testing.assert_array_equal(np.asarray(prediction.probabilities).argmax(1),
                                  module_predictions(run.module, xs))
    np.savez(tmp_path / "test.npz", x=raw)
    result = cli("predict", out, "--input", tmp_path / "test.npz", "-o", tmp_path / "p.csv")
    assert result.exit_code == 0
    rows = (tmp_path / "p.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[1]) for r in rows] == module_predictions(run.module, xs).tolist()
    assert np.mean(module_predictions(run.module, xs) == ys) == pytest.approx(176 / 180)


def _graph_ops(path: Path) -> list:
    import onnx

    model = onnx.load(str(path))
    assert {i.name for i in model.graph.initializer} == {"knn_1.memory", "knn_1.labels"}
    assert {p.key: p.value for p in model.metadata_props}["output_kind"] == "probabilities"
    return list(model.graph.node)


# == misuse ====================================================================================
MODELS = """\
model K(k: int = 3) {
    input x: [64]
    x -> knn(k, classes=10, memory=1437) -> output
}
model Fixed {
    input x: [64]
    x -> knn(3, classes=10, memory=1437) -> output
}
model Weighted {
    input x: [64]
    x -> linear(16) -> knn(3, classes=10, memory=1437) -> output
}
"""
FIRST = MODELS.count("\n") + 2  # the line of a recipe's first setting


def recipe_text(head: str, *settings: str) -> str:
    return MODELS + f"train {head} {{\n" + "".join(f"    {s}\n" for s in settings) + "}\n"


def diagnostics(head: str, *settings: str) -> list[Diagnostic]:
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=recipe_text(head, *settings))
    return [d for d in info.value.diagnostics if d.severity == "error"]


def test_k_out_of_range_is_an_error_at_the_argument():
    for call, message in (("knn(0, classes=10, memory=20)", "k"),
                          ("knn(21, classes=10, memory=20)",
                           "knn asks for k = 21 neighbours among 20 stored samples")):
        with pytest.raises(DiagnosticError) as info:
            nnspec.load(text=f"model M {{\n    input x: [4]\n    x -> {call} -> output\n}}\n")
        (diag,) = info.value.diagnostics
        assert diag.code == codes.BAD_ARG and message in diag.message
        assert (diag.span.line, diag.span.col) == (3, 14)  # the k argument


def test_a_knn_model_under_gradient_descent():
    (diag,) = diagnostics("K", "data digits", "loss cross_entropy", "optimizer adam")
    assert (diag.code, diag.message, diag.help) == (
        codes.RECIPE_SOLVER, "`K` has a `knn` layer, which stores the training split: it is not "
        "trained by gradient", "write `solver knn` (no loss or optimizer needed)")
    assert diag.span.line == FIRST + 2  # the optimizer
    assert [lb.span.line for lb in diag.labels if not lb.primary] == [3]


def test_memory_must_be_the_training_split():
    (diag,) = diagnostics("K", "data digits", "split 0.7 / 0.15 / 0.15", "solver knn")
    assert (diag.code, diag.message, diag.help) == (
        codes.RECIPE_SOLVER, "`K`'s knn stores 1437 samples, but the training split holds 1258 "
        "(0.7 of the 1,797 samples of digits)", "write memory=1258")
    assert (diag.span.line, diag.span.col) == (3, 10)


def test_cross_validation_misuse():
    (diag,) = diagnostics("K", "data digits", "solver knn", "cv kfold(5, k=(1, 1200))")
    assert (diag.code, diag.message, diag.help) == (
        codes.RECIPE_SOLVER, "k = 1200 neighbours, but a fold of 5-fold cross-validation stores "
        "only 1149 samples", "list k <= 1149")
    assert diag.span.line == FIRST + 2
    (diag,) = diagnostics("Fixed", "data digits", "solver knn", "cv kfold(5, k=(1, 3))")
    assert diag.message == "`cv` chooses the model argument `k`, but `Fixed` has no parameter `k`"
    assert diag.help == "declare `model Fixed(k: int = 5, ...)` and write `knn(k, ...)`"
    found = diagnostics("K", "data digits", "loss cross_entropy", "cv kfold(5, k=(1, 3))")
    assert [d.message for d in found] == [
        "`K` has a `knn` layer, which stores the training split: it is not trained by gradient",
        "`k=` chooses the neighbours of `solver knn`, but the solver is gradient"]
    (diag,) = diagnostics("K", "data digits", "solver knn", "cv kfold(5, k=(1, 2.5))")
    assert (diag.code, diag.message) == (codes.RECIPE_VALUE,
                                         "`k` takes whole numbers of neighbours, got 2.5")
    (diag,) = diagnostics("K", "data digits", "solver knn", "cv kfold(1, k=3)")
    assert diag.code == codes.RECIPE_VALUE  # folds >= 2


def test_models_and_data_that_knn_cannot_fit():
    (diag,) = diagnostics("Weighted", "data digits", "solver knn")
    assert diag.message == "`solver knn` trains no weights, but `Weighted` has `linear`, which " \
                           "has some"
    assert diag.notes == ("`Weighted`: linear -> knn",)
    found = diagnostics("K", "data wine", "solver knn")
    assert [(d.code, d.message) for d in found] == [
        (codes.RECIPE_SOLVER, "`K`'s knn stores 1437 samples, but the training split holds 142 "
                              "(0.8 of the 178 samples of wine)"),
        (codes.RECIPE_DATA, "data samples are [13] but `K`'s input x is [64]"),
        (codes.RECIPE_LOSS, "wine has 3 classes but `K`'s knn votes among 10")]
    found = diagnostics("K", "data diabetes", "solver knn")
    assert [d.message for d in found] == [
        "kNN here classifies by a vote, but diabetes is a regression set (a number per sample)",
        "data samples are [10] but `K`'s input x is [64]"]


def test_settings_of_descent_warn_and_the_loss_is_not_required():
    model, recipe = load_recipe(text=recipe_text("K", "data digits", "solver knn",
                                                 "optimizer adam(lr=0.1)", "loss cross_entropy"))
    assert (recipe.solver, recipe.loss, recipe.epochs, recipe.batch) == ("knn", "nll", 1, None)
    assert sorted((w.code, w.message) for w in model.warnings) == [
        (codes.RECIPE_NO_EFFECT, "`loss` has no effect with `solver knn`: the training split is "
                                 "stored, not fitted"),
        (codes.RECIPE_NO_EFFECT, "`optimizer` has no effect with `solver knn`: the training "
                                 "split is stored, not fitted")]


def test_check_exits_one_with_a_located_error(tmp_path):
    path = tmp_path / "bad.nn"
    path.write_text(recipe_text("K", "data digits", "split 0.7 / 0.15 / 0.15", "solver knn"))
    result = cli("check", path)
    assert result.exit_code == 1
    assert "E5013" in result.output and "bad.nn:3:10" in result.output


def test_a_training_split_of_another_size_at_run_time(tmp_path):
    # data from a file is known only when read: the size is checked before anything is stored
    digits = load_builtin("digits")
    small = Dataset(x=digits.x[:1000], y=digits.y[:1000], task="classification",
                    classes=digits.classes, name="small")
    path = tmp_path / "k.nn"
    path.write_text(recipe_text("K", "data digits", "solver knn"))
    with pytest.raises(TrainingError) as info:
        nnspec.train(path, data=small, out=tmp_path / "run", **QUIET)
    assert "stores 1437 samples, but the training split holds 800" in info.value.message
    assert info.value.help == "write knn(..., memory=800) in the model"
    with pytest.raises(TrainingError, match="nothing to distribute"):
        nnspec.train(path, out=tmp_path / "run2", nproc=2, **QUIET)


def test_verify_skips_what_a_vote_cannot_have_and_checks_the_rest(run):
    from nnspec.verify.run import verify_file

    report = verify_file(SPEC, weights=run.directory, log=lambda line: None)
    status = {(r.check, r.subject): r.status for r in report.results}
    assert report.ok
    assert {status[(c, "model")] for c in ("gradient", "overfit", "init")} == {"skip"}
    # the stored set itself: numpy, torch and onnxruntime agree layer by layer
    assert [r.status for r in report.results if r.check == "equivalence"] == ["pass", "pass"]
