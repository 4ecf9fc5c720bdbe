"""Training end to end: accuracy on shipped data, exact resume, failures that lose nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec.cli import app  # noqa: E402
from nnspec.runtime.data.sources import Normalizer, load_builtin  # noqa: E402
from nnspec.runtime.loop.trainer import TrainingError  # noqa: E402
from nnspec.spec.recipe.splits import split_indices  # noqa: E402

EXAMPLES = Path(__file__).parent.parent / "examples"
QUIET = {"progress": False, "log": lambda line: None}

MLP = """
model Net {
    input x: [64]
    x -> linear(32) -> batchnorm -> relu -> dropout(0.2) -> linear(10) -> output
}
train Net {
    data       digits
    split      0.7 / 0.15 / 0.15
    batch      64
    epochs     4
    loss       cross_entropy
    optimizer  momentum(lr=0.05, beta=0.9)
    schedule   step(every=2, factor=0.5)
    regularize l2(1e-4), max_norm(3.0)
    clip       norm(5.0)
    metrics    accuracy
    seed       3
}
"""


def write(tmp_path: Path, text: str, name: str = "net.nn") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_digits_cnn_reaches_90_percent_in_a_few_epochs(tmp_path):
    run = nnspec.train(EXAMPLES / "digits_cnn.nn", epochs=4, out=tmp_path / "run", **QUIET)
    assert run.test_accuracy is not None and run.test_accuracy >= 0.90
    files = {p.name for p in run.directory.iterdir()}
    assert {"ir.json", "recipe.json", "metrics.jsonl", "best.safetensors", "best.json", "last.safetensors",
            "last.json", "state.pt", "curves.png", "summary.md", "test.json", "spec"} <= files
    lines = (run.directory / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    summary = (run.directory / "summary.md").read_text()
    assert "## Confusion matrix" in summary and "## Diagnosis" in summary
    sidecar = json.loads((run.directory / "best.json").read_text())
    assert sidecar["model"] == "DigitsCNN" and len(sidecar["spec_sha256"]) == 64


def test_logistic_regression_on_breast_cancer(tmp_path):
    run = nnspec.train(EXAMPLES / "logreg.nn", out=tmp_path / "run", **QUIET)
    assert run.test_accuracy >= 0.95


def test_gradient_descent_reaches_the_normal_equation(tmp_path):
    run = nnspec.train(EXAMPLES / "linreg.nn", "LinReg", out=tmp_path / "run", **QUIET)
    data = load_builtin("diabetes")
    train, _, _ = split_indices(len(data), (0.8, 0.2, 0.0), seed=0, stratify=False)
    x = Normalizer(axis=1).fit(data.x[train]).transform(data.x[train]).astype(np.float64)
    design = np.hstack([np.ones((len(x), 1)), x])
    theta, *_ = np.linalg.lstsq(design, data.y[train].astype(np.float64), rcond=None)
    state = run.module.state_dict()
    learned = np.concatenate([state["linear_1.bias"].numpy(), state["linear_1.weight"].numpy()[0]])
    np.testing.assert_allclose(learned, theta, atol=1e-3)
    # the example's `solver normal_equation` recipe: the same θ in one step (tests/test_solver.py)
    closed = nnspec.train(EXAMPLES / "linreg.nn", "closed_form", out=tmp_path / "cf", **QUIET)
    solved = closed.module.state_dict()
    for key in ("linear_1.weight", "linear_1.bias"):
        np.testing.assert_allclose(state[key].numpy(), solved[key].numpy(), atol=1e-3)


def test_resume_ends_with_bitwise_equal_weights(tmp_path):
    spec = write(tmp_path, MLP)
    whole = nnspec.train(spec, out=tmp_path / "whole", **QUIET)
    part = nnspec.train(spec, out=tmp_path / "part", stop_after=2, **QUIET)
    assert len(part.history) == 2 and part.test == {}
    resumed = nnspec.train(spec, resume=tmp_path / "part", **QUIET)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    a, b = whole.module.state_dict(), resumed.module.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert whole.test == resumed.test


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    spec = write(tmp_path, (EXAMPLES / "linreg.nn").read_text().replace("gd(lr=0.2)", "gd(lr=50)"))
    with pytest.raises(TrainingError, match=r"the loss became (nan|inf) at epoch \d+, step 1"):
        nnspec.train(spec, "LinReg", out=tmp_path / "run", **QUIET)
    from nnspec.runtime.loop.checkpoint import load_weights

    tensors, meta = load_weights(tmp_path / "run" / "last.safetensors")
    assert meta["epoch"] == "1" and all(torch.isfinite(t).all() for t in tensors.values())


def invoke(*args: str):
    from typer.testing import CliRunner

    return CliRunner().invoke(app, list(args))


def test_cli_trains_and_reports(tmp_path):
    result = invoke("train", str(write(tmp_path, MLP)), "--epochs", "1", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "epoch 1/1" in result.stdout and "test: loss" in result.stdout


def test_data_of_the_wrong_shape_is_a_located_error(tmp_path):
    result = invoke("train", str(EXAMPLES / "digits_cnn.nn"), "--data", "iris", "--out", str(tmp_path / "r"))
    assert result.exit_code == 1
    assert "data samples are [4] but the model input is [1, 8, 8]" in result.stderr
    assert "Traceback" not in result.output


def test_labels_outside_the_classes_are_an_error(tmp_path):
    rows = ["a,b,label"] + [f"{i % 7}.0,{i % 5}.0,{i % 12}" for i in range(60)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    spec = write(tmp_path, MLP.replace("[64]", "[2]").replace("data       digits",
                                                                 'data       csv("d.csv", target="label")'))
    result = invoke("train", str(spec), "--out", str(tmp_path / "r"))
    assert result.exit_code == 1
    assert "label" in result.stderr and "10" in result.stderr and "Traceback" not in result.output


def test_a_missing_data_file_is_an_error(tmp_path):
    spec = write(tmp_path, MLP.replace("data       digits", 'data       csv("nowhere.csv")'))
    result = invoke("train", str(spec), "--out", str(tmp_path / "r"))
    assert result.exit_code == 1 and "nowhere.csv" in result.stderr and "Traceback" not in result.output


def test_a_corrupt_data_file_is_an_error(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    spec = write(tmp_path, MLP.replace("data       digits", 'data       npz("d.npz")'))
    result = invoke("train", str(spec), "--out", str(tmp_path / "r"))
    assert result.exit_code == 1 and "d.npz" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "r" / "state.pt").exists()


def test_resume_refuses_a_corrupt_state_and_another_spec(tmp_path):
    spec = write(tmp_path, MLP)
    nnspec.train(spec, out=tmp_path / "run", stop_after=1, **QUIET)
    other = write(tmp_path, MLP.replace("linear(32)", "linear(16)"), "other.nn")
    result = invoke("train", str(other), "--resume", str(tmp_path / "run"))
    assert result.exit_code == 1 and "different spec" in result.stderr
    saved = (tmp_path / "run" / "last.safetensors").read_bytes()
    (tmp_path / "run" / "state.pt").write_bytes(b"garbage")
    result = invoke("train", str(spec), "--resume", str(tmp_path / "run"))
    # the manifest's sha256 tells the damage before anything reads the file
    assert result.exit_code == 1
    assert (f"error: `{tmp_path / 'run'}` cannot be resumed: its manifest.json commits generation 1 "
            "(epoch 1), and `state.pt` differs from it (size or sha256)") in result.stderr
    assert (tmp_path / "run" / "last.safetensors").read_bytes() == saved  # nothing lost
    result = invoke("train", str(spec), "--out", str(tmp_path / "run"))
    assert result.exit_code == 1 and "already holds a run" in result.stderr


def test_amp_on_cpu_trains(tmp_path):
    run = nnspec.train(write(tmp_path, MLP), epochs=1, amp=True, out=tmp_path / "r", **QUIET)
    assert np.isfinite(run.history[0]["train_loss"])


def test_emitted_torch_file_loads_trained_weights(tmp_path):
    import importlib.util

    from nnspec.compiler.torch_source import torch_source

    spec = write(tmp_path, MLP)
    run = nnspec.train(spec, epochs=1, out=tmp_path / "r", **QUIET)
    source = tmp_path / "model.py"
    source.write_text(torch_source(nnspec.load(spec).graph))
    module_spec = importlib.util.spec_from_file_location("emitted_net", source)
    emitted = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(emitted)
    model = emitted.Net()
    model.load_state_dict(run.module.state_dict())
    model.eval()
    run.module.eval()
    x = torch.randn(5, 64)
    torch.testing.assert_close(model(x), run.module(x), rtol=0, atol=0)


@pytest.mark.slow
def test_torch_compile_trains_and_saves_plain_keys(tmp_path):
    run = nnspec.train(write(tmp_path, MLP), epochs=1, compile=True, out=tmp_path / "r", **QUIET)
    from nnspec.runtime.loop.checkpoint import load_weights

    tensors, _ = load_weights(run.directory / "last.safetensors")
    assert set(tensors) == set(run.module.state_dict())  # no `_orig_mod.` prefix
    assert run.test_accuracy is not None and run.test_accuracy > 0.5


@pytest.mark.parametrize("early_stop", [False, True], ids=["last", "best"])
def test_the_exported_weights_are_those_the_test_report_describes(tmp_path, early_stop):
    """Without early stopping a run ends with its last epoch's weights (they are what test.json
    measures); with it, the best epoch's are restored. Export and `init from` take the same."""
    from nnspec.exporting import find_weights
    from nnspec.runtime.loop.checkpoint import load_weights

    text = MLP
    if early_stop:
        text = text.replace("    seed       3\n", "    seed       3\n    early_stop patience=3\n")
    run = nnspec.train(write(tmp_path, text), out=tmp_path / "run", **QUIET)
    weights, _ = find_weights(run.directory)
    assert weights.name == ("best.safetensors" if early_stop else "last.safetensors")
    tensors, _ = load_weights(weights)
    assert all(torch.equal(tensors[k], v) for k, v in run.module.state_dict().items())
