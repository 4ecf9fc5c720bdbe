"""k-fold cross-validation (`cv kfold(n)` in a recipe): the folds partition the training split,
stratified and seeded, without the test split; every fold is normalised by its own training
part; the record's mean and std are those of the folds; misuses are located errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec.api import load_recipe  # noqa: E402
from nnspec.runtime.data.prepare import fold_splits, split_of  # noqa: E402
from nnspec.runtime.data.sources import load_builtin  # noqa: E402
from nnspec.runtime.loop.trainer import TrainingError  # noqa: E402
from nnspec.spec import codes  # noqa: E402
from nnspec.spec.diagnostics import DiagnosticError  # noqa: E402

SPEC = """\
model LogReg(features: int = 30) {
    input x: [features]
    x -> linear(1) -> output
}

train LogReg {
    data       breast_cancer
    split      0.8 / 0 / 0.2
    batch      64
    epochs     3
    loss       bce_logits
    optimizer  adam(lr=0.01)
    cv         kfold(5)
    seed       0
}
"""


def test_folds_partition_the_training_split_stratified(tmp_path):
    _, recipe = load_recipe(text=SPEC)
    data = load_builtin("breast_cancer")
    train, _, test = split_of(recipe, data)
    folds = fold_splits(recipe, data, 5)
    held_out = np.sort(np.concatenate([f[1] for f in folds]))
    assert np.array_equal(held_out, np.sort(train))  # each training sample validated once
    for fold_train, fold_val, fold_test in folds:
        assert np.intersect1d(fold_train, fold_val).size == 0
        assert np.array_equal(np.sort(np.concatenate([fold_train, fold_val])), np.sort(train))
        assert np.array_equal(fold_test, test)
        # stratified: each fold's share of class 1 is the training split's, within one sample
        share = data.y[train].mean()
        assert abs(data.y[fold_val].sum() - share * len(fold_val)) <= 1
    assert [len(f[1]) for f in folds] == [91, 91, 91, 91, 91]  # 455 = 5 · 91
    again = fold_splits(recipe, data, 5)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))  # seeded


def test_a_recipe_with_cv_reports_every_fold_and_trains_the_final_model(tmp_path):
    (tmp_path / "cv.nn").write_text(SPEC)
    lines: list[str] = []
    run = nnspec.train(tmp_path / "cv.nn", out=tmp_path / "run", progress=False, log=lines.append)
    record = json.loads((run.directory / "cv.json").read_text())
    assert len(record["folds"]) == 5
    losses = [f["metrics"]["val_loss"] for f in record["folds"]]
    accuracies = [f["metrics"]["val_accuracy"] for f in record["folds"]]
    assert record["mean"]["val_loss"] == pytest.approx(np.mean(losses), rel=1e-12)
    assert record["std"]["val_accuracy"] == pytest.approx(np.std(accuracies), rel=1e-12)
    assert min(accuracies) > 0.85  # logistic regression separates breast_cancer well
    # each fold is a run of its own, its metrics.jsonl the source of its row
    for f, fold in enumerate(record["folds"]):
        last = json.loads((run.directory / "folds" / str(f) / "metrics.jsonl").read_text()
                          .splitlines()[-1])
        assert last["val_loss"] == fold["metrics"]["val_loss"] and fold["epochs_run"] == 3
    # each fold normalised by its own training part: five different means
    means = {tuple(json.loads((run.directory / "folds" / str(f) / "normalizer.json").read_text())
                   ["mean"][:3]) for f in range(5)}
    assert len(means) == 5
    summary = (run.directory / "summary.md").read_text()
    assert "## Cross-validation" in summary and "| mean ± std |" in summary
    assert any(line.startswith("cross-validation: val_loss") for line in lines)
    assert run.test["test_accuracy"] > 0.9 and run.extra["cv"]["mean"] == record["mean"]


def test_cv_misuses_are_located_errors():
    ensemble = SPEC.replace("    seed       0\n", "    seed       0\n    ensemble   3\n")
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=ensemble)
    (diag,) = info.value.diagnostics
    assert (diag.code, diag.message) == (codes.RECIPE_SOLVER, "`cv` with `ensemble` is not "
                                         "supported: every fold would train the whole ensemble")
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=SPEC.replace("kfold(5)", "kfold(5, k=(1, 3))"))
    (diag,) = info.value.diagnostics
    assert diag.message == "`k=` chooses the neighbours of `solver knn`, but the solver is gradient"
    assert (diag.span.line, diag.span.col) == (13, 27)  # at `(1, 3)`
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=SPEC.replace("kfold(5)", "kfold(500)"))
    (diag,) = info.value.diagnostics
    assert (diag.code, diag.message) == (
        codes.RECIPE_SPLIT, "500 folds need at least 500 training samples, but the split holds 455")


def test_cv_runs_in_one_process(tmp_path):
    (tmp_path / "cv.nn").write_text(SPEC)
    with pytest.raises(TrainingError, match="cross-validation trains its folds in one process"):
        nnspec.train(tmp_path / "cv.nn", out=tmp_path / "run", nproc=2, progress=False,
                     log=lambda line: None)
    assert not (tmp_path / "run").exists()
