"""The course's gradients by hand (numpy float64) against torch autograd (float64)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from nnspec.verify import analytic
from nnspec.verify.tolerances import tolerance

# the issue's list, one entry per formula
ISSUE_LIST = {
    "linear", "sigmoid_bce", "softmax_cross_entropy", "mse", "l1", "hinge", "relu", "tanh",
    "sigmoid", "maxpool", "batchnorm", "lstm_cell",
}

GRADIENTS = {
    "linear": ["dL/dx", "dL/dW", "dL/db"],
    "sigmoid_bce": ["dL/dz"],
    "softmax_cross_entropy": ["dL/dz"],
    "mse": ["dL/dyhat"],
    "l1": ["dL/dyhat"],
    "hinge": ["dL/ds"],
    "relu": ["dL/dx"],
    "tanh": ["dL/dx"],
    "sigmoid": ["dL/dx"],
    "maxpool": ["dL/dx"],
    "batchnorm": ["dL/dx", "dL/dgamma", "dL/dbeta"],
    "lstm_cell": ["dL/dx", "dL/dh", "dL/dc", "dL/dW_ih", "dL/dW_hh", "dL/db_ih", "dL/db_hh"],
}


@pytest.fixture(scope="module")
def results():
    pytest.importorskip("torch")
    return analytic.check_analytic()


def by_subject(results) -> dict:
    return {r.subject: r for r in results}


def test_formula_names_are_the_issue_list():
    assert set(analytic.FORMULAS) == ISSUE_LIST
    assert set(GRADIENTS) == ISSUE_LIST


def test_each_formula_states_its_formula():
    for name, entry in analytic.FORMULAS.items():
        doc = type(entry).__doc__ or ""
        assert "dL/d" in doc or "dx =" in doc, name
        assert entry.title, name


def test_import_is_cheap():
    """torch is imported inside the functions that use it, never at module level."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(analytic))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top for a in n.names}
    names |= {(n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
    assert "torch" not in names and "nnspec" not in names  # nnspec.runtime imports torch


def test_every_formula_matches_autograd(results):
    bound = tolerance("analytic").bound
    subjects = [r.subject for r in results]
    expected = [f"{analytic.FORMULAS[n].title}: {g}" for n in analytic.FORMULAS
                for g in GRADIENTS[n]]
    assert subjects == expected
    for r in results:
        assert r.check == "analytic"
        assert r.status == "pass", (r.subject, r.detail)
        assert r.error is not None and 0.0 <= r.error < 1e-10, (r.subject, r.error)
        assert r.tolerance == bound
        assert r.detail.startswith("worst at dL/d"), r.detail


def test_gradients_are_not_trivial():
    """Each compared gradient has nonzero entries, so agreement means something."""
    pytest.importorskip("torch")
    for name, entry in analytic.FORMULAS.items():
        ours, inputs = entry.numpy_gradients(np.random.default_rng(0))
        theirs = entry.torch_gradients(inputs)
        assert list(ours) == list(theirs) == GRADIENTS[name]
        for grad, value in theirs.items():
            assert value.dtype == np.float64
            assert np.abs(value).max() > 1e-3, (name, grad)
            assert ours[grad].shape == value.shape, (name, grad)


@pytest.mark.parametrize("seed", [1, 2])
def test_other_seeds_pass(seed):
    pytest.importorskip("torch")
    for r in analytic.check_analytic(seed=seed):
        assert r.status == "pass" and r.error < 1e-10, (r.subject, r.detail)


def test_selection_and_determinism(results):
    pytest.importorskip("torch")
    alone = analytic.check_analytic(["batchnorm", "linear"])
    assert [r.subject.split(":")[0] for r in alone] == ["batchnorm (training)"] * 3 + ["linear"] * 3
    full = by_subject(results)
    for r in alone:  # a formula's inputs do not depend on which others ran
        assert r.detail == full[r.subject].detail
    with pytest.raises(KeyError, match="conv"):
        analytic.check_analytic(["conv"])


def test_inputs_stay_off_the_kinks():
    rng = np.random.default_rng
    x = analytic.FORMULAS["relu"].inputs(rng(0))["x"]
    assert np.abs(x).min() >= 0.1
    inputs = analytic.FORMULAS["l1"].inputs(rng(0))
    assert np.abs(inputs["yhat"] - inputs["y"]).min() >= 0.1
    inputs = analytic.FORMULAS["hinge"].inputs(rng(0))
    s, y = inputs["s"], inputs["y"]
    rows = np.arange(len(y))
    margin = 1.0 - s[rows, y][:, None] + s
    margin[rows, y] = np.nan
    assert np.nanmin(np.abs(margin)) >= 0.1 - 1e-12
    assert (margin > 0).any() and (margin < 0).any()  # both branches of the max exercised
    x = analytic.FORMULAS["maxpool"].inputs(rng(0))["x"]
    assert np.unique(x).size == x.size  # no ties anywhere, so none in a window


# ---- a wrong formula is caught ------------------------------------------------------------


def worst_index(actual: np.ndarray, expected: np.ndarray) -> tuple[int, ...]:
    tol = tolerance("analytic")
    ratio = np.abs(actual - expected) / (tol.atol + tol.rtol * np.abs(expected))
    return tuple(int(i) for i in np.unravel_index(np.argmax(ratio), expected.shape))


def run_mutant(monkeypatch, name: str, wrong, grad: str):
    """Replace ``name``'s formula by ``wrong`` and return (its result for ``grad``, the
    wrong gradient, autograd's gradient) on the inputs the check used."""
    pytest.importorskip("torch")
    monkeypatch.setitem(analytic.FORMULAS, name, wrong)
    found = by_subject(analytic.check_analytic([name]))
    result = found[f"{wrong.title}: {grad}"]
    ours, inputs = wrong.numpy_gradients(analytic._rng(0, name))
    return result, ours[grad], wrong.torch_gradients(inputs)[grad], found


def assert_caught(result, actual, expected, grad):
    assert result.status == "fail", result.detail
    index = worst_index(actual, expected)
    where = f"{grad}[{', '.join(map(str, index))}]"
    assert f"worst at {where}:" in result.detail, result.detail
    assert f"{actual[index]:.9g} vs {expected[index]:.9g}" in result.detail
    assert result.error == pytest.approx(np.abs(actual - expected).max(), rel=1e-12)
    assert result.error > 1e-3


def test_linear_weight_sign_error_is_caught(monkeypatch):
    class WrongSign(analytic.Linear):
        def formula(self, inputs):
            grads = super().formula(inputs)
            grads["dL/dW"] = -grads["dL/dW"]
            return grads

    result, actual, expected, found = run_mutant(monkeypatch, "linear", WrongSign(), "dL/dW")
    assert_caught(result, actual, expected, "dL/dW")
    assert found["linear: dL/dx"].status == found["linear: dL/db"].status == "pass"


def test_linear_weight_in_the_slides_layout_is_caught(monkeypatch):
    """xᵀ·dout is [in, out]; torch's weight is [out, in]: forgetting the transpose fails."""

    class Untransposed(analytic.Linear):
        def formula(self, inputs):
            grads = super().formula(inputs)
            grads["dL/dW"] = inputs["x"].T @ inputs["dout"]
            return grads

    result, *_ = run_mutant(monkeypatch, "linear", Untransposed(), "dL/dW")
    assert result.status == "fail"
    assert result.detail == "shape [4, 3] vs [3, 4]"


def test_linear_input_transposition_is_caught(monkeypatch):
    """dL/dx = dout·W in torch's layout; dout·Wᵀ there (a transposition) cannot even
    be formed, and the transposed dx of a square layer is caught by value."""

    class TransposedSquare(analytic.Linear):
        def inputs(self, rng):
            n, d = 5, 4
            return {"x": rng.standard_normal((n, d)), "W": rng.standard_normal((d, d)),
                    "b": rng.standard_normal(d), "dout": rng.standard_normal((n, d))}

        def formula(self, inputs):
            grads = super().formula(inputs)
            grads["dL/dx"] = inputs["dout"] @ inputs["W"].T  # should be dout·W here
            return grads

    result, actual, expected, _ = run_mutant(monkeypatch, "linear", TransposedSquare(),
                                             "dL/dx")
    assert_caught(result, actual, expected, "dL/dx")


def test_softmax_cross_entropy_sign_error_is_caught(monkeypatch):
    class WrongSign(analytic.SoftmaxCrossEntropy):
        def formula(self, inputs):
            z, y = inputs["z"], inputs["y"]
            e = np.exp(z - z.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
            return {"dL/dz": (np.eye(z.shape[1])[y] - p) / z.shape[0]}  # onehot - softmax

    result, actual, expected, _ = run_mutant(monkeypatch, "softmax_cross_entropy",
                                             WrongSign(), "dL/dz")
    assert_caught(result, actual, expected, "dL/dz")
    assert re.match(r"worst at dL/dz\[\d+, \d+\]: ", result.detail)


def test_batchnorm_dx_sign_error_is_caught(monkeypatch):
    class WrongSign(analytic.BatchNorm):
        def formula(self, inputs):
            grads = super().formula(inputs)
            x, dy = inputs["x"], inputs["dout"]
            axes = (0, 2, 3)
            m = x.size // x.shape[1]
            gamma = inputs["gamma"].reshape(1, -1, 1, 1)
            mu = x.mean(axis=axes, keepdims=True)
            sigma = np.sqrt(x.var(axis=axes, keepdims=True) + self.eps)
            xhat = (x - mu) / sigma
            # + x̂·Σ(dy·x̂) where the formula subtracts it
            grads["dL/dx"] = (gamma / sigma / m) * (
                m * dy - dy.sum(axis=axes, keepdims=True)
                + xhat * (dy * xhat).sum(axis=axes, keepdims=True))
            return grads

    result, actual, expected, found = run_mutant(monkeypatch, "batchnorm", WrongSign(),
                                                 "dL/dx")
    assert_caught(result, actual, expected, "dL/dx")
    assert found["batchnorm (training): dL/dgamma"].status == "pass"


def test_maxpool_misrouted_is_caught(monkeypatch):
    class ToTheMinimum(analytic.MaxPool):
        def formula(self, inputs):
            return super().formula({"x": -inputs["x"], "dout": inputs["dout"]})

    result, actual, expected, _ = run_mutant(monkeypatch, "maxpool", ToTheMinimum(), "dL/dx")
    assert_caught(result, actual, expected, "dL/dx")


def test_missing_gradient_is_a_failure(monkeypatch):
    class NoBias(analytic.Linear):
        def formula(self, inputs):
            grads = super().formula(inputs)
            del grads["dL/db"]
            return grads

    pytest.importorskip("torch")
    monkeypatch.setitem(analytic.FORMULAS, "linear", NoBias())
    found = by_subject(analytic.check_analytic(["linear"]))
    assert found["linear: dL/db"].status == "fail"
    assert "the formula gives no dL/db" in found["linear: dL/db"].detail
    assert found["linear: dL/dW"].status == "pass"


def test_without_torch_every_formula_is_skipped(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    skipped = analytic.check_analytic(["relu", "lstm_cell"])
    assert [(r.subject, r.status) for r in skipped] == [("ReLU", "skip"), ("LSTM cell", "skip")]
    assert "torch is not installed" in skipped[0].detail
