"""Transfer learning: `init from(...)` loads a trained run's features, `freeze` keeps them
bit-identical, `lr_groups` trains them at their own learning rate; every misuse is a located
error (at check time when the weights file exists, else a clear error when training starts).

The scenario is real: a digits classifier (10 classes) is trained; its features then serve a
new task, the parity of the digit (2 classes, an npz written from the same images), with a
new 2-wide head. Frozen pretrained features reach ~98% where frozen random ones reach ~78%.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec.api import load_recipe  # noqa: E402
from nnspec.runtime.data.prepare import load_dataset, prepare  # noqa: E402
from nnspec.runtime.data.sources import load_builtin  # noqa: E402
from nnspec.runtime.loop.checkpoint import CheckpointError, load_weights  # noqa: E402
from nnspec.runtime.loop.trainer import Trainer  # noqa: E402
from nnspec.runtime.loop.transfer import frozen, load_initial, param_groups  # noqa: E402
from nnspec.spec import codes  # noqa: E402
from nnspec.spec.diagnostics import Diagnostic, DiagnosticError  # noqa: E402
from nnspec.spec.recipe.ir import WeightsSource  # noqa: E402

QUIET = {"progress": False, "log": lambda line: None}

NET = """\
block Features(hidden: int) {
    input x
    x -> linear(hidden) -> batchnorm -> relu -> dropout(0.1) -> linear(hidden / 2) -> relu
      -> output
}

model DigitsNet(classes: int = 10) {
    input x: [64]
    x -> features: Features(64) -> head: linear(classes) -> output
}

train DigitsNet as base {
    data      digits
    split     0.7 / 0.15 / 0.15
    batch     64
    epochs    5
    loss      cross_entropy
    optimizer adam(lr=1e-2)
    seed      0
}
"""
FEATURES = ["features.linear_1.weight", "features.linear_1.bias", "features.batchnorm_1.weight",
            "features.batchnorm_1.bias", "features.batchnorm_1.running_mean",
            "features.batchnorm_1.running_var", "features.batchnorm_1.num_batches_tracked",
            "features.linear_2.weight", "features.linear_2.bias"]
FEATURE_PARAMS = [n for n in FEATURES if "running" not in n and "batches" not in n]


def parity(name: str, *settings: str) -> str:
    """A recipe for the new task: DigitsNet with a 2-class head on the parity npz."""
    lines = ["data      npz(\"parity.npz\", task=classification)", "split     0.7 / 0.15 / 0.15",
             "batch     64", "epochs    3", "loss      cross_entropy",
             "optimizer adam(lr=1e-2)", "seed      0", *settings]
    return f"train DigitsNet(classes=2) as {name} {{\n" + "".join(f"    {s}\n" for s in lines) + "}\n"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A project folder: the spec, the parity data and a trained 10-class base run."""
    root = tmp_path_factory.mktemp("transfer")
    digits = load_builtin("digits")
    np.savez(root / "parity.npz", x=digits.x, y=(digits.y % 2).astype(np.int64))
    (root / "net.nn").write_text(NET, encoding="utf-8")
    base = nnspec.train(root / "net.nn", "base", out=root / "base", **QUIET)
    assert base.test_accuracy >= 0.9
    return root


def spec(folder: Path, *recipes: str, name: str = "task.nn") -> Path:
    path = folder / name
    path.write_text(NET + "".join(recipes), encoding="utf-8")
    return path


def base_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_weights(folder / "base" / "best.safetensors")[0]


def trainer(folder: Path, path: Path, recipe: str, out: str) -> Trainer:
    model, chosen = load_recipe(path, recipe)
    data = prepare(chosen, model.graph, load_dataset(chosen, folder))
    (folder / out).mkdir()
    return Trainer(chosen, model.graph, data, folder / out, spec_hash="0" * 64, **QUIET)


# == a new head on frozen, loaded features ===================================================
def test_a_new_head_trains_on_frozen_loaded_features(folder):
    path = spec(folder, parity("new_head", 'init from("base", match="features.*")',
                               'freeze "features.*"'),
                parity("random_features", 'freeze "features.*"'))
    run = nnspec.train(path, "new_head", out=folder / "new_head", **QUIET)
    base, state = base_weights(folder), run.module.state_dict()
    for name in FEATURES:  # loaded, then untouched: the batchnorm statistics too (eval mode)
        assert torch.equal(state[name], base[name]), name
    assert tuple(state["head.weight"].shape) == (2, 32)
    initial = trainer(folder, path, "new_head", "step0").module.state_dict()
    assert not torch.equal(initial["head.weight"], state["head.weight"])  # the head trained
    for name in FEATURES:  # at step 0 the module already held the file's tensors
        assert torch.equal(initial[name], base[name]), name
    # the features carry over to the new task: random frozen features do far worse
    scratch = nnspec.train(path, "random_features", out=folder / "random", **QUIET)
    assert run.test_accuracy >= 0.93 > 0.88 >= scratch.test_accuracy
    recipe = json.loads((run.directory / "recipe.json").read_text())
    assert recipe["freeze"] == ["features.*"]
    assert recipe["init"]["source"]["match"] == ["features.*"]
    assert recipe["init"]["source"]["path"] == str(folder / "base")


def test_frozen_parameters_leave_the_optimizer_and_their_norm_layers_stay_in_eval(folder):
    path = spec(folder, parity("frozen", 'init from("base", match="features.*")',
                               'freeze "features.*"', "regularize max_norm(0.5), l2(1e-3)"),
                name="frozen.nn")
    t = trainer(folder, path, "frozen", "frozen_run")
    names = {id(p): n for n, p in t.module.named_parameters()}
    in_optimizer = [names[id(p)] for g in t.optimizer.param_groups for p in g["params"]]
    assert in_optimizer == ["head.weight", "head.bias"]
    assert [n for n, p in t.module.named_parameters() if not p.requires_grad] == FEATURE_PARAMS
    assert [id(w) for w in t.weights] == [id(t.module.get_submodule("head").weight)]
    t.module.train()
    assert t.module.training and t.module.get_submodule("head").training
    assert not t.module.get_submodule("features.batchnorm_1").training
    assert t.module.get_submodule("features.dropout_1").training  # dropout stays active
    before = {k: v.clone() for k, v in t.module.state_dict().items()}
    t.train_epoch(0)  # max-norm 0.5 would shrink every loaded weight if it reached them
    after = t.module.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in FEATURES)
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_lr_groups_train_loaded_features_slowly_and_schedules_scale_every_group(folder):
    path = spec(folder, parity("finetune", 'init from("base", match="features.*")',
                               'lr_groups group("features.*", lr=1e-4)',
                               "schedule step(every=1, factor=0.5)"), name="finetune.nn")
    t = trainer(folder, path, "finetune", "finetune_run")
    base = base_weights(folder)
    assert all(torch.equal(t.module.state_dict()[n], base[n]) for n in FEATURES)  # step 0
    head, features = t.optimizer.param_groups
    assert (head["lr"], head["lr_scale"], features["lr"], features["lr_scale"]) == \
        (1e-2, 1.0, 1e-4, pytest.approx(1e-2))
    names = {id(p): n for n, p in t.module.named_parameters()}
    assert [names[id(p)] for p in features["params"]] == FEATURE_PARAMS
    assert [names[id(p)] for p in head["params"]] == ["head.weight", "head.bias"]
    t.train_epoch(0)
    t.train_epoch(1)  # step(every=1, factor=0.5): every group at half its lr
    assert [g["lr"] for g in t.optimizer.param_groups] == [pytest.approx(5e-3),
                                                          pytest.approx(5e-5)]
    after = t.module.state_dict()
    moved = (after["features.linear_1.weight"] - base["features.linear_1.weight"]).abs().max()
    assert 0 < moved.item() < 0.01  # trained, slowly: Adam moves each weight ≲ lr per step


def test_param_groups_without_lr_groups_is_every_trainable_parameter(folder):
    model, recipe = load_recipe(spec(folder, parity("plain"), name="plain.nn"), "plain")
    from nnspec.compiler.torch_build import build_module

    module = build_module(model.graph)
    assert frozen(module, ()) == []
    (group,) = param_groups(module, recipe)
    assert len(group["params"]) == len(list(module.parameters())) and group["lr"] == 1e-2


# == misuse found when training starts ======================================================
def _module(folder: Path, recipe: str = "new_head"):
    from nnspec.compiler.torch_build import build_module

    model, _ = load_recipe(folder / "task.nn", recipe)
    return build_module(model.graph)


def test_a_file_that_changed_since_the_check_is_a_clear_error(folder):
    module = _module(folder)
    whole = WeightsSource(path=str(folder / "base"), written="base", match=("*",))
    with pytest.raises(CheckpointError) as info:
        load_initial(module, whole)
    assert info.value.message == (
        f"`init from`: `head.weight` has shape [10, 32] in `{folder / 'base' / 'last.safetensors'}`"
        ", the model needs [2, 32]")
    assert info.value.help == "leave `head` out of `match` to keep its initialisation"
    missing = WeightsSource(path=str(folder / "nowhere.safetensors"), written="nowhere.safetensors")
    with pytest.raises(CheckpointError, match="`init from`: `nowhere.safetensors` does not exist"):
        load_initial(module, missing)
    empty = folder / "empty_run"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"`empty_run` is not a run directory \(it has no "):
        load_initial(module, WeightsSource(path=str(empty), written="empty_run"))


def test_cli_reports_weights_missing_at_training_time_without_a_traceback(folder):
    from typer.testing import CliRunner

    from nnspec.cli import app

    path = spec(folder, parity("later", 'init from("later.safetensors", match="features.*")'),
                name="later.nn")
    result = CliRunner().invoke(app, ["train", str(path), "-r", "later", "--out",
                                      str(folder / "later_run")])
    assert result.exit_code == 1
    assert "error: `init from`: `later.safetensors` does not exist" in result.stderr
    assert "Traceback" not in result.output


# == misuse found at check time =============================================================
def diagnostics(folder: Path, *settings: str, head: str = "DigitsNet(classes=2)") -> list[Diagnostic]:
    path = folder / "bad.nn"
    body = "".join(f"    {s}\n" for s in ('data npz("parity.npz", task=classification)',
                                            "loss cross_entropy", *settings))
    path.write_text(NET + f"train {head} as bad {{\n{body}}}\n", encoding="utf-8")
    with pytest.raises(DiagnosticError) as info:
        load_recipe(path, "bad")
    return list(info.value.diagnostics)


def located(diag: Diagnostic) -> tuple[int, int]:
    return diag.span.line, diag.span.col


LINE = NET.count("\n") + 4  # the line of the third setting of `diagnostics`


def test_a_new_head_loaded_from_the_old_run_is_a_shape_error_with_the_fix(folder):
    (diag,) = diagnostics(folder, 'init from("base")')
    assert (diag.code, diag.message) == (
        codes.RECIPE_WEIGHTS, "`head.weight` is [10, 32] in `base/last.safetensors` but [2, 32] "
        "in `DigitsNet` (and 1 more)")
    assert diag.help == ('leave `head` out of `match` to keep its initialisation (a new head): '
                         'match="features.*"')
    assert located(diag) == (LINE, 10)  # `from(...)`: the default match="*" is the call


def test_tensors_the_file_lacks_and_files_that_are_not_safetensors(folder):
    (folder / "features_only.safetensors").write_bytes(b"")
    from safetensors.torch import save_file

    base = base_weights(folder)
    save_file({k: base[k] for k in FEATURES[:4]}, str(folder / "partial.safetensors"))
    (diag,) = diagnostics(folder, 'init from("partial.safetensors", match="features.*")')
    assert (diag.code, diag.message) == (
        codes.RECIPE_WEIGHTS, "`partial.safetensors` has no tensor "
        "`features.batchnorm_1.running_mean` (and 4 more)")
    assert diag.help == "the file comes from another model"
    assert diag.notes == ("`partial.safetensors` holds: features.batchnorm_1.bias, "
                          "features.batchnorm_1.weight, features.linear_1.bias, "
                          "features.linear_1.weight",)
    (diag,) = diagnostics(folder, 'init from("net.nn")')
    assert (diag.code, diag.message) == (
        codes.RECIPE_WEIGHTS, "`net.nn` is not a safetensors file: no safetensors header at its "
        "start")
    assert located(diag) == (LINE, 15)  # the path
    (diag,) = diagnostics(folder, 'init from("features_only.safetensors", match="features.*")')
    assert diag.message.endswith("is not a safetensors file: shorter than a safetensors header")


def test_patterns_that_match_nothing_overlap_or_freeze_everything(folder):
    found = diagnostics(folder, 'init from("base", match=("features.*", "fetures.*"))',
                        'freeze "features"', 'lr_groups group("head.*", lr=1e-3), '
                        'group(("*.bias", "body.*"), lr=1e-4)')
    assert [(d.code, d.message) for d in found] == [
        (codes.RECIPE_PARAMS, '`init from` pattern "fetures.*" matches no tensor of `DigitsNet`'),
        (codes.RECIPE_PARAMS, '`freeze` pattern "features" matches no tensor of `DigitsNet`'),
        (codes.RECIPE_PARAMS, "`head.bias` is in two learning-rate groups"),
        (codes.RECIPE_PARAMS, '`lr_groups` pattern "body.*" matches no parameter of `DigitsNet`'),
    ]
    assert [d.help for d in found] == [
        'did you mean "features.*"?',
        '"features" matches one name exactly; "features.*" matches everything under it',
        "make the patterns disjoint: each parameter has one lr", None]
    assert [located(d) for d in found] == [(LINE, 44), (LINE + 1, 12), (LINE + 2, 48),
                                           (LINE + 2, 58)]
    (diag,) = diagnostics(folder, 'freeze "features.*", "head.*"')
    assert (diag.code, diag.message, diag.help) == (
        codes.RECIPE_PARAMS, "`freeze` covers every parameter of `DigitsNet`: nothing is left to "
        "train", 'freeze only the layers you reuse, e.g. `freeze "features.*"`')


def test_a_group_of_frozen_parameters_warns(folder):
    path = folder / "warn.nn"
    path.write_text(NET + parity("warn", 'freeze "features.*"',
                                 'lr_groups group("features.*", lr=1e-4)'), encoding="utf-8")
    model, recipe = load_recipe(path, "warn")
    (warning,) = model.warnings
    assert (warning.code, warning.message) == (
        codes.RECIPE_NO_EFFECT, "every parameter of this group is frozen: its learning rate has "
        "no effect")
    assert recipe.lr_groups[0].match == ("features.*",) and recipe.lr_groups[0].lr == 1e-4


def test_setting_syntax_errors(folder):
    cases = {
        'freeze features': (codes.RECIPE_VALUE, "`freeze` takes \"patterns\", got the name "
                            "`features`", 'quote it, with `.*` for everything under a layer: '
                            '`freeze "features.*"`'),
        'lr_groups "features.*"': (codes.RECIPE_CHOICE, 'expected a learning-rate group, found '
                                   'the string "features.*"',
                                   'e.g. `lr_groups group("features.*", lr=1e-4)`'),
        'lr_groups group("features.*")': (codes.MISSING_ARG, "`group` needs `lr`", None),
        'lr_groups group("head.*", lr=0)': (codes.RECIPE_VALUE, "`lr` of `group` must be > 0, "
                                            "got 0.0", None),
        'init from("a.safetensors"), from("b.safetensors")': (
            codes.TOO_MANY_ARGS, "`init` takes one `from(...)`", 'give several patterns to one '
            'source: `from("base/", match=("features.*", "conv_1.*"))`'),
        'init from(match="*")': (codes.MISSING_ARG, "`from` needs `path`", None),
        'init from("base", match=3)': (
            codes.RECIPE_VALUE, '`match` of `from` must be a "pattern" or a tuple of them, e.g. '
            '("features.*", "head.*"), got 3', None),
        'optimizer group': (codes.RECIPE_CHOICE, "unknown optimizer `group`",
                            "`group` is a learning-rate group: `lr_groups group(...)`"),
    }
    for setting, expected in cases.items():
        (diag,) = diagnostics(folder, setting)
        assert (diag.code, diag.message, diag.help) == expected, setting


def test_the_recipe_ir_round_trips_with_transfer_settings(folder):
    path = spec(folder, parity("ir", 'init kaiming, from("base", match=("features.*",)), '
                               'linear=xavier', 'freeze "features.linear_1.*", "*.batchnorm_1.*"',
                               'lr_groups group("features.linear_2.*", lr=1e-3)'), name="ir.nn")
    _, recipe = load_recipe(path, "ir")
    assert recipe.init.default == ("kaiming", {"nonlinearity": "relu"})
    assert recipe.init.per_kind == {"linear": ("xavier", {"gain": 1.0})}
    assert recipe.init.source == WeightsSource(path=str(folder / "base"), written="base",
                                               match=("features.*",))
    assert recipe.freeze == ("features.linear_1.*", "*.batchnorm_1.*")
    assert type(recipe).model_validate_json(recipe.model_dump_json()) == recipe
