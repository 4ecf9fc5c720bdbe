"""Sequences and segmentation end to end: the LSTM on digits read row by row, the
autoencoder's reconstruction error, the generated `shapes` set, per-pixel cross-entropy and
the `iou` metric (exact over batches), with the checks that guard them.

Trained numbers were measured on CPU (torch's default threads); the asserted bounds leave a
margin for other torch builds and thread counts.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec.api import load_recipe  # noqa: E402
from nnspec.cli import app  # noqa: E402
from nnspec.runtime.data.prepare import load_dataset, prepare  # noqa: E402
from nnspec.runtime.data.sources import (  # noqa: E402
    SHAPES_LIMITS,
    DataError,
    check_label_shape,
    check_labels,
    load_data,
    make_shapes,
)
from nnspec.runtime.loop.objectives import LOSSES, MetricSums, predictions  # noqa: E402
from nnspec.runtime.loop.report import iou_per_class  # noqa: E402
from nnspec.runtime.loop.trainer import Trainer  # noqa: E402
from nnspec.spec import codes  # noqa: E402
from nnspec.spec.diagnostics import DiagnosticError  # noqa: E402
from nnspec.spec.recipe.tables import DATA, SHAPE_CLASSES  # noqa: E402

EXAMPLES = Path(__file__).parent.parent / "examples"
QUIET = {"progress": False, "log": lambda line: None, "device": "cpu"}


def invoke(*args: str):
    from typer.testing import CliRunner

    return CliRunner().invoke(app, list(args))


def untrained(spec: Path, recipe: str | None, directory: Path) -> dict[str, float]:
    """The test metrics of the recipe's model as initialised: the Trainer seeds and
    initialises it exactly as `nnspec.train` does, so this is the run's epoch-0 model."""
    model, plan = load_recipe(spec, recipe)
    data = prepare(plan, model.graph, load_dataset(plan, spec.parent))
    trainer = Trainer(plan, model.graph, data, directory, spec_hash="", **QUIET)
    return trainer.evaluate(data.test, "test_")[0]


# == 1. the LSTM reads digits row by row ==================================================
def test_lstm_recipe_reads_digit_rows_with_clipping():
    model, recipe = load_recipe(EXAMPLES / "lstm_classifier.nn")
    assert model.warnings == []
    assert (recipe.data.kind, recipe.data.shape, recipe.data.classes) == ("digits", (8, 8), 10)
    assert recipe.data.args["sequence"] is True
    assert (recipe.clip.kind, recipe.clip.value) == ("norm", 1.0)
    assert (recipe.loss, recipe.optimizer.kind, recipe.epochs) == ("cross_entropy", "adam", 20)
    assert model.graph.inputs[0].type.shape == (8, 8) and model.graph.nodes[0].op == "lstm"


def test_lstm_learns_digits_in_ten_epochs(tmp_path):
    # measured: 89.6% test accuracy after 10 epochs (96.3% after the recipe's 20)
    run = nnspec.train(EXAMPLES / "lstm_classifier.nn", epochs=10, out=tmp_path / "run", **QUIET)
    assert run.test_accuracy >= 0.85
    assert run.history[-1]["train_accuracy"] >= 0.85
    assert len(run.history) == 10 and run.test["test_loss"] < 0.5


# == 2. the autoencoder reports its reconstruction error ==================================
def test_autoencoder_reconstruction_error_falls_and_is_reported(tmp_path):
    spec = EXAMPLES / "autoencoder.nn"
    before = untrained(spec, None, tmp_path / "none")["test_mse"]
    run = nnspec.train(spec, epochs=2, out=tmp_path / "run", **QUIET)
    after = run.test["test_mse"]
    # measured: 0.2357 untrained, 0.0762 after 2 epochs
    assert 0.20 < before < 0.27
    assert after < 0.09 and after < 0.5 * before
    summary = (run.directory / "summary.md").read_text()
    line = next(x for x in summary.splitlines() if x.startswith("reconstruction error (mse): "))
    assert float(line.split(": ")[1]) == pytest.approx(after, rel=1e-5)
    assert "Confusion matrix" not in summary and "IoU" not in summary


def test_reconstruction_error_is_reported_whatever_the_loss(tmp_path):
    # l1 loss and the mae metric: summary.md still gives the mse of the reconstruction
    text = (EXAMPLES / "autoencoder.nn").read_text()
    text = text.replace("loss      mse", "loss      l1").replace("metrics   mse", "metrics   mae")
    (tmp_path / "ae.nn").write_text(text)
    run = nnspec.train(tmp_path / "ae.nn", epochs=1, out=tmp_path / "run", **QUIET)
    assert set(run.test) == {"test_loss", "test_mae"}
    line = [x for x in (run.directory / "summary.md").read_text().splitlines()
            if x.startswith("reconstruction error (mse): ")]
    value = float(line[0].split(": ")[1])
    # mean (x̂ - x)² >= (mean |x̂ - x|)² (Jensen), and the mae is the l1 loss
    assert run.test["test_mae"] ** 2 <= value < run.test["test_mae"]


# == 3. the shapes data set ===============================================================
def test_shapes_are_seeded_and_shaped():
    data = make_shapes(n=64, size=32, seed=3)
    assert data.x.shape == (64, 1, 32, 32) and data.x.dtype == np.float32
    assert data.y.shape == (64, 32, 32) and data.y.dtype == np.int64
    assert (data.task, data.classes, data.num_classes) == ("classification", SHAPE_CLASSES, 4)
    again = make_shapes(n=64, size=32, seed=3)
    assert np.array_equal(data.x, again.x) and np.array_equal(data.y, again.y)
    assert not np.array_equal(data.y, make_shapes(n=64, size=32, seed=4).y)
    assert all((y > 0).any() for y in data.y), "every image shows a shape"


def test_shapes_default_set_is_pinned():
    data = load_data("shapes")  # `data shapes`: n=512, size=32, max_shapes=3, noise=0.1, seed=0
    assert len(data) == 512 and data.sample_shape == (1, 32, 32)
    fractions = np.bincount(data.y.ravel(), minlength=4) / data.y.size
    np.testing.assert_allclose(fractions, [0.81531, 0.06207, 0.09261, 0.03002], atol=1e-5)
    background = data.x[:, 0][data.y == 0]
    assert abs(background.mean()) < 0.002 and background.std() == pytest.approx(0.1, rel=0.02)


def test_labels_mark_exactly_the_painted_pixels():
    data = make_shapes(n=32, size=32, noise=0.0, seed=1)
    image = data.x[:, 0]
    assert np.array_equal(image > 0, data.y > 0)
    assert image[data.y > 0].min() >= 0.5 and image.max() <= 1.0


def test_each_class_has_its_geometry():
    # one shape per image, no noise: each labelled region is that shape alone
    data = make_shapes(n=300, size=64, max_shapes=1, noise=0.0, seed=2)
    fill = {1: [], 2: [], 3: []}
    for y in data.y:
        label = int(y.max())
        rows, cols = np.nonzero(y)
        height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert abs(height - width) <= 2 or label == 3  # discs and squares are as wide as high
        fill[label].append(len(rows) / (height * width))
        radius = math.sqrt(len(rows) / math.pi) if label == 1 else None
        if radius is not None:
            assert 64 / 8 - 1 <= radius <= 64 / 4 + 1
    # the share of its bounding box a shape fills: π/4 for a disc, 1 for a square, 1/2 for
    # a triangle (less the pixels the box's edges cut)
    assert np.mean(fill[1]) == pytest.approx(math.pi / 4, abs=0.05)
    assert min(fill[2]) == 1.0
    assert np.mean(fill[3]) == pytest.approx(0.5, abs=0.06)


def test_shapes_signature_matches_the_generator():
    sig = {p.name: p for p in DATA["shapes"].params}
    params = inspect.signature(make_shapes).parameters
    assert list(sig) == list(params)
    assert {k: p.default for k, p in sig.items()} == {k: p.default for k, p in params.items()}
    for key, (low, high) in SHAPES_LIMITS.items():
        assert sig[key].range == f"[{low}, {high}]"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"size": 8}, "size must be an integer in [16, 512], got 8"),
    ({"n": 0}, "n must be an integer in [1, 100000], got 0"),
    ({"max_shapes": 9}, "max_shapes must be an integer in [1, 8], got 9"),
    ({"noise": 1.5}, "noise must be a number in [0, 1], got 1.5"),
    ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ({"n": 100_000, "size": 512}, "shapes(n=100000, size=512) would hold 26,214,400,000 "
                                  "pixels, more than 134,217,728"),
])
def test_shapes_arguments_out_of_range_are_data_errors(kwargs, message):
    with pytest.raises(DataError) as info:
        load_data("shapes", **kwargs)
    assert info.value.message == message and info.value.location == "shapes"


def test_shapes_argument_out_of_range_is_a_located_error(tmp_path):
    spec = tmp_path / "seg.nn"
    spec.write_text((EXAMPLES / "unet.nn").read_text().replace(
        "shapes(n=1024, size=32)", "shapes(n=1024, size=8)"))
    result = invoke("check", str(spec))
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = next(i for i, x in enumerate(spec.read_text().splitlines(), 1) if "size=8)" in x)
    column = spec.read_text().splitlines()[line - 1].index("8)") + 1
    assert "error[E5004]: `size` of `shapes` must be in [16, 512], got 8" in result.stderr
    assert f"seg.nn:{line}:{column}" in result.stderr


# == per-pixel labels against the model ===================================================
SEG = """\
model Seg(classes: int = 4) {
    input x: [1, 32, 32]
    x -> conv(8, 3, padding=1) -> relu -> conv(classes, 1) -> output
}
model Cls {
    input x: [1, 32, 32]
    x -> flatten -> linear(4) -> output
}
"""


def recipe_errors(head: str, *settings: str) -> list[tuple[str, str, int]]:
    text = SEG + f"train {head} {{\n" + "".join(f"    {s}\n" for s in settings) + "}\n"
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=text)
    return [(d.code, d.message, d.span.line) for d in info.value.diagnostics]


def test_per_pixel_labels_need_a_score_map():
    assert recipe_errors("Cls", "data shapes(n=64)", "loss cross_entropy") == [
        (codes.RECIPE_LOSS, "shapes has a label per pixel, [32, 32] per sample, but `Cls` "
         "outputs [4]", 11)]
    assert recipe_errors("Seg(classes=3)", "data shapes(n=64)", "loss cross_entropy") == [
        (codes.RECIPE_LOSS, "shapes has 4 classes but `Seg` outputs 3 class scores", 11)]
    # images that do not fit the input: one error, not a second about the label map
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=SEG + "train Seg {\n    data shapes(size=64)\n    loss cross_entropy\n}\n")
    (only,) = info.value.diagnostics
    assert (only.code, only.message, only.help) == (
        codes.RECIPE_DATA, "data samples are [1, 64, 64] but `Seg`'s input x is [1, 32, 32]",
        "use shapes(size=32)")
    assert only.notes == ("shapes: 512 samples of [1, 64, 64], 4 classes per pixel",)


def test_flip_and_iou_misuse_are_refused():
    assert recipe_errors("Seg", "data shapes(n=64)", "loss cross_entropy",
                         "augment brightness(0.1), flip(horizontal)") == [
        (codes.RECIPE_AUGMENT, "flip moves the pixels of the image but not their labels: "
         "shapes has a label per pixel", 12)]
    assert recipe_errors("Seg(classes=1)", "data shapes(n=64)", "loss mse", "metrics iou") == [
        (codes.RECIPE_TASK, "iou needs class predictions, but mse trains a regression", 12)]


def test_per_pixel_labels_at_run_time(tmp_path):
    # `--data` replaces a data line the checker could not see through
    spec = tmp_path / "cls.nn"
    spec.write_text(SEG + 'train Cls {\n    data npz("none.npz")\n    loss cross_entropy\n}\n')
    result = invoke("train", str(spec), "--data", "shapes", "--out", str(tmp_path / "r"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "error: the data has a label per pixel, [32, 32] per sample, but the model outputs " \
           "[4]\n  --> shapes" in result.stderr
    with pytest.raises(DataError, match=r"one label per sample, but the model outputs \[4, 8, 8\]"):
        check_label_shape(np.zeros(3, np.int64), (4, 8, 8))
    check_label_shape(np.zeros((3, 8, 8), np.int64), (4, 8, 8))
    y = np.zeros((2, 4, 4), np.int64)
    y[1, 2, 3] = 5
    with pytest.raises(DataError) as info:
        check_labels(y, 4)
    assert info.value.message == "label 5 at pixel (2, 3) of sample 1 is outside [0, 4)"


# == the iou metric =======================================================================
def reference_iou(predicted: np.ndarray, truth: np.ndarray, classes: int) -> list[float]:
    out = []
    for c in range(classes):
        p, t = predicted == c, truth == c
        union = (p | t).sum()
        out.append((p & t).sum() / union if union else math.nan)
    return out


def test_iou_is_exact_over_uneven_batches():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(37, 5, 6, 7, generator=g)
    scores[:, 4] -= 100  # class 4 is never predicted...
    labels = torch.randint(0, 4, (37, 6, 7), generator=g)  # ...nor true: it is left out
    whole = MetricSums("cross_entropy", ("accuracy", "iou"))
    whole.add(scores, labels, LOSSES["cross_entropy"](scores, labels))
    parts = MetricSums("cross_entropy", ("accuracy", "iou"))
    for lo, hi in ((0, 1), (1, 20), (20, 37)):
        parts.add(scores[lo:hi], labels[lo:hi], LOSSES["cross_entropy"](scores[lo:hi], labels[lo:hi]))
    expected = reference_iou(scores.argmax(1).numpy(), labels.numpy(), 5)
    assert math.isnan(expected[4]) and not any(math.isnan(v) for v in expected[:4])
    np.testing.assert_equal(parts.iou(), expected)
    result = parts.result("val_")
    assert result["val_iou"] == pytest.approx(np.mean(expected[:4]), abs=1e-15)
    assert result["val_iou"] == whole.result("val_")["val_iou"]
    assert result["val_accuracy"] == (scores.argmax(1) == labels).double().mean().item()
    # the counts are scalar entries of `sums` too (what an all-reduce over ranks sees)
    assert float(parts.sums["iou_true_2"]) == (labels == 2).sum().item()


def test_iou_per_sample_and_bce_per_pixel():
    sums = MetricSums("cross_entropy", ("iou",))
    scores = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    labels = torch.tensor([0, 1, 2, 2])
    sums.add(scores, labels, torch.tensor(0.0))
    assert sums.iou() == (1.0, 0.5, 0.5)  # class 2: 1 of the 2 true, and 1 predicted
    logits = torch.tensor([[[[1.0, -1.0], [-1.0, 1.0]]]])  # [1, 1, 2, 2]
    assert predictions(logits, "bce_logits").tolist() == [[[1, 0], [0, 1]]]
    assert predictions(torch.sigmoid(logits), "bce").tolist() == [[[1, 0], [0, 1]]]
    bce = MetricSums("bce_logits", ("accuracy", "iou"))
    truth = torch.tensor([[[1, 1], [0, 1]]])
    bce.add(logits, truth, torch.tensor(0.0))
    assert bce.iou() == (0.5, 2 / 3) and bce.result()["accuracy"] == 0.75
    confusion = np.array([[3, 1], [0, 2]])
    np.testing.assert_allclose(iou_per_class(confusion), [3 / 4, 2 / 3])


# == the U-Net segments shapes ============================================================
def test_unet_shapes_recipe_is_accepted():
    model, recipe = load_recipe(EXAMPLES / "unet.nn", "shapes")
    assert model.warnings == []
    assert recipe.model_args == {"classes": 4, "base": 8, "channels": 1, "size": 32}
    assert (recipe.data.kind, recipe.data.shape, recipe.data.classes, recipe.data.samples) == \
        ("shapes", (1, 32, 32), 4, 1024)
    assert recipe.metrics == ("accuracy", "iou") and recipe.loss == "cross_entropy"
    assert model.graph.outputs[0].type.shape == (4, 32, 32)
    assert model.summary().total_params == 486_436
    result = invoke("check", str(EXAMPLES / "unet.nn"))
    assert result.exit_code == 0, result.output
    assert "recipe shapes: UNet on shapes, cross_entropy" in result.stdout


def test_unet_learns_to_segment_shapes_in_two_epochs(tmp_path):
    spec = EXAMPLES / "unet.nn"
    before = untrained(spec, "shapes", tmp_path / "none")
    run = nnspec.train(spec, "shapes", epochs=2, out=tmp_path / "run", **QUIET)
    # measured: mIoU 0.0082 untrained (pixel accuracy 3.3%), 0.3459 after 1 epoch and
    # 0.5446 after 2 (pixel accuracy 85.5%)
    assert before["test_iou"] < 0.05 and before["test_accuracy"] < 0.2
    assert run.test["test_iou"] > 0.45 and run.test["test_accuracy"] > 0.8
    rows = [json.loads(x) for x in (run.directory / "metrics.jsonl").read_text().splitlines()]
    assert [set(r) >= {"train_iou", "val_iou"} for r in rows] == [True, True]
    assert rows[1]["val_iou"] > rows[0]["val_iou"]
    summary = (run.directory / "summary.md").read_text()
    assert f"| iou | {run.test['test_iou']:.4f} |" in summary
    table = summary.split("## IoU per class")[1].split("##")[0]
    per_class = [float(x.split("|")[2]) for x in table.splitlines() if x.startswith("| ")
                 and x.split("|")[1].strip() in SHAPE_CLASSES]
    assert len(per_class) == 4 and np.mean(per_class) == pytest.approx(run.test["test_iou"],
                                                                      abs=1e-4)
    assert "| **background** |" in summary  # the confusion matrix counts pixels
    assert json.loads((run.directory / "classes.json").read_text()) == list(SHAPE_CLASSES)
