"""The registry sweep (verify/sweep.py): every op × its samples passes every check, and an op
that lacks a sample, a reference or a lowering fails it."""

from __future__ import annotations

from typing import ClassVar

import pytest

from nnspec.spec.ir import TensorType
from nnspec.spec.ops import REGISTRY, BadSample, Op, sample
from nnspec.verify import tolerances
from nnspec.verify.sweep import bad_sample_text, check_bad_sample, op_classes, sweep_op

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

CHECKS = {"params", "shape", "reference", "gradient", "onnx"}
NO_MISUSE = {"identity", "relu", "sigmoid", "tanh"}  # any float tensor is a valid input


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("cls", op_classes(), ids=lambda c: c.kind)
def test_op_passes_the_sweep(cls: type[Op]):
    results = sweep_op(cls)
    failures = [f"{r.subject} {r.check}: {r.detail}" for r in results if r.failed]
    assert not failures, "\n".join(failures)
    for i in range(len(cls.samples)):
        ran = {r.check for r in results if r.subject == f"{cls.kind}[{i}]"}
        assert ran == CHECKS, (i, ran)
    assert sum(r.check == "diagnostic" for r in results) == len(cls.bad_samples)


def test_every_registered_op_is_swept_and_can_be_misused():
    kinds = {cls.kind for cls in op_classes()}
    assert kinds == {cls.kind for cls in REGISTRY.values()} and len(kinds) >= 49
    without = sorted(cls.kind for cls in op_classes() if not cls.bad_samples)
    assert without == sorted(NO_MISUSE)


class Bare(Op):
    """Registered nowhere: an op written without any of the contract's pieces."""

    kind: ClassVar[str] = "bare"

    def infer(self, inputs):
        return inputs[0]


def test_an_op_without_samples_reference_or_lowerings_fails():
    results = sweep_op(Bare)
    failed = {(r.check, r.detail) for r in results if r.failed}
    assert failed == {
        ("samples", "`bare` has no samples: add `samples` to its class"),
        ("reference", "`bare` has no numpy reference"),
        ("torch_call", "`bare` has no torch_call lowering"),
        ("to_onnx", "`bare` has no to_onnx lowering"),
    }


def test_a_sample_without_lowerings_fails_its_checks():
    class Sampled(Bare):
        kind: ClassVar[str] = "sampled"
        samples: ClassVar = (sample({}, (3,)),)

    results = sweep_op(Sampled)
    shape = [r for r in results if r.check == "shape"]
    assert [r.status for r in shape] == ["fail"]
    assert shape[0].detail == "`sampled` has no torch lowering"


def test_bad_sample_spec_text_and_a_wrong_code():
    conv = REGISTRY["conv"]
    bad = BadSample(call="conv(8, 5, stride=2)", inputs=((3, 8, 8),), code="E2101")
    assert bad_sample_text(bad, 1) == (
        "model Misuse {\n    input x0: [3, 8, 8]\n    x0 -> conv(8, 5, stride=2) -> output\n}\n")
    assert check_bad_sample(conv, 0, bad).status == "pass"
    wrong = BadSample(call="conv(8, 5, stride=2)", inputs=((3, 8, 8),), code="E2104")
    result = check_bad_sample(conv, 0, wrong)
    assert result.status == "fail" and result.detail.endswith("expected E2104, got E2101")
    fine = BadSample(call="conv(8, 3)", inputs=((3, 8, 8),), code="E2101")
    assert check_bad_sample(conv, 0, fine).detail.endswith("compiled without an error; "
                                                          "expected E2101")
    add = REGISTRY["add"]
    pair = BadSample(call="x0 + x1", inputs=((3,), (4,)), code="E2105")
    assert "    x0 + x1 -> output" in bad_sample_text(pair, add.arity)
    assert check_bad_sample(add, 0, pair).status == "pass"


def test_every_loosened_tolerance_says_why():
    for key, tol in tolerances.LOOSENED.items():
        assert key[0] in tolerances.DEFAULTS and key[1] in REGISTRY, key
        assert len(tol.reason) > 20, key
        assert tol.bound > tolerances.DEFAULTS[key[0]].bound, key


def test_sweep_results_locate_the_op_class():
    results = sweep_op(REGISTRY["relu"])
    assert {r.location for r in results} == {f"activation.py:{line_of('ReLU')}"}


def line_of(class_name: str) -> int:
    import inspect

    from nnspec.spec.ops import activation

    return inspect.getsourcelines(getattr(activation, class_name))[1]


def test_types_of_samples_are_tensor_types():
    for cls in op_classes():
        for s in cls.samples:
            assert all(isinstance(t, TensorType) for t in s.inputs), cls.kind
