"""`nnspec verify FILE`: the model checks on the examples, the initialisation statistics, the
kink handling, and the command line (reports, --json, bad input)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from typer.testing import CliRunner  # noqa: E402

import nnspec  # noqa: E402
from nnspec.cli import app  # noqa: E402
from nnspec.verify.finite_diff import GradientChecker, Leaf  # noqa: E402
from nnspec.verify.model import ModelVerifier, Options  # noqa: E402
from nnspec.verify.run import verify_file  # noqa: E402
from nnspec.verify.tolerances import tolerance  # noqa: E402

EXAMPLES = Path(__file__).parent.parent / "examples"
runner = CliRunner()

# every example whose checks fit CI time (seconds each on 2 cores); the large image
# networks are verified by hand (benchmarks/README.md lists their times)
SMALL = ["logreg.nn", "linreg.nn", "mlp_digits.nn", "lenet5.nn", "digits_cnn.nn",
         "lstm_classifier.nn", "autoencoder.nn"]


def by(results, check, subject=None):
    found = [r for r in results if r.check == check and (subject is None or r.subject == subject)]
    assert found, (check, subject, [(r.check, r.subject) for r in results])
    return found


@pytest.mark.parametrize("name", SMALL, ids=lambda n: n.removesuffix(".nn"))
def test_example_passes_every_check(name: str):
    report = verify_file(EXAMPLES / name)
    failures = [f"{r.check} {r.subject}: {r.detail}" for r in report.failures]
    assert report.ok, "\n".join(failures)
    assert {r.check for r in report.results} == {"structure", "gradient", "equivalence",
                                                  "overfit", "init"}
    graph = nnspec.load(EXAMPLES / name).graph
    grads = by(report.results, "gradient")
    params = {n for n, _ in torch.nn.Module.named_parameters(_module(graph))}
    assert {r.subject for r in grads} == params | {f"input {i.name}" for i in graph.inputs
                                                   if i.type.dtype == "float32"}
    assert max(r.error for r in grads) < 1e-7  # float64 central differences, h = 1e-6
    assert [r.subject for r in by(report.results, "equivalence")] == ["torch vs numpy",
                                                                       "onnxruntime vs numpy"]


def _module(graph):
    from nnspec.compiler.torch_build import build_module

    return build_module(graph)


def test_small_models_get_the_full_jacobian_and_large_ones_directions():
    logreg = verify_file(EXAMPLES / "logreg.nn", checks=["gradient"])
    assert {r.data["mode"] for r in logreg.results} == {"full"}
    weight = by(logreg.results, "gradient", "linear_1.weight")[0]
    assert weight.data["checked"] == 30  # every element of the 1×30 weight
    assert " of output [" in weight.data["where"] or weight.data["where"] == ""
    lenet = verify_file(EXAMPLES / "lenet5.nn", checks=["gradient"], directions=3)
    assert {r.data["mode"] for r in lenet.results} == {"directional"}
    assert {r.data["checked"] for r in lenet.results} == {3}
    c1 = by(lenet.results, "gradient", "c1.weight")[0]
    assert c1.location.endswith("lenet5.nn:15:14")  # the spec line of c1's conv


def test_structure_counts_lenet5_exactly():
    report = verify_file(EXAMPLES / "lenet5.nn", checks=["structure"])
    shapes, params = report.results
    assert (shapes.subject, shapes.detail) == ("shapes", "12 nodes match the IR")
    assert (params.subject, params.detail) == ("parameters", "61,706 in total, per layer as the IR")


def test_equivalence_reports_the_worst_layer():
    report = verify_file(EXAMPLES / "digits_cnn.nn", checks=["equivalence"])
    torch_result, ort_result = report.results
    assert torch_result.data["compared"] == 14  # every node
    assert ort_result.data["compared"] == 13  # the dropout is an identity: no value of its own
    assert torch_result.error < 1e-5 and ort_result.error < 1e-5
    assert "layers agree; worst scaled error" in torch_result.detail


def test_overfit_uses_the_recipe_and_reports_steps():
    report = verify_file(EXAMPLES / "digits_cnn.nn", checks=["overfit"])
    (result,) = report.results
    assert result.status == "pass"
    assert result.data["accuracy"] == 1.0 and result.data["loss"] == "cross_entropy"
    assert "adam(lr=0.003)" in result.detail and "recipe's training data" in result.detail


def test_overfit_divides_a_diverging_learning_rate():
    # gd(lr=0.2) suits the whole standardised diabetes set, not 4 correlated samples
    report = verify_file(EXAMPLES / "linreg.nn", recipe="LinReg", checks=["overfit"])
    (result,) = report.results
    assert result.status == "pass"
    assert result.data["lr"] == pytest.approx(0.02)
    assert "the recipe's lr 0.2 ÷ 10 (it diverged on this batch)" in result.detail
    assert result.data["final"] <= 1e-2 * result.data["initial"]


def test_overfit_fails_when_the_model_cannot_memorise(tmp_path):
    # a constant output (zero weights, a frozen zero-input path) cannot fit 4 labels
    spec = tmp_path / "tiny.nn"
    spec.write_text("model Tiny {\n    input x: [4]\n    x -> linear(3) -> output\n}\n"
                    "train Tiny {\n    data iris\n    loss cross_entropy\n"
                    "    optimizer sgd(lr=1e-9)\n}\n")
    report = verify_file(spec, checks=["overfit"], overfit_steps=20)
    (result,) = report.results
    assert result.status == "fail" and result.data["steps"] == 20
    assert result.detail.endswith("not memorised within 20 steps")


DEEP = """
block Layer(width: int) {
    input x
    x -> linear(width) -> tanh -> output
}

model Deep {
    input x: [64]
    x -> Layer(64) * 8 -> linear(10) -> output
}

train Deep as small {
    data digits
    loss cross_entropy
    init normal(std=0.01)
}

train Deep as glorot {
    data digits
    loss cross_entropy
    init xavier
}
"""


def test_init_statistics_separate_small_gaussian_from_xavier(tmp_path):
    spec = tmp_path / "deep.nn"
    spec.write_text(DEEP)
    small = verify_file(spec, recipe="small", checks=["init"]).results[0]
    glorot = verify_file(spec, recipe="glorot", checks=["init"]).results[0]
    assert small.status == "warn" and glorot.status == "pass"
    assert small.detail.startswith("vanishing signal: ")
    ratios = {name: [row["ratio"] for row in r.data["layers"] if row["op"] == "tanh"]
              for name, r in (("small", small), ("glorot", glorot))}
    # N(0, 0.01²) with fan-in 64: each layer multiplies the std by about 0.01·√64 = 0.08
    assert ratios["small"][-1] < 1e-6
    assert all(0.2 < r < 1.5 for r in ratios["glorot"])
    # standardised features, but digits' always-blank pixels stay 0: std just below 1
    assert 0.8 < small.data["input_std"] < 1.0


def test_init_fails_on_a_dead_network(tmp_path):
    spec = tmp_path / "dead.nn"
    spec.write_text("model Dead {\n    input x: [64]\n    x -> linear(16) -> relu -> linear(10) "
                    "-> output\n}\ntrain Dead {\n    data digits\n    loss cross_entropy\n"
                    "    init zeros\n}\n")
    result = verify_file(spec, checks=["init"]).results[0]
    assert result.status == "fail"
    assert result.detail.startswith("`linear_1` (linear) is constant zero or non-finite")
    assert result.location.endswith("dead.nn:3:10")


def test_a_kink_inside_the_step_is_skipped_not_reported():
    # |x| = 3e-7 < h = 1e-6: the central difference straddles ReLU's kink
    x = torch.tensor([3e-7, -2e-7, 0.5, -0.5], dtype=torch.float64, requires_grad=True)
    checker = GradientChecker(lambda: torch.relu(x), [Leaf("x", x)], tolerance("gradient"))
    (finding,) = checker.full()
    assert finding.ok and finding.kinks == 0  # h/100 = 1e-8 steps clear of the kink
    y = torch.tensor([4e-9, 0.5], dtype=torch.float64, requires_grad=True)
    checker = GradientChecker(lambda: torch.relu(y), [Leaf("y", y)], tolerance("gradient"))
    (finding,) = checker.full()
    assert finding.ok and finding.kinks == 1 and finding.checked == 2


def test_a_wrong_gradient_is_not_mistaken_for_a_kink():
    class Detached(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 3

        @staticmethod
        def backward(ctx, grad):
            return grad * 2  # wrong: should be 3

    x = torch.tensor([0.3, -1.2], dtype=torch.float64, requires_grad=True)
    checker = GradientChecker(lambda: Detached.apply(x), [Leaf("x", x)], tolerance("gradient"))
    (finding,) = checker.full()
    assert not finding.ok and finding.kinks == 0
    assert (finding.autograd, round(finding.numeric, 6)) == (2.0, 3.0)


def test_inputs_are_redrawn_away_from_relu_zeros():
    graph = nnspec.load(EXAMPLES / "mlp_digits.nn").graph
    verifier = ModelVerifier(graph, options=Options(checks=("gradient",)))
    results = verifier.check_gradient()
    assert min(r.data["kink_margin"] for r in results) >= 1e-4


def test_given_weights_are_the_ones_verified(tmp_path):
    from safetensors.torch import save_file

    graph = nnspec.load(EXAMPLES / "logreg.nn").graph
    module = _module(graph)
    with torch.no_grad():
        module.get_submodule("linear_1").weight.fill_(0.0)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    report = verify_file(EXAMPLES / "logreg.nn", weights=path, checks=["init"])
    assert "with the given weights" in report.results[0].detail


# -- the command line ------------------------------------------------------------------------
def test_cli_report_and_json():
    result = runner.invoke(app, ["verify", str(EXAMPLES / "logreg.nn"), "--checks",
                                 "structure,gradient"])
    assert result.exit_code == 0, result.output
    assert "pass  structure   parameters" in result.output
    assert "ok: 5 passed, 0 failed, 0 warnings, 0 skipped" in result.output
    result = runner.invoke(app, ["verify", str(EXAMPLES / "logreg.nn"), "--checks", "gradient",
                                 "--json"])
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["ok"] is True and payload["subject"] == "LogReg"
    assert payload["counts"] == {"pass": 3, "fail": 0, "warn": 0, "skip": 0}
    assert {r["subject"] for r in payload["results"]} == {"input x", "linear_1.weight",
                                                          "linear_1.bias"}


def test_cli_ops_and_analytic():
    result = runner.invoke(app, ["verify", "--ops", "--kind", "relu", "--analytic", "--json"])
    assert result.exit_code == 0, result.output
    ops, analytic = json.loads(result.stdout)
    assert ops["subject"] == "ops" and ops["counts"]["fail"] == 0
    assert {r["subject"] for r in ops["results"]} == {"relu[0]", "relu[1]"}
    assert analytic["counts"] == {"pass": 22, "fail": 0, "warn": 0, "skip": 0}


@pytest.mark.parametrize(("args", "message"), [
    ([], "error: give a spec FILE, --ops or --analytic"),
    (["{lenet}", "--checks", "gradients"], "error: unknown check `gradients`; the checks are "
                                           "structure, gradient, equivalence, overfit, init"),
    (["{lenet}", "--gradient-mode", "jacobian"], "--gradient-mode must be auto, full or "
                                                 "directional, got 'jacobian'"),
    (["--ops", "--kind", "convv"], "error: no op `convv`"),
    (["{lenet}", "--kind", "conv"], "error: --kind selects ops of the --ops sweep; add --ops"),
])
def test_cli_usage_errors(args, message):
    args = [a.replace("{lenet}", str(EXAMPLES / "lenet5.nn")) for a in args]
    result = runner.invoke(app, ["verify", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_bad_spec_weights_and_data(tmp_path):
    missing = runner.invoke(app, ["verify", str(tmp_path / "nope.nn")])
    assert missing.exit_code == 1 and "nope.nn" in missing.output
    broken = tmp_path / "broken.nn"
    broken.write_text("model M {\n    input x: [3, 8, 8]\n    x -> conv(8, 5, stride=2) -> output\n}\n")
    result = runner.invoke(app, ["verify", str(broken)])
    assert result.exit_code == 1 and "error[E2101]" in result.output
    assert "broken.nn:3:" in result.output
    corrupt = tmp_path / "w.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    result = runner.invoke(app, ["verify", str(EXAMPLES / "logreg.nn"), "--weights", str(corrupt)])
    assert result.exit_code == 1 and "is not a readable safetensors file" in result.output
    assert corrupt.read_bytes() == b"not a safetensors file"  # nothing overwritten
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"linear_1.weight": torch.zeros(2, 2)}, str(other))
    result = runner.invoke(app, ["verify", str(EXAMPLES / "logreg.nn"), "--weights", str(other)])
    assert result.exit_code == 1 and "the weights come from another spec" in result.output
    nodata = tmp_path / "nodata.nn"
    nodata.write_text("model M {\n    input x: [3]\n    x -> linear(2) -> output\n}\n"
                      "train M {\n    data csv(\"missing.csv\")\n    loss cross_entropy\n}\n")
    result = runner.invoke(app, ["verify", str(nodata)])
    assert result.exit_code == 1 and "missing.csv" in result.output
    assert "Traceback" not in result.output


def test_verify_json_numbers_are_plain():
    report = verify_file(EXAMPLES / "logreg.nn", checks=["overfit"])
    payload = json.loads(report.to_json())
    assert isinstance(payload["results"][0]["error"], float)
    assert np.isfinite(payload["results"][0]["error"])
