"""Ensembles (`ensemble n[, bagging]`): the recipe setting, training n members in one run
directory, the averaged prediction beating its members, bagging's bootstrap samples, and
one ONNX graph of every member that equals the Python ensemble."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from cli_runner import cli  # noqa: E402

import nnspec  # noqa: E402
from nnspec.api import load_recipe  # noqa: E402
from nnspec.compiler.torch_build import build_module  # noqa: E402
from nnspec.runtime import Session  # noqa: E402
from nnspec.runtime.data.prepare import load_dataset, prepare  # noqa: E402
from nnspec.runtime.experiments.ensemble import bootstrap_indices  # noqa: E402
from nnspec.runtime.loop.checkpoint import load_weights  # noqa: E402
from nnspec.runtime.loop.trainer import TrainingError  # noqa: E402
from nnspec.spec import codes  # noqa: E402
from nnspec.spec.diagnostics import DiagnosticError  # noqa: E402
from nnspec.spec.recipe.ir import Recipe  # noqa: E402

QUIET = {"progress": False, "log": lambda line: None}

# a small MLP trained 3 epochs: each member is imperfect (about 75-83% on the test part) and
# they err differently, which is where averaging helps; on the CPU the numbers are exact
DIGITS = """\
model Net {
    input x: [64]
    x -> linear(16) -> relu -> linear(10) -> output
}
train Net {
    data      digits
    split     0.6 / 0.1 / 0.3
    loss      cross_entropy
    optimizer sgd(lr=0.1)
    epochs    3
    batch     64
    seed      0
    device    cpu
    ENSEMBLE
}
"""
LINEAR = """\
model LinReg {
    input x: [10]
    x -> linear(1) -> output
}
train LinReg {
    data   diabetes
    split  0.6 / 0.1 / 0.3
    loss   mse
    solver normal_equation
    seed   2
    ensemble 3, bagging
}
"""


def write(folder: Path, text: str, name: str = "net.nn") -> Path:
    path = folder / name
    path.write_text(text)
    return path




def digits_spec(folder: Path, ensemble: str) -> Path:
    return write(folder, DIGITS.replace("ENSEMBLE", ensemble))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ensemble")
    spec = digits_spec(folder, "ensemble 5")
    run = nnspec.train(spec, out=folder / "run", **QUIET)
    model, recipe = load_recipe(spec)
    data = prepare(recipe, model.graph, load_dataset(recipe, spec.parent))
    return spec, run, model, data


# == the recipe setting ========================================================================
@pytest.mark.parametrize("line, members, mode", [
    ("ensemble 5", 5, "seeds"), ("ensemble 4, bagging", 4, "bagging"),
    ("ensemble 3, mode=bagging", 3, "bagging"), ("ensemble 2, seeds", 2, "seeds"),
])
def test_the_setting_reaches_the_ir(line, members, mode):
    _, recipe = load_recipe(text=DIGITS.replace("ENSEMBLE", line))
    assert (recipe.ensemble.members, recipe.ensemble.mode) == (members, mode)
    assert Recipe.model_validate_json(recipe.model_dump_json()) == recipe
    assert recipe.describe().endswith(f"an ensemble of {members} ({mode})")
    _, plain = load_recipe(text=DIGITS.replace("ENSEMBLE", ""))
    assert plain.ensemble is None


@pytest.mark.parametrize("line, at, message", [
    ("ensemble 1", "1", "`members` of `ensemble` must be in [2, 64], got 1"),
    ("ensemble 0", "0", "`members` of `ensemble` must be in [2, 64], got 0"),
    ("ensemble 65", "65", "must be in [2, 64], got 65"),
    ("ensemble 2.5", "2.5", "`members` of `ensemble` must be an integer"),
    ("ensemble 5, bagged", "bagged", "`mode` of `ensemble` must be one of `seeds`, `bagging`"),
    ("ensemble 5, bagging, seeds", "seeds", "takes 2 positional arguments but 3 were given"),
])
def test_wrong_values_are_located_errors(tmp_path, line, at, message):
    text = DIGITS.replace("ENSEMBLE", line)
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=text)
    (diag,) = [d for d in info.value.diagnostics if d.severity == "error"]
    assert message in diag.message
    assert diag.code in (codes.RECIPE_VALUE, codes.TOO_MANY_ARGS)
    assert diag.span.line == text.splitlines().index(f"    {line}") + 1
    assert text.splitlines()[diag.span.line - 1][diag.span.col - 1:].startswith(at)
    result = cli("check", write(tmp_path, text))  # the CLI: the diagnostic, exit 1
    assert result.exit_code == 1 and diag.code in result.output


def test_warnings_for_ensembles_that_cannot_differ_or_be_compared():
    model, _ = load_recipe(text=LINEAR.replace("ensemble 3, bagging", "ensemble 3"))
    (same,) = [w for w in model.warnings if "identical" in w.message]
    assert same.code == codes.RECIPE_NO_EFFECT and "bagging" in same.help
    model, _ = load_recipe(text=DIGITS.replace("ENSEMBLE", "ensemble 3")
                           .replace("0.6 / 0.1 / 0.3", "0.8 / 0.2"))
    assert any("no test part" in w.message for w in model.warnings)


# == training and evaluation ===================================================================
def test_the_ensemble_beats_the_mean_of_its_members(trained):
    _, run, _, _ = trained
    members = [m["test"]["test_accuracy"] for m in run.extra["members"]]
    mean, ensemble = run.extra["member_mean"]["test_accuracy"], run.test["test_accuracy"]
    assert len(members) == 5 and mean == pytest.approx(np.mean(members))
    # measured: members 0.755-0.831, mean 0.790, ensemble 0.844
    assert 0.6 < min(members) and max(members) < 0.9, members
    assert ensemble >= mean + 0.03, (members, mean, ensemble)
    assert run.test["test_loss"] < run.extra["member_mean"]["test_loss"]


def test_run_directory_holds_every_member_and_the_comparison(trained):
    _, run, _, _ = trained
    top = run.directory
    assert {"ir.json", "recipe.json", "normalizer.json", "ensemble.json", "test.json",
            "summary.md", "members"} <= {p.name for p in top.iterdir()}
    for k in range(5):
        member = top / "members" / str(k)
        assert {"best.safetensors", "metrics.jsonl", "summary.md", "test.json"} <= \
            {p.name for p in member.iterdir()}
        recipe = json.loads((member / "recipe.json").read_text())
        assert recipe["seed"] == k and recipe["ensemble"] is None
        assert json.loads((member / "test.json").read_text()) == run.extra["members"][k]["test"]
        assert len((member / "metrics.jsonl").read_text().splitlines()) == 3
    record = json.loads((top / "ensemble.json").read_text())
    assert record["members"] == 5 and record["mode"] == "seeds"
    assert record["transform"] == "softmax" and record["test"] == run.test
    assert json.loads((top / "test.json").read_text()) == run.test
    summary = (top / "summary.md").read_text()
    acc = run.test["test_accuracy"]
    assert f"| **ensemble** | **{run.test['test_loss']:.4f}** | **{acc:.4f}** |" in summary
    assert "| member 4 (seed 4, 3 epochs) |" in summary and "| mean of the members |" in summary
    assert "softmax of the logits" in summary and "## Confusion matrix of the ensemble" in summary


def test_python_ensemble_is_the_mean_of_member_probabilities(trained):
    _, run, model, data = trained
    x, y = data.test
    probabilities = []
    for k in range(5):
        member = build_module(model.graph)
        member.load_state_dict(load_weights(run.directory / "members" / str(k) /
                                            "best.safetensors")[0])
        probabilities.append(torch.softmax(member.eval()(x), dim=1))
    expected = torch.stack(probabilities).mean(0)
    with torch.no_grad():
        got = run.module(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert got.sum(1).sub(1).abs().max() < 1e-5
    accuracy = (got.argmax(1) == y).double().mean().item()
    assert accuracy == pytest.approx(run.test["test_accuracy"], abs=1e-12)


# == export and inference ======================================================================
def test_onnx_export_is_one_graph_equal_to_the_python_ensemble(trained, tmp_path):
    spec, run, _, data = trained
    onnx_path = tmp_path / "ensemble.onnx"
    result = cli("export", spec, "--weights", run.directory, "-o", onnx_path)
    assert result.exit_code == 0, result.output
    import onnx

    proto = onnx.load(onnx_path)
    names = [t.name for t in proto.graph.initializer]
    assert len(names) == 5 * 4 and {n.split(".", 1)[0] for n in names} == \
        {f"member_{k}" for k in range(5)}
    assert "member_3.linear_2.bias" in names
    assert [o.name for o in proto.graph.output] == ["output"]
    session = Session(onnx_path)
    assert session.output_kind == "probabilities" and session.metadata["ensemble_members"] == "5"
    x, y = data.test
    onnx_out = session.run(x.numpy(), normalize=False)  # data.test is already normalised
    with torch.no_grad():
        python_out = run.module(x).numpy()
    error = float(np.abs(onnx_out - python_out).max())
    assert error < 1e-5, error  # measured: about 1e-7
    assert (onnx_out.argmax(1) == y.numpy()).mean() == pytest.approx(run.test["test_accuracy"])
    # `nnspec predict` on raw digits: the session applies the run's normaliser itself
    raw = np.asarray(load_dataset(Recipe.model_validate_json(
        (run.directory / "recipe.json").read_text()), None).x[:7], dtype=np.float32)
    np.save(tmp_path / "x.npy", raw)
    out = tmp_path / "predictions.npz"
    result = cli("predict", onnx_path, "-i", tmp_path / "x.npy", "-o", out)
    assert result.exit_code == 0, result.output
    with torch.no_grad():
        normalised = torch.from_numpy(session.normalizer.transform(raw))
        expected = run.module(normalised).argmax(1).numpy()
    np.testing.assert_array_equal(np.load(out)["prediction"], expected)


def test_regression_ensemble_averages_outputs(tmp_path):
    spec = write(tmp_path, LINEAR)
    run = nnspec.train(spec, out=tmp_path / "run", **QUIET)
    model, recipe = load_recipe(spec)
    data = prepare(recipe, model.graph, load_dataset(recipe, spec.parent))
    x, y = data.test
    outputs = []
    for k in range(3):
        member = build_module(model.graph)
        member.load_state_dict(load_weights(run.directory / "members" / str(k) /
                                            "best.safetensors")[0])
        outputs.append(member(x))
    with torch.no_grad():
        average = torch.stack(outputs).mean(0)
        torch.testing.assert_close(run.module(x), average, rtol=0, atol=1e-6)
    # bagged least squares: each member its own θ, the ensemble's mae that of the mean output
    weights = [m.state_dict()["linear_1.weight"] for m in run.module.members]
    assert not torch.equal(weights[0], weights[1])
    mae = (average[:, 0] - y).abs().mean().item()
    assert run.test["test_mae"] == pytest.approx(mae, rel=1e-6)
    assert "mean of the members' outputs" in (run.directory / "summary.md").read_text()
    onnx_path = tmp_path / "linreg.onnx"
    assert cli("export", spec, "-w", run.directory, "-o", onnx_path).exit_code == 0
    session = Session(onnx_path)
    assert session.output_kind == "values" and not session.is_classifier
    np.testing.assert_allclose(session.run(x.numpy(), normalize=False), average.detach().numpy(),
                               rtol=0, atol=1e-4)


# == bagging ===================================================================================
def test_bootstrap_samples_are_seeded_and_differ_by_member():
    n = 1078
    bags = [bootstrap_indices(n, 7, k) for k in range(3)]
    assert all(torch.equal(b, bootstrap_indices(n, 7, k)) for k, b in enumerate(bags))
    assert not torch.equal(bootstrap_indices(n, 8, 0), bags[0])  # another recipe seed
    for i in range(3):
        assert len(bags[i]) == n and 0 <= int(bags[i].min()) and int(bags[i].max()) < n
        unique = len(torch.unique(bags[i])) / n  # with replacement: about 1 - 1/e = 0.632
        assert 0.60 < unique < 0.66, unique
        for j in range(i):
            assert not torch.equal(bags[i], bags[j])


def test_bagging_trains_each_member_on_its_own_bag(tmp_path):
    one_epoch = DIGITS.replace("epochs    3", "epochs    1")
    spec = write(tmp_path, one_epoch.replace("ENSEMBLE", "ensemble 3, bagging"))
    run = nnspec.train(spec, out=tmp_path / "run", **QUIET)
    n = 1078  # the training part: 0.6 of 1,797 digits
    for k, record in enumerate(run.extra["members"]):
        bag = json.loads((run.directory / "members" / str(k) / "bag.json").read_text())
        assert bag == bootstrap_indices(n, 0, k).tolist()
        assert record["bag_unique"] == round(len(set(bag)) / n, 4)
    # the same recipe without bagging trains member 0 on the whole split: other weights
    plain = write(tmp_path, one_epoch.replace("ENSEMBLE", "ensemble 2"), "plain.nn")
    seeds = nnspec.train(plain, out=tmp_path / "plain_run", **QUIET)
    assert not torch.equal(seeds.module.members[0].state_dict()["linear_1.weight"],
                           run.module.members[0].state_dict()["linear_1.weight"])
    assert "bootstrap sample" in (run.directory / "summary.md").read_text()


# == resume and stop_after ====================================================================
# dropout (the saved RNG state) and momentum (the optimizer's state) make an exact resume
# depend on every part of the saved state
RESUMABLE = DIGITS.replace("linear(16) -> relu", "linear(16) -> relu -> dropout(0.2)") \
    .replace("sgd(lr=0.1)", "momentum(lr=0.2, beta=0.9)")


def member_epochs(folder: Path) -> int:
    """The epochs a member's run directory holds (0: not started)."""
    metrics = folder / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.is_file() else 0


@pytest.mark.parametrize("setting, epochs", [
    ("ensemble 3, bagging", 3),  # 3 epochs each, no early stop
    ("ensemble 3\n    early_stop patience=1, monitor=val_loss", 6),  # measured: 3, 2, 2 epochs
], ids=["bagging", "early-stop"])
def test_an_interrupted_ensemble_resumes_to_the_same_weights_and_metrics(tmp_path, setting, epochs):
    spec = write(tmp_path, RESUMABLE.replace("ENSEMBLE", setting)
                 .replace("epochs    3", f"epochs    {epochs}"))
    whole = nnspec.train(spec, out=tmp_path / "whole", **QUIET)
    runs = [m["epochs_run"] for m in whole.extra["members"]]
    assert len(runs) == 3 and all(1 <= r <= epochs for r in runs)
    part = tmp_path / "part"
    # stop_after counts the members' epochs in order: 2 stops in member 0; 4 finishes member 0
    # (3 epochs, or early stop) and starts member 1 in the same call; 5 stops in or after it
    for call, stop in enumerate((2, 4, 5)):
        run = (nnspec.train(spec, out=part, stop_after=stop, **QUIET) if call == 0 else
               nnspec.train(spec, resume=part, stop_after=stop, **QUIET))
        assert run.extra["finished"] is False and run.test == {}
        assert not (part / "ensemble.json").exists() and not (part / "test.json").exists()
        before = 0
        for k in range(3):
            folder = part / "members" / str(k)
            done = min(max(stop - before, 0), runs[k])
            assert member_epochs(folder) == done, (stop, k)
            assert (folder / "test.json").is_file() == (done == runs[k])
            before += runs[k]
        first_unfinished = next(k for k in range(3) if member_epochs(part / "members" / str(k))
                                < runs[k])
        assert run.extra["stopped_member"] == first_unfinished
    # a member that finished but lost its test.json (the call ended in `finish`): written again
    (part / "members" / "0" / "test.json").unlink()
    lines: list[str] = []
    resumed = nnspec.train(spec, resume=part, progress=False, log=lines.append)
    assert resumed.extra["finished"] is True
    assert "member 0: finished" in "\n".join(lines) and "loaded, not trained again" in "\n".join(lines)
    for k in range(3):
        a = whole.module.members[k].state_dict()
        b = resumed.module.members[k].state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (k, key)
        for name in ("last.safetensors", "best.safetensors"):
            saved_a = load_weights(whole.directory / "members" / str(k) / name)[0]
            saved_b = load_weights(part / "members" / str(k) / name)[0]
            assert all(torch.equal(saved_a[t], saved_b[t]) for t in saved_a), (k, name)
        for name in ("test.json", "bag.json"):
            file_a = whole.directory / "members" / str(k) / name
            file_b = part / "members" / str(k) / name
            assert file_a.is_file() == file_b.is_file()
            if file_a.is_file():
                assert json.loads(file_a.read_text()) == json.loads(file_b.read_text()), (k, name)
        assert member_epochs(part / "members" / str(k)) == runs[k]
    assert resumed.test == whole.test and resumed.test["test_accuracy"] > 0.8
    assert resumed.extra["members"] == whole.extra["members"]
    assert resumed.extra["member_mean"] == whole.extra["member_mean"]
    record_a = json.loads((whole.directory / "ensemble.json").read_text())
    record_b = json.loads((part / "ensemble.json").read_text())
    assert record_a == record_b and json.loads((part / "test.json").read_text()) == whole.test
    # resuming the finished ensemble trains nothing and reports the same
    lines.clear()
    again = nnspec.train(spec, resume=part, progress=False, log=lines.append)
    assert again.test == whole.test and not any("epoch 1/" in line for line in lines)
    assert sum("loaded, not trained again" in line for line in lines) == 3


def test_resume_refuses_what_is_not_this_ensemble_run(tmp_path):
    spec = write(tmp_path, RESUMABLE.replace("ENSEMBLE", "ensemble 2, bagging"))
    part = tmp_path / "part"
    nnspec.train(spec, out=part, stop_after=1, **QUIET)
    assert json.loads((part / "ensemble_run.json").read_text())["members"] == 2
    saved = (part / "members" / "0" / "last.safetensors").read_bytes()
    # another spec (its hash differs): the same message as a single run's resume
    other = write(tmp_path, RESUMABLE.replace("linear(16)", "linear(12)")
                  .replace("ENSEMBLE", "ensemble 2, bagging"), "other.nn")
    with pytest.raises(TrainingError, match="was trained from a different spec") as info:
        nnspec.train(other, resume=part, **QUIET)
    assert "the spec file the run was started from" in info.value.help
    result = cli("train", other, "--resume", part)
    assert result.exit_code == 1 and "different spec" in result.output and "help:" in result.output
    # another recipe of the same spec (the same hash)
    block = RESUMABLE[RESUMABLE.index("train Net {"):]
    two = RESUMABLE.replace("ENSEMBLE", "ensemble 2, bagging").replace("train Net {", "train Net as a {")
    two += block.replace("train Net {", "train Net as b {").replace("ENSEMBLE", "ensemble 3")
    both = write(tmp_path, two, "two.nn")
    ran = nnspec.train(both, "a", out=tmp_path / "a", stop_after=1, **QUIET)
    result = cli("train", both, "--recipe", "b", "--resume", ran.directory)
    assert result.exit_code == 1 and "was trained by recipe `a`" in result.output
    assert "--recipe a" in result.output
    # a single run, an empty folder, a folder that does not exist
    single = write(tmp_path, RESUMABLE.replace("ENSEMBLE", ""), "single.nn")
    nnspec.train(single, out=tmp_path / "single", stop_after=1, **QUIET)
    result = cli("train", spec, "--resume", tmp_path / "single")
    assert result.exit_code == 1 and "is a single run, not an ensemble run" in result.output
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "nowhere"):
        result = cli("train", spec, "--resume", folder)
        assert result.exit_code == 1 and "is not a run directory" in result.output
    # a bagging member whose bag.json disagrees with its seeded bag (the data changed)
    bag = part / "members" / "0" / "bag.json"
    indices = json.loads(bag.read_text())
    bag.write_text(json.dumps(indices[::-1]))
    result = cli("train", spec, "--resume", part)
    assert result.exit_code == 1 and "differs from its bag.json" in result.output
    bag.write_text(json.dumps(indices))
    # nothing was trained or written by the refused calls
    assert (part / "members" / "0" / "last.safetensors").read_bytes() == saved
    assert member_epochs(part / "members" / "0") == 1 and not (part / "members" / "1").exists()


# == what an ensemble run refuses ==============================================================
def test_unsupported_calls_are_clear_errors(tmp_path):
    spec = digits_spec(tmp_path, "ensemble 2")
    result = cli("train", spec, "--nproc", "2", "-o", tmp_path / "r")
    assert result.exit_code == 1 and "does not support several processes" in result.output
    with pytest.raises(TrainingError, match="does not support several processes"):
        nnspec.train(spec, resume=tmp_path / "r", nproc=2, **QUIET)
    (tmp_path / "taken" / "members").mkdir(parents=True)
    result = cli("train", spec, "-o", tmp_path / "taken")
    assert result.exit_code == 1 and "already holds an ensemble run" in result.output
    assert f"--resume {tmp_path / 'taken'}" in result.output
