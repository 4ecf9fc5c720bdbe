"""Train recipes: every setting into the IR with its defaults, the JSON round trip, each error
with its code, location and numbers, and the checks of a recipe against its model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from nnspec.api import load_recipe
from nnspec.cli import app
from nnspec.spec import codes
from nnspec.spec.diagnostics import Diagnostic, DiagnosticError
from nnspec.spec.loader import load_text
from nnspec.spec.recipe.elaborate import check_recipes
from nnspec.spec.recipe.ir import OptimizerSpec, Recipe, ScheduleSpec

MODELS = """\
model LeNet5(classes: int = 10) {
    input x: [1, 32, 32]
    x -> conv(6, 5) -> tanh -> avgpool(2) -> conv(16, 5) -> tanh -> avgpool(2)
      -> flatten -> linear(120) -> tanh -> linear(84) -> tanh -> linear(classes) -> output
}
model LogReg(features: int = 30) {
    input x: [features]
    x -> linear(1) -> sigmoid -> output
}
model MLP(classes: int = 3, features: int = 4) {
    input x: [features]
    x -> linear(16) -> relu -> linear(classes) -> output
}
"""
FIRST = MODELS.count("\n") + 2  # the line of a recipe's first setting

FULL = MODELS + """\
train LeNet5 {
    data       digits(as_image=true, resize=32)
    split      0.7 / 0.15 / 0.15
    batch      64
    epochs     30
    loss       cross_entropy
    optimizer  adam(lr=1e-3, betas=(0.9, 0.999))
    schedule   step(every=10, factor=0.5)
    regularize l2(1e-4), max_norm(3.0)
    init       kaiming, linear=xavier
    clip       norm(1.0)
    augment flip(horizontal), random_crop(32, padding=4), brightness(0.2), contrast(0.2), normalize
    early_stop patience=5, monitor=val_loss
    metrics    accuracy
    seed       7
    device     cpu
}
"""


def recipe_text(head: str, *settings: str) -> str:
    return MODELS + f"train {head} {{\n" + "".join(f"    {s}\n" for s in settings) + "}\n"


def load(head: str, *settings: str) -> tuple[Recipe, list[Diagnostic]]:
    model, recipe = load_recipe(text=recipe_text(head, *settings))
    return recipe, model.warnings


def diagnostics(head: str, *settings: str) -> list[Diagnostic]:
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=recipe_text(head, *settings))
    return list(info.value.diagnostics)


def located(diag: Diagnostic, text: str) -> tuple[int, str]:
    """(line, the text from the caret on): where the diagnostic points."""
    span = diag.span
    assert span is not None
    return span.line, text.splitlines()[span.line - 1][span.col - 1:]


# == every setting into the IR ==============================================================
def test_every_setting_reaches_the_ir():
    model, r = load_recipe(text=FULL)
    assert (r.name, r.model, r.model_args) == ("LeNet5", "LeNet5", {})
    assert r.data.kind == "digits"
    assert r.data.args == {"as_image": True, "resize": 32, "sequence": False}
    assert (r.data.shape, r.data.classes, r.data.samples, r.data.task) == ((1, 32, 32), 10, 1797,
                                                                           "classification")
    assert r.split == (0.7, 0.15, 0.15)
    assert (r.batch, r.epochs, r.loss, r.target) == (64, 30, "cross_entropy", "labels")
    assert r.optimizer == OptimizerSpec(kind="adam", lr=0.001, betas=(0.9, 0.999), eps=1e-8)
    assert r.optimizer.hyperparameters() == {"betas": (0.9, 0.999), "eps": 1e-8}
    assert r.schedule == ScheduleSpec(kind="step", args={"every": 10, "factor": 0.5})
    assert [(g.kind, g.value) for g in r.regularize] == [("l2", 1e-4), ("max_norm", 3.0)]
    assert r.regularizer("l2") == 1e-4 and r.regularizer("l1") is None
    assert r.init.default == ("kaiming", {"nonlinearity": "relu"})
    assert r.init.per_kind == {"linear": ("xavier", {"gain": 1.0})}
    assert r.init.scheme("conv") == ("kaiming", {"nonlinearity": "relu"})
    assert (r.clip.kind, r.clip.value) == ("norm", 1.0)
    assert [(a.kind, a.args) for a in r.augment] == [
        ("flip", {"direction": "horizontal", "p": 0.5}),
        ("random_crop", {"size": (32, 32), "padding": 4}),
        ("brightness", {"delta": 0.2}),
        ("contrast", {"delta": 0.2}),
        ("normalize", {"mean": None, "std": None}),
    ]
    assert r.early_stop.model_dump() == {"patience": 5, "monitor": "val_loss", "mode": "min",
                                         "min_delta": 0.0}
    assert (r.metrics, r.seed, r.device) == (("accuracy",), 7, "cpu")
    assert (r.span.line, r.span.end_line) == (FIRST - 1, FIRST + 15)
    assert model.graph.outputs[0].type.shape == (10,)
    # kaiming suits ReLU; LeNet-5 uses tanh
    assert [w.code for w in model.warnings] == [codes.INIT_MISMATCH]


def test_defaults_of_a_minimal_recipe():
    r, warnings = load("MLP", "data iris", "loss cross_entropy")
    assert warnings == []
    assert r.split == (0.8, 0.1, 0.1)
    assert (r.batch, r.epochs, r.target, r.seed, r.device) == (32, 10, "labels", 0, "auto")
    assert r.optimizer == OptimizerSpec(kind="sgd", lr=0.01)
    assert r.optimizer.hyperparameters() == {}
    assert (r.schedule, r.regularize, r.clip, r.augment, r.early_stop) == (None, (), None, (), None)
    assert (r.init.default, r.init.per_kind) == (None, {})
    assert r.metrics == ("accuracy",)


@pytest.mark.parametrize("loss, metrics", [("mse", ("mae",)), ("l1", ("mae",)),
                                           ("bce", ("accuracy",)), ("bce_logits", ("accuracy",))])
def test_default_metrics_follow_the_loss(loss, metrics):
    head, data = ("LogReg(features=10)", "data diabetes") if loss in ("mse", "l1") else \
        ("LogReg", "data breast_cancer")
    r, _ = load(head, data, f"loss {loss}")
    assert r.metrics == metrics


def test_gd_defaults_to_full_batch_and_batch_full_is_none():
    r, _ = load("LogReg", "data breast_cancer", "loss bce", "optimizer gd(lr=0.5)")
    assert (r.batch, r.optimizer.kind, r.optimizer.lr) == (None, "gd", 0.5)
    r, _ = load("LogReg", "data breast_cancer", "loss bce", "batch full")
    assert r.batch is None


@pytest.mark.parametrize("text, expected", [
    ("sgd", {"kind": "sgd", "lr": 0.01}),
    ("momentum", {"kind": "momentum", "lr": 0.01, "beta": 0.9}),
    ("nesterov(lr=0.1, beta=0.5)", {"kind": "nesterov", "lr": 0.1, "beta": 0.5}),
    ("rmsprop", {"kind": "rmsprop", "lr": 0.01, "beta": 0.99, "eps": 1e-8}),
    ("adam", {"kind": "adam", "lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8}),
    ("adam(beta1=0.8)", {"kind": "adam", "lr": 0.001, "betas": (0.8, 0.999), "eps": 1e-8}),
    ("adamw(lr=3e-4)", {"kind": "adamw", "lr": 3e-4, "betas": (0.9, 0.999), "eps": 1e-8,
                        "weight_decay": 0.01}),
])
def test_optimizer_hyperparameters_and_their_defaults(text, expected):
    r, _ = load("MLP", "data iris", "loss cross_entropy", f"optimizer {text}")
    assert r.optimizer.model_dump(exclude_none=True) == expected


def test_split_spellings_and_constants():
    for split in ("0.6 / 0.2 / 0.2", "0.6, 0.2, 0.2", "[0.6, 0.2, 0.2]", "(0.6, 0.2, 0.2)"):
        r, _ = load("MLP", "data iris", "loss cross_entropy", f"split {split}")
        assert r.split == pytest.approx((0.6, 0.2, 0.2))
    r, _ = load("MLP", "data iris", "loss cross_entropy", "split 0.8 / 0.2")
    assert r.split == (0.8, 0.2, 0.0)
    r, _ = load("MLP", "data iris", "loss cross_entropy", "optimizer sgd(lr=2**-10)")
    assert r.optimizer.lr == 2**-10


def test_init_per_kind_alias_and_default():
    r, _ = load("MLP", "data iris", "loss cross_entropy", "init default, linear=normal(std=0.1)")
    assert r.init.default is None
    assert r.init.per_kind == {"linear": ("normal", {"std": 0.1})}


def test_data_sources_and_their_facts():
    cases = {
        "digits": ((64,), 10, 1797), "digits(sequence=true)": ((8, 8), 10, 1797),
        "digits(as_image=true)": ((1, 8, 8), 10, 1797), "iris": ((4,), 3, 150),
        "breast_cancer": ((30,), 2, 569), "diabetes": ((10,), None, 442), "wine": ((13,), 3, 178),
        "fashion_mnist(part=test, resize=32)": ((1, 32, 32), 10, 10000),
        'images("pics/", size=(20, 30), grayscale=true)': ((1, 20, 30), None, None),
        'csv("data.csv", target="label")': (None, None, None),
        'npz("d.npz", task=regression)': (None, None, None),
        'idx("i.gz", "l.gz")': (None, None, None),
    }
    for source, (shape, classes, samples) in cases.items():
        text = MODELS + f"train MLP {{\n    data {source}\n    loss mse\n}}\n"
        data = _data_of(text)
        assert (data.shape, data.classes, data.samples) == (shape, classes, samples), source
    data = _data_of(MODELS + 'train MLP {\n    data csv("d.csv", target="y")\n    loss mse\n}\n')
    assert data.args == {"path": "d.csv", "target": "y", "header": True}
    data = _data_of(MODELS + 'train MLP {\n    data npz("d.npz", task=regression)\n loss mse\n}\n')
    assert (data.args["x"], data.args["task"], data.task) == ("x", "regression", "regression")


def _data_of(text: str):
    from nnspec.spec.recipe.builder import RecipeBuilder

    loaded = load_text(text)
    builder = RecipeBuilder(loaded, loaded.root.trains[0])
    builder.read_settings()
    return builder.values["data"]


# == the IR round-trips through JSON =========================================================
def test_json_round_trip_is_exact():
    _, r = load_recipe(text=FULL)
    assert Recipe.model_validate_json(r.model_dump_json()) == r
    r2, _ = load("MLP", "data iris", "loss cross_entropy", "schedule warmup(3, then=cosine(1e-4))",
                 "augment normalize(mean=(0.1, 0.2, 0.3, 0.4), std=0.5)", "split 0.5 / 0.25 / 0.25",
                 "init zeros, linear=constant(0.5)")
    back = Recipe.model_validate_json(r2.model_dump_json())
    assert back == r2
    assert back.schedule.then == ScheduleSpec(kind="cosine", args={"min_lr": 1e-4})
    assert back.augment[0].args["mean"] == (0.1, 0.2, 0.3, 0.4)
    with pytest.raises(ValidationError):
        r.epochs = 3  # frozen


# == learning-rate schedules ======================================================================
@pytest.mark.parametrize("schedule, lrs", [
    ("inverse_time(0.5)", [0.1, 0.1 / 1.5, 0.05, 0.1 / 2.5]),
    ("step(every=2, factor=0.5)", [0.1, 0.1, 0.05, 0.05]),
    ("exponential(0.5)", [0.1, 0.05, 0.025, 0.0125]),
    ("inverse_sqrt", [0.1, 0.1 / math.sqrt(2), 0.1 / math.sqrt(3), 0.05]),
    ("cosine(min_lr=0.01)", [0.1, 0.01 + 0.09 * 0.75, 0.01 + 0.09 * 0.25, 0.01]),
    ("warmup(2, then=step(1, factor=0.5))", [0.1 / 3, 0.2 / 3, 0.1, 0.05]),
    ("warmup(epochs=1)", [0.05, 0.1, 0.1, 0.1]),
])
def test_learning_rate_at_each_epoch(schedule, lrs):
    r, _ = load("MLP", "data iris", "loss cross_entropy", "optimizer sgd(lr=0.1)", "epochs 4",
                f"schedule {schedule}")
    assert [r.lr_at(e) for e in range(4)] == pytest.approx(lrs)


# == the head: model arguments and names ========================================================
def test_model_arguments_and_recipe_name():
    text = MODELS + "train MLP(classes=2, features=30) as binary {\n    data breast_cancer\n" \
        "    loss cross_entropy\n}\ntrain MLP(3) as three {\n    data iris\n    loss nll\n}\n"
    model, r = load_recipe(text=text, name="binary")
    assert (r.name, r.model, r.model_args) == ("binary", "MLP", {"classes": 2, "features": 30})
    assert model.graph.outputs[0].type.shape == (2,)
    _, three = load_recipe(text=text, name="three")
    assert three.model_args == {"classes": 3}
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=text)
    assert info.value.diagnostics[0].code == codes.NO_RECIPE
    assert info.value.diagnostics[0].message == "the file has 2 recipes"
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=text, name="binray")
    assert info.value.diagnostics[0].help == "did you mean `binary`?"
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=MODELS)
    assert info.value.diagnostics[0].message == "the file has no recipe"


def test_model_errors_under_recipe_arguments_name_the_recipe():
    text = recipe_text("MLP(classes=0)", "data iris", "loss cross_entropy")
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=text)
    (diag,) = info.value.diagnostics
    assert diag.code == codes.BAD_ARG and diag.span.line == 12  # linear(classes) of MLP
    assert diag.notes[-1] == f"in model `MLP` as trained by the recipe at <string>:{FIRST - 1}:7"


# == errors: code, location, numbers ============================================================
ERRORS = [
    # (settings, code, line offset from the first setting, text at the caret, message part)
    (("data iris", "loss nll", "los cross_entropy"), codes.RECIPE_SETTING, 2, "los ",
     "unknown setting `los`"),
    (("data iris",), codes.RECIPE_MISSING, -1, "MLP {", "recipe `MLP` has no `loss`"),
    (("loss mse",), codes.RECIPE_MISSING, -1, "MLP {", "recipe `MLP` has no `data`"),
    (("data iris", "loss nll", "epochs"), codes.RECIPE_MISSING, 2, "epochs",
     "`epochs` needs a value"),
    (("data iris", "loss nll", "loss l1"), codes.DUPLICATE, 2, "loss l1", "`loss` is given twice"),
    (("data iris", "loss crossentropy"), codes.RECIPE_CHOICE, 1, "crossentropy",
     "unknown loss `crossentropy`"),
    (("data irs", "loss nll"), codes.RECIPE_CHOICE, 0, "irs", "unknown data source `irs`"),
    (("data iris", "loss nll", "optimizer adamm"), codes.RECIPE_CHOICE, 2, "adamm",
     "unknown optimizer `adamm`"),
    (("data iris", "loss nll", "schedule cosin"), codes.RECIPE_CHOICE, 2, "cosin",
     "unknown schedule `cosin`"),
    (("data iris", "loss nll", "regularize l3(0.1)"), codes.RECIPE_CHOICE, 2, "l3(",
     "unknown regularizer `l3`"),
    (("data iris", "loss nll", "init he"), codes.RECIPE_CHOICE, 2, "he",
     "unknown init scheme `he`"),
    (("data iris", "loss nll", "init convv=kaiming"), codes.RECIPE_CHOICE, 2, "convv",
     "unknown op kind `convv`"),
    (("data iris", "loss nll", "augment flipp"), codes.RECIPE_CHOICE, 2, "flipp",
     "unknown augmentation `flipp`"),
    (("data iris", "loss nll", "metrics acc"), codes.RECIPE_CHOICE, 2, "acc",
     "unknown metric `acc`"),
    (("data iris", "loss nll", "clip max(1.0)"), codes.RECIPE_CHOICE, 2, "max(",
     "unknown clipping `max`"),
    (("data iris", "loss cross_entropy", "optimizer sgd(lr=-0.1)"), codes.RECIPE_VALUE, 2, "-0.1",
     "`lr` of `sgd` must be > 0, got -0.1"),
    (("data iris", "loss cross_entropy", "optimizer momentum(beta=1)"), codes.RECIPE_VALUE, 2, "1)",
     "`beta` of `momentum` must be in [0, 1), got 1"),
    (("data iris", "loss cross_entropy", "optimizer rmsprop(eps=0)"), codes.RECIPE_VALUE, 2, "0)",
     "`eps` of `rmsprop` must be > 0, got 0"),
    (("data iris", "loss cross_entropy", "optimizer adam(betas=(0.9, 1.0))"), codes.RECIPE_VALUE,
     2, "(0.9, 1.0)", "`betas` of `adam` must be in [0, 1), got 1.0"),
    (("data iris", "loss cross_entropy", "epochs 0"), codes.RECIPE_VALUE, 2, "0",
     "`epochs` must be >= 1, got 0"),
    (("data iris", "loss cross_entropy", "epochs 2.5"), codes.RECIPE_VALUE, 2, "2.5",
     "`epochs` must be an integer, got 2.5"),
    (("data iris", "loss cross_entropy", "batch 0"), codes.RECIPE_VALUE, 2, "0",
     "`batch` must be >= 1, got 0"),
    (("data iris", "loss cross_entropy", "batch ful"), codes.RECIPE_VALUE, 2, "ful",
     "`batch` must be a size or `full`, got `ful`"),
    (("data iris", "loss cross_entropy", "early_stop patience=0"), codes.RECIPE_VALUE, 2, "0",
     "`patience` of `early_stop` must be >= 1, got 0"),
    (("data iris", "loss cross_entropy", "augment flip(p=1.5)"), codes.RECIPE_VALUE, 2, "1.5",
     "`p` of `flip` must be in [0, 1], got 1.5"),
    (("data iris", "loss cross_entropy", "seed -1"), codes.RECIPE_VALUE, 2, "-1",
     "`seed` must be >= 0, got -1"),
    (("data iris", "loss cross_entropy", "device gpu"), codes.RECIPE_VALUE, 2, "gpu",
     "`device` must be one of `auto`, `cpu`, `cuda`, got `gpu`"),
    (("data iris", "loss cross_entropy", "optimizer sgd(lr=fast)"), codes.RECIPE_VALUE, 2, "fast",
     "`lr` of `sgd` must be a number, got `fast`"),
    (("data iris", "loss cross_entropy", "epochs 1/0"), codes.RECIPE_VALUE, 2, "1/0",
     "cannot compute `/` of 1 and 0"),
    (("data iris", "loss cross_entropy", "schedule warmup(20)"), codes.RECIPE_VALUE, 2, "warmup",
     "a warm-up of 20 epochs leaves nothing of a 10-epoch run"),
    (("data iris", "loss cross_entropy", "schedule cosine(min_lr=0.1)"), codes.RECIPE_VALUE, 2,
     "cosine", "cosine's min_lr 0.1 is not below the learning rate 0.01"),
    (("data digits(sequence=true, as_image=true)", "loss cross_entropy"), codes.RECIPE_VALUE, 0,
     "true, as_image", "digits: `sequence` and `as_image` exclude each other"),
    (("data digits(resize=32)", "loss cross_entropy"), codes.RECIPE_VALUE, 0, "32)",
     "digits: `resize` applies to images"),
    (("data iris", "loss cross_entropy", "split 0.7 / 0.2 / 0.2"), codes.RECIPE_SPLIT, 2, "0.7 /",
     "split fractions sum to 1.1, not 1"),
    (("data iris", "loss cross_entropy", "split 0.5 / 0.2 / 0.2 / 0.1"), codes.RECIPE_SPLIT, 2,
     "0.5", "`split` takes 2 or 3 fractions (train / val / test), got 4"),
    (("data iris", "loss cross_entropy", "split 0 / 0.5 / 0.5"), codes.RECIPE_SPLIT, 2, "0 /",
     "the training part of the split is 0"),
    (("data iris", "loss cross_entropy", "split 1.2 / 0 / 0"), codes.RECIPE_VALUE, 2, "1.2",
     "`fraction` of `split` must be in [0, 1], got 1.2"),
    (("data iris", "loss cross_entropy", "optimizer adam(1e-3)"), codes.TOO_MANY_ARGS, 2, "1e-3",
     "`adam` takes 0 positional arguments but 1 was given"),
    (("data iris", "loss cross_entropy", "optimizer adam(rate=1e-3)"), codes.UNKNOWN_ARG, 2, "rate",
     "`adam` has no argument `rate`"),
    (("data iris", "loss cross_entropy", "clip norm"), codes.MISSING_ARG, 2, "norm",
     "`norm` needs `value`"),
    (("data iris", "loss cross_entropy", "regularize l2(1e-4), l2(1e-3)"), codes.DUPLICATE, 2,
     "l2(1e-3)", "`l2` is given twice"),
    (("data iris", "loss cross_entropy", "metrics accuracy, accuracy"), codes.DUPLICATE, 2,
     "accuracy", "metric `accuracy` is given twice"),
    (("data iris", "loss cross_entropy", "epochs 3, 4"), codes.TOO_MANY_ARGS, 2, "4",
     "`epochs` takes one value, got 2"),
    (("data iris", "loss mse(2)"), codes.TOO_MANY_ARGS, 1, "2)", "`mse` takes no arguments"),
    (("data iris", "loss cross_entropy", "early_stop 3", "split 0.9 / 0 / 0.1"),
     codes.RECIPE_EARLY_STOP, 2, "3", "early stopping watches val_loss, but the split has no "
     "validation part"),
    (("data iris", "loss cross_entropy", "early_stop 3, monitor=val_mae"), codes.RECIPE_EARLY_STOP,
     2, "val_mae", "early stopping watches val_mae, but `mae` is not measured"),
]


@pytest.mark.parametrize("settings, code, line, at, message", ERRORS,
                         ids=[e[4][:40] for e in ERRORS])
def test_error(settings, code, line, at, message):
    text = recipe_text("MLP", *settings)
    found = [d for d in diagnostics("MLP", *settings) if d.severity == "error"]
    assert [d.code for d in found] == [code], [d.message for d in found]
    (diag,) = found
    assert message in diag.message
    where, rest = located(diag, text)
    assert where == FIRST + line
    assert rest.startswith(at)


def test_did_you_mean_and_other_settings_hints():
    def help_of(*settings):
        (diag,) = [d for d in diagnostics("MLP", *settings) if d.severity == "error"]
        return diag.help

    assert help_of("data iris", "loss nll", "los mse") == "did you mean `loss`?"
    assert help_of("data iris", "loss crossentropy") == "did you mean `cross_entropy`?"
    assert help_of("data iris", "loss adam") == "`adam` is an optimizer: `optimizer ...`"
    assert help_of("data iris", "loss nll", "optimizer nesterow") == "did you mean `nesterov`?"
    assert help_of("data iris", "loss nll", "init xavir") == "did you mean `xavier`?"
    assert help_of("data iris", "loss nll", "init lineer=xavier") == "did you mean `linear`?"
    assert help_of("data iris", "loss nll", "augment random_corp(4)") == \
        "did you mean `random_crop`?"
    assert help_of("data iris", "loss nll", "early_stop 2, monitor=val_acc") == \
        "did you mean `val_accuracy`?"
    assert help_of("data iris", "loss nll", "metrics maee") == "did you mean `mae`?"
    assert help_of("data iris", "loss nll", "optimizer adam(1e-3)") == \
        "`adam` takes its arguments by keyword, e.g. `adam(lr=1e-3)`"
    assert help_of("data iris", "loss cross_entropy", "split 0.7 / 0.2 / 0.2") == \
        "a last part of 0.1 makes it 1"


def test_all_errors_of_a_recipe_are_reported_at_once():
    found = diagnostics("MLP", "data iris", "los mse", "epochs 0", "optimizer sgd(lr=0)",
                        "metrics f1", "device tpu")
    assert [d.code for d in found] == [codes.RECIPE_MISSING, codes.RECIPE_SETTING,
                                       codes.RECIPE_VALUE, codes.RECIPE_VALUE,
                                       codes.RECIPE_CHOICE, codes.RECIPE_VALUE]


def test_unknown_model_and_model_arguments():
    (diag,) = diagnostics("MLPP", "data iris", "loss mse")
    assert (diag.code, diag.message, diag.help) == (codes.RECIPE_MODEL, "no model named `MLPP`",
                                                     "did you mean `MLP`?")
    assert (diag.span.line, diag.span.col) == (FIRST - 1, 7)
    (diag,) = diagnostics("MLP(clases=3)", "data iris", "loss cross_entropy")
    assert (diag.code, diag.help) == (codes.UNKNOWN_ARG, "did you mean `classes`?")
    assert (diag.span.line, diag.span.col) == (FIRST - 1, 11)
    (diag,) = diagnostics("MLP(classes=2.5)", "data iris", "loss cross_entropy")
    assert (diag.code, diag.message) == (codes.RECIPE_MODEL,
                                         "`classes` of `MLP` must be int, got 2.5")
    (diag,) = diagnostics("MLP(3, 4, 5)", "data iris", "loss cross_entropy")
    assert (diag.code, diag.message) == (codes.TOO_MANY_ARGS,
                                         "`MLP` takes 2 arguments but 3 were given")


# == the recipe against its model ===========================================================
def test_data_shape_against_the_model_input():
    (diag,) = diagnostics("LeNet5", "data digits", "loss cross_entropy")
    assert diag.code == codes.RECIPE_DATA
    assert diag.message == "data samples are [64] but `LeNet5`'s input x is [1, 32, 32]"
    assert diag.help == "use digits(as_image=true, resize=32)"
    assert diag.notes == ("digits: 1,797 samples of [64], 10 classes",)
    assert [lb.span.line for lb in diag.labels] == [FIRST, 2]  # the data, the model's input
    (diag,) = diagnostics("MLP", "data wine", "loss cross_entropy")
    assert diag.message == "data samples are [13] but `MLP`'s input x is [4]"
    r, _ = load("LogReg(features=64)", "data digits", "loss mse")  # digits fits [64]
    assert r.data.shape == (64,)


@pytest.mark.parametrize("want, source, help", [
    ("[64]", "digits(sequence=true)", "use digits() for 64 features"),
    ("[8, 8]", "digits", "use digits(sequence=true) for 8 rows of 8 pixels"),
    ("[1, 8, 8]", "digits", "use digits(as_image=true)"),
    ("[1, 16, 16]", "fashion_mnist", "use fashion_mnist(resize=16)"),
    ("[1, 20, 20]", 'images("p/", size=20)', 'use images("p/", size=20, grayscale=true)'),
])
def test_data_help_gives_the_options_that_fit(want, source, help):
    text = f"model M {{\n    input x: {want}\n    x -> flatten -> linear(10) -> output\n}}\n" \
           f"train M {{\n    data {source}\n    loss cross_entropy\n}}\n"
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=text)
    (diag,) = info.value.diagnostics
    assert (diag.code, diag.help) == (codes.RECIPE_DATA, help)


def test_loss_against_the_output_and_the_classes():
    (diag,) = diagnostics("LeNet5(classes=3)", "data digits(as_image=true, resize=32)",
                          "loss cross_entropy")
    assert (diag.code, diag.message, diag.help) == (
        codes.RECIPE_LOSS, "digits has 10 classes but `LeNet5` outputs 3 class scores",
        "train LeNet5(classes=10)")
    (diag,) = diagnostics("LogReg", "data breast_cancer", "loss cross_entropy")
    assert diag.message == ("cross_entropy needs class scores [C] with C >= 2 (or [C, H, W] per "
                            "pixel), but `LogReg` outputs [1]")
    assert diag.help == "for one output per sample use bce_logits (or bce after a sigmoid)"
    (diag,) = diagnostics("MLP(classes=1)", "data iris", "loss hinge")
    assert diag.message == "hinge needs class scores [C] with C >= 2, but `MLP` outputs [1]"
    load("MLP(classes=2, features=30)", "data breast_cancer", "loss cross_entropy")  # [2] fits
    (diag,) = [d for d in diagnostics("MLP", "data iris", "loss bce") if d.severity == "error"]
    assert (diag.code, diag.message) == (codes.RECIPE_TASK, "bce is binary, but iris has 3 classes")
    (diag,) = diagnostics("MLP(classes=2, features=30)", "data breast_cancer", "loss bce_logits")
    assert (diag.code, diag.help) == (codes.RECIPE_LOSS, "use cross_entropy for 2 class scores")
    (diag,) = diagnostics("LogReg(features=10)", "data diabetes", "loss nll")
    assert (diag.code, diag.message) == (codes.RECIPE_TASK, "diabetes is a regression set (a "
                                         "number per sample), but nll is a classification loss")
    (diag,) = diagnostics("MLP", "data iris", "loss mse")
    assert diag.message == ("mse compares the output with the label, one number per sample, but "
                            "`MLP` outputs [3]")


def test_per_pixel_outputs():
    seg = "model Seg {\n    input x: [1, 16, 16]\n    x -> conv(4, 3, padding=1) -> output\n}\n"
    _, r = load_recipe(text=seg + 'train Seg {\n    data npz("m.npz")\n    loss cross_entropy\n}\n')
    assert r.loss == "cross_entropy"
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=seg + "train Seg {\n    data digits(as_image=true, resize=16)\n"
                    "    loss cross_entropy\n}\n")
    (diag,) = info.value.diagnostics
    assert diag.message == "digits has one label per sample, but `Seg` outputs per-pixel scores " \
        "[4, 16, 16]"


@pytest.mark.parametrize("model, loss, message", [
    ("x -> linear(3) -> softmax -> output", "cross_entropy",
     "cross_entropy applies log-softmax itself, but the model already ends in `softmax`"),
    ("x -> linear(3) -> output", "nll",
     "nll expects log-probabilities, but the model ends in `linear`"),
    ("x -> linear(1) -> output", "bce",
     "bce expects probabilities in (0, 1), but the model ends in `linear`"),
    ("x -> linear(1) -> sigmoid -> output", "bce_logits",
     "bce_logits applies the sigmoid itself, but the model already ends in `sigmoid`"),
])
def test_last_layer_warnings(model, loss, message):
    text = f"model M {{\n    input x: [4]\n    {model}\n}}\ntrain M {{\n    data npz(\"d.npz\")\n" \
           f"    loss {loss}\n}}\n"
    loaded = load_text(text)
    _, diags = check_recipes(loaded)
    warnings = [d for d in diags if d.code == codes.LOSS_LAST_OP]
    assert [d.message for d in warnings] == [message]
    assert [lb.span.line for lb in warnings[0].labels] == [7, 3]  # the loss, the last layer


@pytest.mark.parametrize("model, loss", [("x -> linear(3) -> log_softmax -> output", "nll"),
                                         ("x -> linear(3) -> output", "cross_entropy")])
def test_no_warning_when_loss_and_last_layer_agree(model, loss):
    text = f"model M {{\n    input x: [4]\n    {model}\n}}\n" \
           f"train M {{\n    data iris\n    loss {loss}\n}}\n"
    recipes, diags = check_recipes(load_text(text))
    assert diags == [] and len(recipes) == 1


def test_augmentations_against_the_model():
    (diag,) = diagnostics("MLP", "data iris", "loss cross_entropy", "augment normalize, flip")
    assert diag.code == codes.RECIPE_AUGMENT
    assert diag.message == "flip transforms images [C, H, W], but `MLP`'s input x is [4]"
    assert located(diag, recipe_text("MLP", "data iris", "loss cross_entropy",
                                     "augment normalize, flip"))[1] == "flip"
    (diag,) = diagnostics("LeNet5", "data digits(as_image=true, resize=32)", "loss cross_entropy",
                          "augment random_crop(28, padding=4)")
    assert diag.message == "random_crop gives 28×28 crops, but `LeNet5`'s input x is [1, 32, 32]"
    assert diag.help == "use random_crop(32, padding=4)"
    (diag,) = diagnostics("LeNet5", "data digits(as_image=true, resize=30)", "loss cross_entropy",
                          "augment random_crop(32)")
    assert diag.message == "cannot crop 32×32 from digits images [1, 30, 30] padded by 0 (30×30)"
    r, _ = load("LeNet5", "data digits(as_image=true, resize=36)", "loss cross_entropy",
                "augment random_crop(32)")  # the crop makes [1, 36, 36] fit [1, 32, 32]
    assert r.augment[0].args == {"size": (32, 32), "padding": 0}
    (diag,) = diagnostics("LeNet5", "data digits(as_image=true, resize=32)", "loss cross_entropy",
                          "augment normalize(mean=(0.5, 0.5, 0.5), std=0.2)")
    assert diag.message == "normalize has 3 values of `mean`, but `LeNet5`'s input x [1, 32, 32] " \
        "has 1 channel"


def test_target_input_for_autoencoders():
    ae = "model AE {\n    input x: [64]\n    x -> linear(8) -> relu -> linear(64) -> output\n}\n"
    _, r = load_recipe(text=ae + "train AE {\n    data digits\n    loss mse\n    target input\n}\n")
    assert (r.target, r.metrics) == ("input", ("mae",))
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=ae.replace("linear(64)", "linear(32)") +
                    "train AE {\n    data digits\n    loss mse\n    target input\n}\n")
    (diag,) = info.value.diagnostics
    assert diag.message == "`target input` compares the output with the input, but `AE` outputs " \
        "[32] for an input [64]"


def test_metrics_against_the_loss():
    (diag,) = diagnostics("LogReg(features=10)", "data diabetes", "loss mse", "metrics accuracy")
    assert diag.code == codes.RECIPE_TASK
    assert diag.message == "accuracy needs class predictions, but mse trains a regression"
    (diag,) = diagnostics("MLP", "data iris", "loss cross_entropy", "metrics mse")
    assert diag.message == "mse compares outputs with numeric targets, but cross_entropy reads " \
        "class scores"


def test_warnings_for_settings_without_effect():
    _, warnings = load("MLP", "data iris", "loss cross_entropy", "batch 512", "epochs 5",
                       "early_stop 5", "schedule step(every=8)", "init linear=xavier, conv=kaiming")
    assert {w.code for w in warnings} == {codes.RECIPE_NO_EFFECT, codes.INIT_MISMATCH}
    messages = [w.message for w in warnings]
    assert "batch 512 is larger than the training set: 120 samples (0.8 of 150 in iris)" in messages
    assert "a patience of 5 epochs never stops a 5-epoch run early" in messages
    assert "step(every=8) never steps in a 5-epoch run" in messages
    assert "`MLP` has no `conv` layer with weights: this init does nothing" in messages
    assert "Xavier's variance suits tanh and sigmoid, but `MLP` uses relu" in messages
    _, warnings = load("LogReg", "data breast_cancer", "loss bce", "optimizer gd", "batch 16")
    assert [w.message for w in warnings] == [
        "gd is full-batch gradient descent, but the batch is 16"]
    _, warnings = load("MLP", "data iris", "loss cross_entropy", "init zeros")
    assert [w.message for w in warnings] == [
        "`zeros` starts every unit of a layer equal: their symmetry is never broken"]


def test_one_mistake_one_error():
    # a regression set with a classification loss: the task error, not also the output shape
    found = diagnostics("LogReg(features=10)", "data diabetes", "loss cross_entropy")
    assert [d.code for d in found] == [codes.RECIPE_TASK]
    # a failed augment list is not checked against the model
    found = diagnostics("MLP", "data iris", "loss cross_entropy",
                        "augment flip(p=2), brightness(1)")
    assert [d.code for d in found] == [codes.RECIPE_VALUE]


def test_every_recipe_code_is_registered_explained_and_tested():
    names = {n: v for n, v in vars(codes).items() if isinstance(v, str) and v in codes.CODES
             and v[1] == "5"}
    assert sorted(names.values()) == [f"E50{i:02d}" for i in range(1, 17)] + ["W5001", "W5002",
                                                                               "W5003"]
    # the solver's, transfer learning's and search's codes are tested beside their runtime
    here = Path(__file__).parent
    source = "".join((here / f).read_text(encoding="utf-8")
                     for f in ("test_recipe.py", "test_solver.py", "test_transfer.py",
                               "test_search.py"))
    assert [n for n in names if f"codes.{n}" not in source] == []
    assert all(len(codes.CODES[c].explanation) > 100 for c in names.values())


# == nnspec check =========================================================================
def test_check_prints_recipes_and_their_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.nn").write_text(FULL, encoding="utf-8")
    result = CliRunner().invoke(app, ["check", "ok.nn"])
    assert result.exit_code == 0, result.output
    assert "recipe LeNet5: LeNet5 on digits, cross_entropy, adam(lr=0.001" in result.stdout
    result = CliRunner().invoke(app, ["check", "ok.nn", "--json"])
    payload = json.loads(result.stdout)
    assert [m["model"] for m in payload["models"]] == ["LeNet5", "LogReg", "MLP"]
    (recipe,) = payload["recipes"]
    assert Recipe.model_validate(recipe).model_dump(exclude={"span"}) == \
        load_recipe(text=FULL)[1].model_dump(exclude={"span"})
    assert recipe["span"]["file"] == "ok.nn"
    assert payload["diagnostics"][0]["code"] == codes.INIT_MISMATCH
    result = CliRunner().invoke(app, ["check", "ok.nn", "--json", "--model", "MLP"])
    assert json.loads(result.stdout)["recipes"] == []


def test_check_fails_on_a_bad_recipe_and_json_without_recipes_is_unchanged(tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.nn").write_text(recipe_text("MLP", "data iris", "loss cross_entropy",
                                                 "epochs 0"), encoding="utf-8")
    result = CliRunner().invoke(app, ["check", "bad.nn"])
    assert result.exit_code == 1
    assert "error[E5004]: `epochs` must be >= 1, got 0" in result.stderr
    assert f"--> bad.nn:{FIRST + 2}:12" in result.stderr
    (tmp_path / "models.nn").write_text(MODELS, encoding="utf-8")
    result = CliRunner().invoke(app, ["check", "models.nn", "--json"])
    assert result.exit_code == 0 and isinstance(json.loads(result.stdout), list)


def test_a_broken_model_is_reported_once():
    text = "model M {\n    input x: [4]\n    x -> linear(0) -> output\n}\n" \
           "train M {\n    data iris\n    loss mse\n}\n"
    loaded = load_text(text)
    recipes, diags = check_recipes(loaded, {"M": None})  # the model failed and was reported
    assert recipes == [] and diags == []
    recipes, diags = check_recipes(loaded)  # not elaborated before: its error is reported here
    assert [d.code for d in diags] == [codes.BAD_ARG]


def test_duplicate_recipe_names():
    text = MODELS + "train MLP {\n    data iris\n    loss nll\n}\n" \
        "train MLP {\n    data iris\n    loss nll\n}\n"
    recipes, diags = check_recipes(load_text(text))
    errors = [d for d in diags if d.severity == "error"]
    assert [d.code for d in errors] == [codes.DUPLICATE]
    assert errors[0].help == "name it: `train MLP as MLP_2 { ... }`"
    assert len(recipes) == 1
