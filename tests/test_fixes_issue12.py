"""Issue 12: five defects of the checker, each with its exact diagnostic or value.

1. a positional argument after a keyword one (op, block and recipe calls);
2. an argument given twice stops the layer before its shape rule (no E2101 beside E1003);
3. a value used by a layer that failed is not reported as unused;
4. an unknown receptive field (after a reshape) stays unknown: per layer, in the total, in
   `--json` and in `assert receptive_field`;
5. `nnspec check` into a file or a pipe prints the table whole, not cut to 80 columns.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from cli_runner import cli
from rich.console import Console

import nnspec
from nnspec import cli as cli_module
from nnspec.api import load_recipe
from nnspec.spec import codes
from nnspec.spec.diagnostics import Diagnostic, DiagnosticError
from nnspec.spec.passes.summary import unknown_fields

ROOT = Path(__file__).resolve().parent.parent


def diagnostics(text: str) -> list[Diagnostic]:
    with pytest.raises(DiagnosticError) as info:
        nnspec.load(text=text)
    return list(info.value.diagnostics)


def located(diags: list[Diagnostic]) -> list[tuple[str, str, int, int]]:
    """(code, message, line, col) of each diagnostic, warnings included."""
    out = []
    for d in diags:
        assert d.span is not None
        out.append((d.code, d.message, d.span.line, d.span.col))
    return out


def model(*lines: str) -> str:
    return "model M {\n    input x: [3, 32, 32]\n" + "".join(f"    {line}\n" for line in lines) + "}\n"


# == 1. positional after keyword ==============================================================
def test_positional_after_keyword_in_an_op_call():
    (d,) = diagnostics(model("x -> conv(8, stride=1, 3) -> output"))
    assert located([d]) == [(codes.SYNTAX, "positional argument follows keyword argument", 3, 28)]
    assert d.help == "move it before `stride=`, or give it by keyword: `kernel=3`"
    (secondary,) = [label for label in d.labels if not label.primary]
    assert (secondary.span.col, secondary.span.end_col, secondary.message) == (
        18, 26, "after this keyword argument")


def test_positional_after_keyword_stops_the_layer_without_a_cascade():
    # taken as the channels, 3 would leave `kernel` missing: only the order is reported
    (d,) = diagnostics(model("x -> conv(stride=1, 3) -> relu -> conv(4, 3) -> output"))
    assert located([d]) == [(codes.SYNTAX, "positional argument follows keyword argument", 3, 25)]
    assert d.help == "move it before `stride=`, or give it by keyword: `channels=3`"


def test_positional_after_keyword_in_a_block_call_and_a_multi_input_op():
    text = """
block Unit(c: int, k: int = 3) {
    input x
    x -> conv(c, k, padding=1) -> relu -> output
}
model M {
    input x: [3, 32, 32]
    a = x -> Unit(c=8, 5)
    y = x -> conv(8, 3, padding=1)
    concat(y, axis=0, y) -> output
}
"""
    diags = diagnostics(text)
    assert located(diags) == [
        (codes.SYNTAX, "positional argument follows keyword argument", 8, 24),
        (codes.SYNTAX, "positional argument follows keyword argument", 10, 23),
    ]
    assert diags[0].help == "move it before `c=`, or give it by keyword: `k=5`"
    assert diags[1].help == "move it before `axis=`: positional arguments come first"


def test_keywords_after_positionals_still_bind():
    m = nnspec.load(text=model("x -> conv(8, 3, stride=1, padding=1) -> output"))
    assert m.graph.nodes[0].attrs["kernel"] in (3, [3, 3], (3, 3))


RECIPE = """model MLP {
    input x: [4]
    x -> linear(16) -> relu -> linear(3) -> output
}
train MLP {
    data       iris
    loss       cross_entropy
"""


def recipe_diagnostics(*settings: str) -> list[Diagnostic]:
    text = RECIPE + "".join(f"    {s}\n" for s in settings) + "}\n"
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=text)
    return [d for d in info.value.diagnostics if d.severity == "error"]


def test_positional_after_keyword_in_a_recipe_call_and_setting():
    diags = recipe_diagnostics("schedule   step(factor=0.5, 10)", "early_stop monitor=val_loss, 5")
    assert located(diags) == [
        (codes.SYNTAX, "positional argument follows keyword argument", 8, 33),
        (codes.SYNTAX, "positional argument follows keyword argument", 9, 34),
    ]
    assert diags[0].help == "move it before `factor=`, or give it by keyword: `every=10`"
    assert diags[1].help == "move it before `monitor=`, or give it by keyword: `patience=5`"


def test_positional_after_keyword_in_a_train_header():
    """`train MLP(features=4, 3)` took 3 as `classes`; now the model's call follows the rule."""
    text = ("model MLP(features: int = 4, classes: int = 3) {\n    input x: [features]\n"
            "    x -> linear(classes) -> output\n}\n"
            "train MLP(features=4, 3) {\n    data iris\n    loss cross_entropy\n}\n")
    with pytest.raises(DiagnosticError) as info:
        load_recipe(text=text)
    errors = [d for d in info.value.diagnostics if d.severity == "error"]
    assert located(errors) == [(codes.SYNTAX, "positional argument follows keyword argument", 5, 23)]
    assert errors[0].help == "move it before `features=`, or give it by keyword: `classes=3`"


def test_recipe_calls_in_order_still_bind():
    text = RECIPE + "    schedule   step(10, factor=0.5)\n    early_stop 5, monitor=val_loss\n}\n"
    _, recipe = load_recipe(text=text)
    assert recipe.schedule.args == {"every": 10, "factor": 0.5}
    assert (recipe.early_stop.patience, recipe.early_stop.monitor) == (5, "val_loss")


# == 2. an argument given twice ===============================================================
def test_keyword_given_twice_is_the_one_error():
    (d,) = diagnostics(model("x -> conv(8, 3, stride=2, stride=1) -> relu -> conv(16, 3) -> output"))
    assert located([d]) == [(codes.DUPLICATE, "argument `stride` given twice", 3, 31)]
    (secondary,) = [label for label in d.labels if not label.primary]
    assert (secondary.span.col, secondary.message) == (21, "first given here")


def test_block_argument_given_twice_stops_the_block():
    text = """
block Unit(c: int, k: int = 3) {
    input x
    x -> conv(c, k, stride=2) -> output
}
model M {
    input x: [3, 32, 32]
    x -> Unit(8, k=3, k=4) -> output
}
"""
    # stride 2 on 32 - 3 does not divide: the body must not run with either k
    assert located(diagnostics(text)) == [(codes.DUPLICATE, "argument `k` given twice", 8, 23)]


def test_block_argument_by_position_and_by_keyword_is_an_error():
    text = """
block Unit(c: int, k: int = 3) {
    input x
    x -> conv(c, k, padding=1) -> output
}
model M {
    input x: [3, 32, 32]
    x -> Unit(8, 3, k=5) -> output
}
"""
    (d,) = diagnostics(text)
    assert located([d]) == [(codes.DUPLICATE, "argument `k` given twice", 8, 21)]


# == 3. a value used by a failing layer =======================================================
@pytest.mark.parametrize("line, code, col", [
    ("x -> conv(8, 3, padding=1) -> concat2(s) -> output", codes.UNKNOWN_OP, 35),
    ("x -> nope(k=s) -> output", codes.UNKNOWN_OP, 10),
    ("x -> conv(8, s) -> output", codes.BAD_ARG, 18),
])
def test_a_value_used_by_a_failing_layer_counts_as_used(line, code, col):
    diags = diagnostics(model("s = x -> conv(8, 3, padding=1)", line))
    assert [(d.code, d.span.line, d.span.col) for d in diags] == [(code, 4, col)]
    assert not [d for d in diags if d.code == codes.UNUSED]


def test_a_value_bound_twice_uses_what_it_names():
    diags = diagnostics(model("s = x -> conv(8, 3, padding=1)", "x = s -> relu", "x -> output"))
    assert located(diags) == [(codes.DUPLICATE, "`x` is already defined", 4, 5)]


def test_an_unused_value_is_still_a_warning():
    m = nnspec.load(text=model("s = x -> conv(8, 3)", "x -> relu -> output"))
    assert located(m.warnings) == [(codes.UNUSED, "value `s` is never used", 3, 5)]
    diags = diagnostics(model("s = x -> conv(8, 3)", "x -> nope -> output"))
    assert located(diags) == [(codes.UNUSED, "value `s` is never used", 3, 5),
                              (codes.UNKNOWN_OP, "unknown layer `nope`", 4, 10)]


# == 4. an unknown receptive field ============================================================
RESHAPED = ["x -> conv(8, 3) -> reshape([8, 900]) -> reshape([8, 30, 30]) -> conv(8, 3) -> output"]


def test_unknown_field_stays_unknown_and_the_total_is_unknown():
    m = nnspec.load(text=model(*RESHAPED))
    s = m.summary()
    assert [r.receptive_field for r in s.layers] == [3, None, None, None]
    assert s.receptive_field is None  # not 3, the largest field known before the reshape
    assert unknown_fields(m.graph) == {"reshape_1": "reshape_1", "reshape_2": "reshape_1",
                                       "conv_2": "reshape_1"}


def test_unknown_field_is_not_replaced_by_another_inputs_field():
    m = nnspec.load(text=model(
        "a = x -> conv(8, 3) -> reshape([8, 900]) -> reshape([8, 30, 30])",
        "b = x -> conv(8, 5, padding=1)",
        "a + b -> conv(8, 3) -> output"))
    fields = {r.name: r.receptive_field for r in m.summary().layers}
    assert fields == {"a.conv_1": 3, "a.reshape_1": None, "a.reshape_2": None, "b.conv_1": 5,
                      "add_1": None, "conv_1": None}
    assert m.summary().receptive_field is None


def test_absent_field_keeps_the_largest_known_total():
    # a global pool and a flatten leave no spatial axis: the field is absent, not unknown
    m = nnspec.load(text=model("x -> conv(8, 3) -> conv(8, 3) -> global_avgpool -> flatten "
                               "-> linear(4) -> output"))
    assert m.summary().receptive_field == 5
    assert unknown_fields(m.graph) == {}
    # as in examples/autoencoder.nn: a reshape of a vector has no field to lose
    m = nnspec.load(text=model("x -> conv(4, 3) -> flatten -> linear(64) -> reshape([1, 8, 8]) "
                               "-> conv(1, 3) -> output"))
    assert m.summary().receptive_field == 3


def test_unknown_field_is_null_in_json_and_dash_in_the_table(tmp_path):
    spec = tmp_path / "reshaped.nn"
    spec.write_text(model(*RESHAPED))
    data = json.loads(cli("check", spec, "--json").stdout)
    assert data["receptive_field"] is None
    assert [layer["receptive_field"] for layer in data["layers"]] == [3, None, None, None]
    text = cli("check", spec).stdout
    assert "receptive field: -\n" in text
    assert [line.split("│")[5].strip() for line in text.splitlines() if "│ reshape" in line] == ["-", "-"]


def test_assert_on_an_unknown_field_says_why():
    (d,) = diagnostics(model(*RESHAPED, "assert receptive_field >= 5"))
    assert located([d]) == [(codes.BAD_ASSERT,
                             "`receptive_field` is unknown: `reshape_1` rearranges the spatial axes", 4, 12)]
    assert (d.span.end_col - d.span.col) == len("receptive_field")
    (secondary,) = [label for label in d.labels if not label.primary]
    assert (secondary.span.line, secondary.span.col, secondary.message) == (
        3, 24, "`reshape` makes the receptive field unknown")


def test_assert_on_an_unknown_field_inside_a_block_names_the_outer_layer():
    text = """
block Head(c: int) {
    input x
    x -> conv(c, 3) -> output
    assert receptive_field >= 3
}
model M {
    input x: [3, 32, 32]
    x -> conv(8, 3) -> flatten(start=1) -> Head(8) -> output
}
"""
    (d,) = diagnostics(text)
    assert (d.code, d.span.line, d.span.col) == (codes.BAD_ASSERT, 5, 12)
    assert d.message == "`receptive_field` is unknown: `flatten_1` rearranges the spatial axes"


def test_assert_on_a_known_field_is_unchanged():
    m = nnspec.load(text=model("x -> conv(8, 3) -> conv(8, 3) -> output", "assert receptive_field >= 5"))
    assert m.summary().receptive_field == 5
    (d,) = diagnostics(model("x -> conv(8, 3) -> output", "assert receptive_field >= 5"))
    assert located([d]) == [(codes.ASSERTION, "assertion failed: receptive_field >= 5", 4, 12)]
    assert d.notes == ("receptive_field = 3",)


# == 5. the table into a file or a pipe =======================================================
def wide_spec(tmp_path: Path) -> Path:
    label = "a_very_long_layer_label_that_no_eighty_column_table_can_hold_whole"
    spec = tmp_path / "wide.nn"
    spec.write_text(model(f"x -> {label}: conv(8, 3) -> relu -> output"))
    return spec


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "│" in line or "┃" in line or "╇" in line]


def test_check_into_a_pipe_prints_the_table_whole(tmp_path):
    result = cli("check", wide_spec(tmp_path))
    assert result.exit_code == 0
    lines = table_lines(result.stdout)
    assert len(lines) == 2 + 3  # the header, its rule and three rows
    assert "…" not in result.stdout
    rows = [line for line in lines if "│" in line]
    assert [r.split("│")[0].strip() for r in rows] == [
        "x", "a_very_long_layer_label_that_no_eighty_column_table_can_hold_whole", "relu_1"]
    assert len({len(line) for line in lines}) == 1 and len(lines[0]) > 80  # nothing wrapped
    assert "receptive field" in lines[0]  # the header on one line, not wrapped in two


def test_check_of_resnet50_into_a_pipe_is_not_cut():
    result = cli("check", ROOT / "examples" / "resnet50.nn")
    assert result.exit_code == 0
    lines = table_lines(result.stdout)
    assert "…" not in result.stdout
    assert len({len(line) for line in lines}) == 1 and len(lines[0]) > 80
    names = [line.split("│")[0].strip() for line in lines if "│" in line]
    assert all(name.isidentifier() or "." in name for name in names)
    assert len(names) == len(json.loads(cli("check", ROOT / "examples" / "resnet50.nn", "--json").stdout)
                             ["layers"]) + 1  # the input row


def test_check_in_a_terminal_keeps_its_width(tmp_path, monkeypatch):
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=80, highlight=False, soft_wrap=True,
                       color_system=None)
    monkeypatch.setattr(cli_module, "out", terminal)
    result = cli("check", wide_spec(tmp_path))
    assert result.exit_code == 0
    lines = table_lines(screen.getvalue())
    assert lines and max(len(line) for line in lines) <= 80
    assert "…" in screen.getvalue()  # the terminal's width bounds the table, as before
