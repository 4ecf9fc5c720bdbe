"""Export and predict end to end: a trained digits CNN exported to ONNX and run by
`nnspec predict` scores exactly the test accuracy of its run; bad models, inputs and
weights fail with a clear message, exit 1 and no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


from cli_runner import cli  # noqa: E402

import nnspec  # noqa: E402
from nnspec.runtime import PredictError, Session  # noqa: E402
from nnspec.runtime.data.sources import load_builtin  # noqa: E402
from nnspec.spec.recipe.splits import split_indices  # noqa: E402

EXAMPLES = Path(__file__).parent.parent / "examples"
QUIET = {"progress": False, "log": lambda line: None}




def held_out(recipe_split: tuple[float, ...], labels: np.ndarray, seed: int) -> np.ndarray:
    return split_indices(labels, recipe_split, seed=seed)[2]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """digits_cnn trained for 3 epochs, exported from its run directory, and its test split."""
    root = tmp_path_factory.mktemp("digits")
    run = nnspec.train(EXAMPLES / "digits_cnn.nn", epochs=3, out=root / "run", **QUIET)
    result = cli("export", EXAMPLES / "digits_cnn.nn", "--weights", root / "run",
                 "-o", root / "digits.onnx")
    assert result.exit_code == 0, result.output
    data = load_builtin("digits", as_image=True)  # the recipe's data, raw as in the run
    split = tuple(run.recipe.split)
    test = held_out(split, data.y, run.recipe.seed)
    np.savez(root / "test.npz", x=data.x[test])
    return {"root": root, "run": run, "model": root / "digits.onnx", "x": data.x[test],
            "y": data.y[test]}


def test_predict_reproduces_the_runs_test_accuracy(digits):
    out = digits["root"] / "pred.npz"
    result = cli("predict", digits["model"], "--input", digits["root"] / "test.npz", "-o", out)
    assert result.exit_code == 0, result.output
    with np.load(out) as saved:
        accuracy = float(np.mean(saved["prediction"] == digits["y"]))
        assert saved["probabilities"].shape == (len(digits["y"]), 10)
        np.testing.assert_allclose(saved["probabilities"].sum(axis=1), 1.0, atol=1e-5)
    assert accuracy == digits["run"].test["test_accuracy"]


def test_predict_prints_a_top_k_table_and_writes_csv_and_json(digits):
    csv_out, json_out = digits["root"] / "pred.csv", digits["root"] / "pred.json"
    result = cli("predict", digits["model"], "-i", digits["root"] / "test.npz", "-o", csv_out,
                 "--top-k", "2")
    assert result.exit_code == 0, result.output
    assert "top 1" in result.stdout and "top 2" in result.stdout and "top 3" not in result.stdout
    assert "first 20 shown" in result.stdout
    header = csv_out.read_text().splitlines()[0].split(",")
    assert header[:5] == ["row", "top1", "p1", "top2", "p2"] and header[-1] == "p_9"
    cli("predict", digits["model"], "-i", digits["root"] / "test.npz", "-o", json_out)
    rows = json.loads(json_out.read_text())["rows"]
    assert len(rows) == len(digits["y"]) and len(rows[0]["top"]) == 3


def test_session_api(digits):
    session = Session(digits["model"])
    assert [i.name for i in session.inputs] == ["x"]
    assert session.inputs[0].shape[1:] == (1, 8, 8) and session.is_classifier
    assert session.classes == tuple(str(c) for c in range(10))
    assert session.metadata["model"] == "DigitsCNN" and session.task == "classification"
    assert session.output_kind == "logits"
    logits = session.run(digits["x"], batch=7)
    module = digits["run"].module.eval().cpu()
    with torch.no_grad():
        expected = module(torch.from_numpy(digits["x"])).numpy()
    assert np.abs(logits - expected).max() <= 1e-5
    prediction = session.predict(digits["x"][:5], top_k=4)
    assert prediction.top_k.shape == (5, 4)
    assert prediction.top_names()[0][0] == prediction.classes[prediction.labels[0]]
    with pytest.raises(PredictError, match=r"takes \[N, 1, 8, 8\].*the data is \[5, 64\]"):
        session.run(digits["x"][:5].reshape(5, 64))


def test_images_and_a_folder_of_images(digits, tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        pixels = (digits["x"][i, 0] * 255).round().astype(np.uint8)
        Image.fromarray(pixels).resize((24, 24)).save(folder / f"sample{i}.png")
    result = cli("predict", digits["model"], "-i", folder)
    assert result.exit_code == 0, result.output
    assert "sample0.png" in result.stdout and "3 samples" in result.stdout
    result = cli("predict", digits["model"], "-i", folder / "sample1.png")
    assert result.exit_code == 0 and "1 samples" in result.stdout


def test_classifier_with_class_names_and_a_normaliser(tmp_path):
    """logreg: a sigmoid output (two classes from one column), the training normaliser
    applied to raw CSV features, breast-cancer class names in the table."""
    run = nnspec.train(EXAMPLES / "logreg.nn", out=tmp_path / "run", **QUIET)
    result = cli("export", EXAMPLES / "logreg.nn", "-w", tmp_path / "run", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output
    session = Session(tmp_path / "m.onnx")
    assert session.classes == ("malignant", "benign") and session.normalizer is not None
    assert session.output_kind == "probabilities"
    data = load_builtin("breast_cancer")
    test = held_out(tuple(run.recipe.split), data.y, run.recipe.seed)
    header = ",".join(f"f{i}" for i in range(30))
    np.savetxt(tmp_path / "test.csv", data.x[test], delimiter=",", header=header, comments="")
    out = tmp_path / "pred.csv"
    result = cli("predict", tmp_path / "m.onnx", "-i", tmp_path / "test.csv", "-o", out)
    assert result.exit_code == 0, result.output
    assert "malignant (" in result.stdout and "benign (" in result.stdout
    rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
    predicted = np.array([("malignant", "benign").index(r[1]) for r in rows])
    assert float(np.mean(predicted == data.y[test])) == run.test["test_accuracy"]


def test_regression_outputs_are_raw_values(tmp_path):
    result = cli("compile", EXAMPLES / "autoencoder.nn", "--emit", "onnx", "-o", tmp_path / "ae.onnx")
    assert result.exit_code == 0, result.output
    x = load_builtin("digits", as_image=True).x[:4]
    np.save(tmp_path / "x.npy", x)
    result = cli("predict", tmp_path / "ae.onnx", "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npz")
    assert result.exit_code == 0, result.output
    assert "output per sample: [1, 8, 8]" in result.stdout
    with np.load(tmp_path / "y.npz") as saved:
        assert saved["y"].shape == (4, 1, 8, 8)


def test_compile_emit_onnx_has_the_initial_weights(tmp_path):
    from nnspec.compiler.torch_build import build_module

    result = cli("compile", EXAMPLES / "lenet5.nn", "--emit", "onnx", "-o", tmp_path / "l.onnx")
    assert result.exit_code == 0, result.output
    graph = nnspec.load(EXAMPLES / "lenet5.nn").graph
    torch.manual_seed(0)
    module = build_module(graph).eval()
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    assert np.abs(Session(tmp_path / "l.onnx").run(x) - expected).max() <= 1e-5
    result = cli("compile", EXAMPLES / "lenet5.nn", "--emit", "onnx")
    assert result.exit_code == 2 and "-o" in result.stderr


# -- bad input: exit 1, a clear message, no traceback ------------------------------------------

def failing(*args: str | Path) -> str:
    result = cli(*args)
    assert result.exit_code == 1, result.output
    assert "error:" in result.stderr
    return result.stderr


def test_a_file_that_is_not_onnx(digits, tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("these are not the weights you are looking for\n")
    message = failing("predict", bad, "-i", digits["root"] / "test.npz")
    assert "is not an ONNX model" in message
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert "is empty" in failing("predict", empty, "-i", digits["root"] / "test.npz")
    assert "does not exist" in failing("predict", tmp_path / "nowhere.onnx", "-i",
                                       digits["root"] / "test.npz")


def test_a_truncated_model(digits, tmp_path):
    data = digits["model"].read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    message = failing("predict", cut, "-i", digits["root"] / "test.npz")
    assert "truncated or corrupt" in message and "export the model again" in message


def test_an_input_of_the_wrong_shape(digits, tmp_path):
    np.savez(tmp_path / "flat.npz", x=digits["x"].reshape(len(digits["x"]), 64))
    message = failing("predict", digits["model"], "-i", tmp_path / "flat.npz")
    assert "[N, 1, 8, 8]" in message and f"[{len(digits['x'])}, 64]" in message
    assert "reshape the data" in message
    np.save(tmp_path / "small.npy", digits["x"][:, :, :7, :7])
    assert "[N, 1, 8, 8]" in failing("predict", digits["model"], "-i", tmp_path / "small.npy")


def test_an_input_of_the_wrong_dtype(digits, tmp_path):
    np.savez(tmp_path / "ints.npz", x=(digits["x"] * 16).astype(np.int64))
    message = failing("predict", digits["model"], "-i", tmp_path / "ints.npz")
    assert "takes float32 values; the data is int64" in message


def test_missing_and_unreadable_inputs(digits, tmp_path):
    assert "does not exist" in failing("predict", digits["model"], "-i", tmp_path / "none.npz")
    (tmp_path / "x.txt").write_text("1 2 3")
    assert "unknown file type" in failing("predict", digits["model"], "-i", tmp_path / "x.txt")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really")
    assert "not a readable .npz" in failing("predict", digits["model"], "-i",
                                            tmp_path / "broken.npz")
    np.savez(tmp_path / "two.npz", a=digits["x"], b=digits["x"])
    assert "which one is the input" in failing("predict", digits["model"], "-i",
                                               tmp_path / "two.npz")


def test_weights_from_another_spec(digits, tmp_path):
    run = digits["root"] / "run"
    message = failing("export", EXAMPLES / "lenet5.nn", "--weights", run, "-o", tmp_path / "x.onnx")
    assert "has no tensor `c1.weight`" in message and "another spec" in message
    message = failing("export", EXAMPLES / "digits_cnn.nn", "--weights", run / "best.safetensors",
                      "--set", "classes=5", "-o", tmp_path / "x.onnx")
    assert "`linear_1.weight`" in message and "[10, 256]" in message and "[5, 256]" in message
    message = failing("export", EXAMPLES / "digits_cnn.nn", "--weights", tmp_path, "-o",
                      tmp_path / "x.onnx")
    assert "is not a run directory" in message
    assert not (tmp_path / "x.onnx").exists()


def test_export_with_folded_batchnorm(digits, tmp_path):
    out = tmp_path / "folded.onnx"
    result = cli("export", EXAMPLES / "digits_cnn.nn", "-w", digits["root"] / "run", "--fold-bn",
                 "-o", out)
    assert result.exit_code == 0, result.output
    folded = Session(out).run(digits["x"])
    assert np.abs(folded - Session(digits["model"]).run(digits["x"])).max() <= 1e-5
