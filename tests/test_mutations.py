"""Mutation tests: every check of the verification suite (verify/) can fail, and fails for
the bug it is meant for.

Each test injects one bug with ``monkeypatch`` (the op files are never edited), first shows
that the unmutated code passes the same check, then that the mutant is caught by the right
check, on the right subject, with a report that names what is wrong:

1. a lowering with a wrong padding (conv): sweep ``shape``; model ``structure``;
2. a swapped axis: softmax's torch lowering on the batch axis (sweep ``reference``, model
   ``equivalence`` for torch), flatten's ONNX lowering on transposed axes (sweep ``onnx``,
   model ``equivalence`` for onnxruntime);
3. a ``detach`` in the forward of linear: sweep ``gradient``; model ``gradient``;
4. a wrong batchnorm epsilon: in the torch lowering (sweep ``reference``), in the ONNX
   lowering (sweep ``onnx``);
5. an analytic gradient with a sign error: ``nnspec verify --analytic``;
6. a shape rule off by one (maxpool): sweep ``shape``; model ``structure``;

and the command line on broken variants: exit 1, the failing check and subject in the
output, and ``--json`` with ``ok: false`` and the failing result.

A shape bug that makes a later layer's forward raise is reported as a failing result at
the first wrong node (``check_structure``) or check (``sweep_op``), never as an exception.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from nnspec.cli import app  # noqa: E402
from nnspec.compiler import torch_modules  # noqa: E402
from nnspec.spec.ops import TorchCall  # noqa: E402
from nnspec.spec.ops.activation import Softmax  # noqa: E402
from nnspec.spec.ops.conv import Conv  # noqa: E402
from nnspec.spec.ops.linear import Linear  # noqa: E402
from nnspec.spec.ops.norm import BatchNorm  # noqa: E402
from nnspec.spec.ops.pool import MaxPool  # noqa: E402
from nnspec.spec.ops.shape import Flatten  # noqa: E402
from nnspec.verify import analytic  # noqa: E402
from nnspec.verify.model import ModelVerifier, Options  # noqa: E402
from nnspec.verify.run import verify_file  # noqa: E402
from nnspec.verify.sweep import sweep_op, where_defined  # noqa: E402
from nnspec.verify.tolerances import tolerance  # noqa: E402

SWEEP_CHECKS = ("params", "shape", "reference", "gradient", "onnx")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These graphs are tiny: one torch thread is faster, and steady on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- helpers ------------------------------------------------------------------------------


def statuses(results) -> dict[tuple[str, str], str]:
    """{(subject, check): status} of a sweep (one result per sample and check)."""
    table = {}
    for r in results:
        assert (r.subject, r.check) not in table, (r.subject, r.check)
        table[(r.subject, r.check)] = r.status
    return table


def with_failures(baseline: dict[tuple[str, str], str], kind: str,
                  failing: dict[int, set[str]]) -> dict[tuple[str, str], str]:
    """The unmutated statuses, with ``failing[i]`` of sample i turned to fail."""
    out = dict(baseline)
    for i, checks in failing.items():
        for check in checks:
            out[(f"{kind}[{i}]", check)] = "fail"
    return out


def sample_results(results, kind: str) -> list:
    """The results of the samples (not the misuse diagnostics) of one op."""
    return [r for r in results if r.check != "diagnostic" and r.subject.startswith(f"{kind}[")]


def assert_sweep_passes(cls) -> dict[tuple[str, str], str]:
    """Sweep the unmutated op: nothing fails, every sample ran every check (a gradient is
    skipped only for integer ids). Returns the statuses, the baseline of a mutation."""
    results = sweep_op(cls)
    assert not [r for r in results if r.failed], [(r.subject, r.check, r.detail)
                                                  for r in results if r.failed]
    baseline = statuses(sample_results(results, cls.kind))
    assert set(baseline) == {(f"{cls.kind}[{i}]", check) for i in range(len(cls.samples))
                             for check in SWEEP_CHECKS}
    assert {s for (_, check), s in baseline.items() if check != "gradient"} == {"pass"}
    return baseline


def one(results, check: str, subject: str):
    found = [r for r in results if r.check == check and r.subject == subject]
    assert len(found) == 1, (check, subject, [(r.check, r.subject) for r in results])
    return found[0]


def write_spec(tmp_path: Path, text: str, name: str = "spec.nn") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def where(path: Path, text: str, needle: str, occurrence: int = 0) -> str:
    """``file:line:col`` of the ``occurrence``-th ``needle`` in the spec (1-based)."""
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        col = line.find(needle)
        while col >= 0:
            if seen == occurrence:
                return f"{path}:{number}:{col + 1}"
            seen += 1
            col = line.find(needle, col + 1)
    raise AssertionError(needle)


def verifier(path: Path, checks: tuple[str, ...]) -> ModelVerifier:
    from nnspec.api import load

    return ModelVerifier(load(path).graph, options=Options(checks=checks))


def failures(results) -> list[tuple[str, str]]:
    return [(r.check, r.subject) for r in results if r.failed]


runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, ["verify", *args])


# ---- the mutations ------------------------------------------------------------------------


def pad_one_more(monkeypatch) -> None:
    """Conv's torch lowering pads one more than the spec asks (explicit paddings only; an
    even `same` kernel, which torch pads itself, is left alone)."""
    original = Conv.torch_call

    def torch_call(self, inputs):
        call = original(self, inputs)
        padding = call.kwargs["padding"]
        if isinstance(padding, tuple):
            padding = tuple(p + 1 for p in padding)
        return TorchCall(call.cls, {**call.kwargs, "padding": padding})

    monkeypatch.setattr(Conv, "torch_call", torch_call)


def softmax_over_the_batch(monkeypatch) -> None:
    """Softmax's torch lowering forgets that the batch axis comes first (dim = axis)."""
    monkeypatch.setattr(Softmax, "torch_call",
                        lambda self, inputs: TorchCall(self.torch_cls, {"dim": self.axis}))


def flatten_transposed_in_onnx(monkeypatch) -> None:
    """Flatten's ONNX lowering swaps the last two axes before its Reshape (a transposed
    permutation: the right shape, the elements in the wrong order)."""

    def to_onnx(self, g, inputs, types, name, params):
        rank = types[0].rank + 1  # with the batch axis
        perm = [*range(rank - 2), rank - 1, rank - 2]
        swapped = g.node("Transpose", [inputs[0]], perm=perm)
        return g.reshape(swapped, [0, *self.infer(types).shape])

    monkeypatch.setattr(Flatten, "to_onnx", to_onnx)


class DetachedLinear(nn.Linear):
    """nn.Linear whose forward cuts the weight out of the graph: the same values, no weight
    gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.detach(), self.bias)


def detach_linear_weight(monkeypatch, features: int | None = None) -> None:
    """Linear's torch lowering builds DetachedLinear (for the layers of ``features`` outputs
    only, when given), a class injected into compiler/torch_modules for the test."""
    monkeypatch.setattr(torch_modules, "DetachedLinear", DetachedLinear, raising=False)
    original = Linear.torch_call

    def torch_call(self, inputs):
        call = original(self, inputs)
        if features is not None and self.features != features:
            return call
        return TorchCall("DetachedLinear", call.kwargs)

    monkeypatch.setattr(Linear, "torch_call", torch_call)


WRONG_EPS = 1e-1


def batchnorm_eps_in_torch(monkeypatch) -> None:
    original = BatchNorm.torch_call
    monkeypatch.setattr(BatchNorm, "torch_call", lambda self, inputs: original(
        self.model_copy(update={"eps": WRONG_EPS}), inputs))


def batchnorm_eps_in_onnx(monkeypatch) -> None:
    original = BatchNorm.to_onnx
    monkeypatch.setattr(BatchNorm, "to_onnx", lambda self, g, inputs, types, name, params:
                        original(self.model_copy(update={"eps": WRONG_EPS}), g, inputs, types,
                                 name, params))


def maxpool_one_too_large(monkeypatch) -> None:
    """MaxPool's shape rule gives every spatial size one more than torch computes."""
    original = MaxPool.infer

    def infer(self, inputs):
        out = original(self, inputs)
        return out.model_copy(update={"shape": (out.shape[0], *(s + 1 for s in out.shape[1:]))})

    monkeypatch.setattr(MaxPool, "infer", infer)


class ReluSignError(analytic.ReLU):
    """dL/dx = -dout ⊙ [x > 0]: the course's ReLU backward with its sign flipped."""

    def formula(self, inputs):
        return {"dL/dx": -inputs["dout"] * (inputs["x"] > 0)}


# ---- 1. a lowering with a wrong padding ---------------------------------------------------


def test_wrong_padding_fails_the_sweep_shape_check(monkeypatch):
    baseline = assert_sweep_passes(Conv)
    pad_one_more(monkeypatch)
    results = sample_results(sweep_op(Conv), "conv")
    # conv[2] is the even `same` kernel: torch pads it itself, the mutation does not reach it
    wrong = {"shape", "reference", "onnx"}
    assert statuses(results) == with_failures(baseline, "conv", {0: wrong, 1: wrong, 3: wrong})
    shape = one(results, "shape", "conv[0]")
    assert shape.detail == "torch [2, 4, 8, 8] float32, IR [2, 4, 6, 6] float32"
    assert shape.location == where_defined(Conv) and shape.location.startswith("conv.py:")
    assert one(results, "shape", "conv[1]").detail == \
        "torch [2, 4, 12] float32, IR [2, 4, 10] float32"
    assert one(results, "shape", "conv[3]").detail == \
        "torch [2, 6, 4, 4] float32, IR [2, 6, 3, 3] float32"
    assert one(results, "reference", "conv[0]").detail == \
        "torch vs numpy: shape [2, 4, 8, 8] vs [2, 4, 6, 6]"
    assert "onnxruntime vs torch: shape [2, 4, 6, 6] vs [2, 4, 8, 8]" in \
        one(results, "onnx", "conv[0]").detail


PADDED = """\
model Padded {
    input x: [3, 8, 8]
    x -> conv(4, 3, padding=1) -> global_avgpool -> flatten -> linear(2) -> output
}
"""


def test_wrong_padding_fails_the_model_structure_check(tmp_path, monkeypatch):
    path = write_spec(tmp_path, PADDED)
    fine = verify_file(path, checks=["structure"])
    assert fine.ok and [(r.subject, r.status) for r in fine.results] == [
        ("shapes", "pass"), ("parameters", "pass")]

    pad_one_more(monkeypatch)
    report = verify_file(path, checks=["structure"])
    assert not report.ok
    assert failures(report.results) == [("structure", "conv_1 shape")]  # the global pool agrees
    r = one(report.results, "structure", "conv_1 shape")
    assert r.detail == "torch gives [2, 4, 10, 10], the IR [2, 4, 8, 8]"
    assert r.location == where(path, PADDED, "conv(")
    assert one(report.results, "structure", "parameters").status == "pass"  # the count is right


def test_wrong_padding_in_lenet5_is_located(monkeypatch):
    path = EXAMPLES / "lenet5.nn"
    assert verifier(path, ("structure",)).run().ok
    pad_one_more(monkeypatch)
    results = verifier(path, ("structure",)).check_structure()
    r = one(results, "structure", "c1 shape")
    assert r.status == "fail"
    assert r.detail == "torch gives [2, 6, 30, 30], the IR [2, 6, 28, 28]"
    assert r.location == where(path, path.read_text(), "conv(6, 5)")
    stopped = one(results, "structure", "f5 shape")  # 16·6·6 = 576 features reach f5, not 400
    assert stopped.detail.startswith("the forward stopped here: RuntimeError: mat1 and mat2")


def test_wrong_in_features_is_reported_not_raised(monkeypatch):
    baseline = assert_sweep_passes(Linear)
    original = Linear.torch_call
    monkeypatch.setattr(Linear, "torch_call", lambda self, inputs: TorchCall(
        "nn.Linear", {**original(self, inputs).kwargs,
                      "in_features": inputs[0].shape[-1] + 1}))
    found = statuses(sample_results(sweep_op(Linear), "linear"))
    assert set(found) == set(baseline)
    for i in range(2):
        assert found[(f"linear[{i}]", "params")] == found[(f"linear[{i}]", "shape")] == "fail"


# ---- 2. a swapped axis --------------------------------------------------------------------


def test_softmax_over_the_batch_axis_fails_the_sweep_reference_check(monkeypatch):
    baseline = assert_sweep_passes(Softmax)
    softmax_over_the_batch(monkeypatch)
    results = sample_results(sweep_op(Softmax), "softmax")
    # softmax[1] has axis=-1, which needs no shift: the mutation is right there
    wrong = {"reference", "onnx"}
    assert statuses(results) == with_failures(baseline, "softmax", {0: wrong, 2: wrong})
    ref = one(results, "reference", "softmax[0]")
    assert re.fullmatch(r"torch vs numpy: worst at y\[\d, \d\]: \S+ vs \S+ "
                        r"\(\|Δ\| = \S+, relative \S+\)", ref.detail), ref.detail
    assert ref.error > 1e-2 and ref.tolerance == tolerance("reference").bound
    # ONNX is right; it is compared with torch, so torch's error shows there too
    assert one(results, "onnx", "softmax[0]").detail.startswith("onnxruntime vs torch: worst at")


def test_transposed_flatten_in_onnx_fails_the_sweep_onnx_check(monkeypatch):
    baseline = assert_sweep_passes(Flatten)
    flatten_transposed_in_onnx(monkeypatch)
    results = sample_results(sweep_op(Flatten), "flatten")
    # torch and the numpy reference are untouched: only the ONNX check fails, every sample
    assert statuses(results) == with_failures(baseline, "flatten",
                                              {i: {"onnx"} for i in range(4)})
    onnx = one(results, "onnx", "flatten[0]")
    assert onnx.detail.startswith("onnxruntime vs torch: worst at y[")
    assert onnx.error > 1e-2 and onnx.tolerance == tolerance("onnx").bound


SOFTMAX = """\
model Classifier {
    input x: [6]
    x -> linear(10) -> softmax -> linear(3) -> output
}
"""


def test_softmax_over_the_batch_axis_fails_model_equivalence_at_the_softmax(tmp_path,
                                                                          monkeypatch):
    path = write_spec(tmp_path, SOFTMAX)
    fine = verifier(path, ("equivalence",)).check_equivalence()
    assert [(r.subject, r.status) for r in fine] == [("torch vs numpy", "pass"),
                                                     ("onnxruntime vs numpy", "pass")]

    softmax_over_the_batch(monkeypatch)
    torch_side, onnx_side = verifier(path, ("equivalence",)).check_equivalence()
    assert (torch_side.check, torch_side.subject, torch_side.status) == (
        "equivalence", "torch vs numpy", "fail")
    assert torch_side.detail.startswith("first divergence at `softmax_1` (softmax): worst at "
                                        "softmax_1[")
    assert torch_side.location == where(path, SOFTMAX, "softmax")
    assert torch_side.data == {"layer": "softmax_1", "compared": 2}  # linear_1 agreed
    assert torch_side.error > torch_side.tolerance == tolerance("equivalence").bound
    assert onnx_side.subject == "onnxruntime vs numpy" and onnx_side.status == "pass"


FLATTEN = """\
model Small {
    input x: [2, 5, 5]
    x -> conv(3, 3) -> flatten -> linear(4) -> output
}
"""


def test_transposed_flatten_in_onnx_fails_model_equivalence_at_the_flatten(tmp_path,
                                                                         monkeypatch):
    path = write_spec(tmp_path, FLATTEN)
    fine = verifier(path, ("equivalence",)).check_equivalence()
    assert [r.status for r in fine] == ["pass", "pass"]

    flatten_transposed_in_onnx(monkeypatch)
    torch_side, onnx_side = verifier(path, ("equivalence",)).check_equivalence()
    assert torch_side.status == "pass"
    assert (onnx_side.subject, onnx_side.status) == ("onnxruntime vs numpy", "fail")
    assert onnx_side.detail.startswith("first divergence at `flatten_1` (flatten): worst at "
                                       "flatten_1[")
    assert onnx_side.location == where(path, FLATTEN, "flatten")
    assert onnx_side.data == {"layer": "flatten_1", "compared": 2}  # conv_1 agreed


# ---- 3. a detach in the forward -----------------------------------------------------------


def test_detached_weight_fails_the_sweep_gradient_check(monkeypatch):
    baseline = assert_sweep_passes(Linear)
    detach_linear_weight(monkeypatch)
    results = sample_results(sweep_op(Linear), "linear")
    # the forward is unchanged: only the gradient check can see it
    assert statuses(results) == with_failures(baseline, "linear",
                                              {0: {"gradient"}, 1: {"gradient"}})
    for i in range(2):
        r = one(results, "gradient", f"linear[{i}]")
        assert re.match(r"weight\[\d, \d\]: autograd 0 vs finite difference -?\d", r.detail), \
            r.detail
        assert r.error > 1e-3 and r.tolerance == tolerance("gradient").bound


MLP = """\
model Mlp {
    input x: [4]
    x -> linear(6) -> tanh -> linear(3) -> output
}
"""


def test_detached_weight_fails_the_model_gradient_check_naming_the_parameter(tmp_path,
                                                                            monkeypatch):
    path = write_spec(tmp_path, MLP)
    fine = verifier(path, ("gradient",)).check_gradient()
    subjects = ["input x", "linear_1.weight", "linear_1.bias", "linear_2.weight", "linear_2.bias"]
    assert [(r.subject, r.status) for r in fine] == [(s, "pass") for s in subjects]

    detach_linear_weight(monkeypatch, features=6)  # the first layer only
    results = verifier(path, ("gradient",)).check_gradient()
    assert [r.subject for r in results] == subjects
    assert failures(results) == [("gradient", "linear_1.weight")]
    r = one(results, "gradient", "linear_1.weight")
    assert r.location == where(path, MLP, "linear(6)")
    # the bound the worst element was held to: atol·scale + rtol·|fd| there, never below atol
    assert tolerance("gradient").bound * 0.5 < r.tolerance < r.error
    assert r.data["mode"] == "full" and r.data["autograd"] == 0.0
    numeric = r.data["numeric"]
    assert abs(numeric) > 1e-3 and r.error == pytest.approx(abs(numeric))
    assert re.match(r"linear_1\.weight\[\d, \d\] of output \[\d, \d\]: autograd 0 vs finite "
                    rf"difference {re.escape(f'{numeric:.9g}')} \(\|Δ\| = \S+, bound \S+\)",
                    r.detail), r.detail
    assert r.data["where"] in r.detail
    # the first layer's bias and the input still get their gradients through the same layer
    assert one(results, "gradient", "linear_1.bias").status == "pass"
    assert one(results, "gradient", "input x").status == "pass"


def test_detached_weight_leaves_the_forward_checks_passing(tmp_path, monkeypatch):
    """The bug is in the backward only: structure and equivalence have nothing to see."""
    path = write_spec(tmp_path, MLP)
    detach_linear_weight(monkeypatch)
    report = verifier(path, ("structure", "equivalence")).run()
    assert report.ok, failures(report.results)


# ---- 4. a wrong batchnorm epsilon ---------------------------------------------------------


def test_wrong_epsilon_in_torch_fails_the_sweep_reference_check(monkeypatch):
    baseline = assert_sweep_passes(BatchNorm)
    batchnorm_eps_in_torch(monkeypatch)
    results = sample_results(sweep_op(BatchNorm), "batchnorm")
    # onnxruntime is compared with torch, so the torch error shows in `onnx` too
    assert statuses(results) == with_failures(baseline, "batchnorm",
                                              {i: {"reference", "onnx"} for i in range(5)})
    for i in range(5):
        r = one(results, "reference", f"batchnorm[{i}]")
        assert r.detail.startswith("torch vs numpy: worst at y["), r.detail
        assert r.error > 1e-3 and r.tolerance == tolerance("reference").bound


def test_wrong_epsilon_in_onnx_fails_the_sweep_onnx_check(monkeypatch):
    baseline = assert_sweep_passes(BatchNorm)
    batchnorm_eps_in_onnx(monkeypatch)
    results = sample_results(sweep_op(BatchNorm), "batchnorm")
    assert statuses(results) == with_failures(baseline, "batchnorm",
                                              {i: {"onnx"} for i in range(5)})
    for i in range(5):
        r = one(results, "onnx", f"batchnorm[{i}]")
        assert r.detail.startswith("onnxruntime vs torch: worst at y["), r.detail
        assert r.error > 1e-3 and r.tolerance == tolerance("onnx").bound


# ---- 5. an analytic gradient with a sign error ----------------------------------------------


def test_analytic_sign_error_fails_through_the_cli(monkeypatch):
    total = len(analytic.check_analytic())  # one result per formula and gradient
    fine = cli("--analytic")
    assert fine.exit_code == 0, fine.output
    assert f"ok: {total} passed, 0 failed" in fine.output

    monkeypatch.setitem(analytic.FORMULAS, "relu", ReluSignError())
    broken = cli("--analytic")
    assert broken.exit_code == 1, broken.output
    assert re.search(r"FAIL\s+analytic\s+ReLU: dL/dx", broken.output), broken.output
    assert re.search(r"worst at dL/dx\[\d, \d\]: ", broken.output)
    assert f"FAILED: {total - 1} passed, 1 failed" in broken.output

    payload = json.loads(cli("--analytic", "--json").stdout)
    assert payload["subject"] == "analytic" and payload["ok"] is False
    assert payload["counts"] == {"pass": total - 1, "fail": 1, "warn": 0, "skip": 0}
    (failed,) = [r for r in payload["results"] if r["status"] == "fail"]
    assert (failed["check"], failed["subject"]) == ("analytic", "ReLU: dL/dx")
    assert failed["data"]["formula"] == "relu" and failed["error"] > 1e-2


# ---- 6. a shape rule off by one -----------------------------------------------------------


def test_shape_rule_off_by_one_fails_the_sweep_shape_check(monkeypatch):
    baseline = assert_sweep_passes(MaxPool)
    maxpool_one_too_large(monkeypatch)
    results = sample_results(sweep_op(MaxPool), "maxpool")
    # torch and the reference agree with each other (both compute the true size); the ONNX
    # lowering pads to reach the IR's size, so onnxruntime follows the wrong rule
    assert statuses(results) == with_failures(baseline, "maxpool",
                                              {i: {"shape", "onnx"} for i in range(6)})
    assert one(results, "shape", "maxpool[0]").detail == \
        "torch [2, 3, 4, 4] float32, IR [2, 3, 5, 5] float32"
    assert one(results, "shape", "maxpool[3]").detail == \
        "torch [2, 2, 4] float32, IR [2, 2, 5] float32"
    assert one(results, "onnx", "maxpool[0]").detail == \
        "onnxruntime vs torch: shape [2, 3, 5, 5] vs [2, 3, 4, 4]"


POOLED = """\
model Pooled {
    input x: [3, 8, 8]
    x -> conv(4, 3, padding=1) -> relu -> maxpool(2) -> global_avgpool -> flatten
      -> linear(2) -> output
}
"""


def test_shape_rule_off_by_one_fails_the_model_structure_check(tmp_path, monkeypatch):
    path = write_spec(tmp_path, POOLED)
    assert verify_file(path, checks=["structure"]).ok

    maxpool_one_too_large(monkeypatch)  # before the spec is compiled: the IR is wrong
    report = verify_file(path, checks=["structure"])
    assert failures(report.results) == [("structure", "maxpool_1 shape")]
    r = one(report.results, "structure", "maxpool_1 shape")
    assert r.detail == "torch gives [2, 4, 4, 4], the IR [2, 4, 5, 5]"
    assert r.location == where(path, POOLED, "maxpool")


# ---- the command line on a broken variant -------------------------------------------------


def test_cli_reports_a_broken_model(tmp_path, monkeypatch):
    path = write_spec(tmp_path, PADDED)
    fine = cli(str(path), "--checks", "structure")
    assert fine.exit_code == 0, fine.output
    assert "ok: 2 passed, 0 failed" in fine.output

    pad_one_more(monkeypatch)
    broken = cli(str(path), "--checks", "structure")
    assert broken.exit_code == 1, broken.output
    location = where(path, PADDED, "conv(")
    assert re.search(rf"FAIL\s+structure\s+conv_1 shape\s+{re.escape(location)}",
                     broken.output), broken.output
    assert "torch gives [2, 4, 10, 10], the IR [2, 4, 8, 8]" in broken.output
    assert "FAILED: 1 passed, 1 failed" in broken.output

    as_json = cli(str(path), "--checks", "structure", "--json")
    assert as_json.exit_code == 1
    payload = json.loads(as_json.stdout)
    assert payload["subject"] == "Padded" and payload["ok"] is False
    assert payload["counts"]["fail"] == 1
    (failed,) = [r for r in payload["results"] if r["status"] == "fail"]
    assert failed == {"check": "structure", "subject": "conv_1 shape", "status": "fail",
                      "error": None, "tolerance": None,
                      "detail": "torch gives [2, 4, 10, 10], the IR [2, 4, 8, 8]",
                      "location": location, "data": {}}


def test_cli_reports_a_broken_gradient(tmp_path, monkeypatch):
    path = write_spec(tmp_path, MLP)
    assert cli(str(path), "--checks", "gradient").exit_code == 0

    detach_linear_weight(monkeypatch, features=6)
    broken = cli(str(path), "--checks", "gradient")
    assert broken.exit_code == 1, broken.output
    location = where(path, MLP, "linear(6)")
    assert re.search(rf"FAIL\s+gradient\s+linear_1\.weight\s+{re.escape(location)}",
                     broken.output), broken.output
    assert re.search(r"linear_1\.weight\[\d, \d\] of output \[\d, \d\]: autograd 0 vs finite "
                     r"difference", broken.output)

    payload = json.loads(cli(str(path), "--checks", "gradient", "--json").stdout)
    assert payload["ok"] is False
    (failed,) = [r for r in payload["results"] if r["status"] == "fail"]
    assert (failed["check"], failed["subject"], failed["location"]) == (
        "gradient", "linear_1.weight", location)
    assert failed["data"]["autograd"] == 0.0 and failed["data"]["numeric"] != 0.0
    assert 0 < failed["tolerance"] < failed["error"]


def test_cli_reports_a_broken_op_in_the_sweep(monkeypatch):
    fine = cli("--ops", "--kind", "batchnorm")
    assert fine.exit_code == 0, fine.output

    batchnorm_eps_in_onnx(monkeypatch)
    broken = cli("--ops", "--kind", "batchnorm")
    assert broken.exit_code == 1, broken.output
    location = where_defined(BatchNorm)
    for i in range(5):
        assert re.search(rf"FAIL\s+onnx\s+batchnorm\[{i}\]\s+{re.escape(location)}",
                         broken.output), broken.output
    assert "onnxruntime vs torch: worst at y[" in broken.output
    assert re.search(r"FAILED: \d+ passed, 5 failed", broken.output)

    payload = json.loads(cli("--ops", "--kind", "batchnorm", "--json").stdout)
    assert payload["subject"] == "ops" and payload["ok"] is False
    assert sorted((r["check"], r["subject"]) for r in payload["results"]
                  if r["status"] == "fail") == [("onnx", f"batchnorm[{i}]") for i in range(5)]
