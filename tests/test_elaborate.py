"""The language's semantics: naming, expressions, branches, repetition, imports, asserts."""

from __future__ import annotations

import pytest

import nnspec
from nnspec.spec.diagnostics import DiagnosticError
from nnspec.spec.ir import Graph, Program

RESIDUAL = """
block Residual(c: int, stride: int = 1) {
    input x
    main = x -> conv(c, 3, stride=stride, padding=1, bias=false) -> batchnorm -> relu
             -> conv(c, 3, padding=1, bias=false) -> batchnorm
    skip = if stride != 1 or x.channels != c {
               x -> conv(c, 1, stride=stride, bias=false) -> batchnorm
           } else { x }
    main + skip -> relu -> output
}
"""


def load(text: str, **kw) -> nnspec.Model:
    return nnspec.load(text=text, **kw)


def errors(text: str, **kw) -> list:
    with pytest.raises(DiagnosticError) as info:
        load(text, **kw)
    return [d for d in info.value.diagnostics if d.severity == "error"]


def test_course_example_conv_shape_and_count():
    m = load("model M { input x: [3, 32, 32]\n x -> conv(10, 5, stride=1, padding=2) -> output }")
    (node,) = m.graph.nodes
    assert node.output.shape == (10, 32, 32)
    assert node.param_count == 760 == (5 * 5 * 3 + 1) * 10


def test_block_names_are_stable_module_paths():
    m = load(RESIDUAL + """
model Net {
    input x: [16, 8, 8]
    rounding floor
    x -> Residual(16) -> Residual(32, stride=2) -> stage: Residual(32) * 2 -> output
}""")
    names = [n.name for n in m.graph.nodes]
    assert names[:5] == ["residual_1.main.conv_1", "residual_1.main.batchnorm_1", "residual_1.main.relu_1",
                         "residual_1.main.conv_2", "residual_1.main.batchnorm_2"]
    assert "residual_1.skip.conv_1" not in names  # identity skip: no projection
    assert "residual_2.skip.conv_1" in names  # channels change: projection
    assert "stage.residual_1.add_1" in names and "stage.residual_2.relu_1" in names
    assert m.graph.outputs[0].type.shape == (32, 4, 4)
    assert m.graph.node("residual_2.skip.conv_1").params == {"weight": (32, 16, 1, 1)}


def test_expressions_over_parameters_and_input_facts():
    m = load("""
block Head(k: int) {
    input x
    x -> conv(x.channels * 2, k, padding=(k - 1) / 2) -> conv(x.shape[1] // 2, 1) -> output
}
model M(width: int = 6) { input x: [3, width * 2, 12]
    x -> Head(3) -> output }""")
    first, second = m.graph.nodes
    assert first.attrs["channels"] == 6 and first.attrs["padding"] == 1  # (3 - 1) / 2 is exact: an int
    assert second.attrs["channels"] == 6 and second.output.shape == (6, 12, 12)


def test_model_arguments_override_defaults():
    text = "model M(classes: int = 10) { input x: [4]\n x -> linear(classes) -> output }"
    assert load(text).graph.outputs[0].type.shape == (10,)
    assert load(text, args={"classes": 3}).graph.outputs[0].type.shape == (3,)
    assert load(text, args={"classes": 3}).graph.args == {"classes": 3}


def test_rounding_floor_is_recorded_in_the_ir():
    m = load("model M { input x: [3, 224, 224]\n rounding floor\n"
             " x -> conv(64, 7, stride=2, padding=3) -> maxpool(3, stride=2, padding=1) -> output }")
    conv, pool = m.graph.nodes
    assert conv.output.shape == (64, 112, 112) and pool.output.shape == (64, 56, 56)
    assert conv.attrs["rounding"] == "floor" and pool.attrs["rounding"] == "floor"


def test_rounding_ceil_per_pool():
    m = load("model M { input x: [1, 10, 10]\n x -> maxpool(3, stride=2, rounding=ceil) -> output }")
    assert m.graph.nodes[0].output.shape == (1, 5, 5)


def test_concat_several_outputs_and_tensor_parameters():
    m = load("""
block Fuse(skip: tensor) {
    input x
    concat(x -> conv(4, 1), skip) -> output
}
model M {
    input x: [3, 8, 8]
    features = x -> conv(8, 3, padding=same) -> relu
    logits = features -> Fuse(features) -> global_avgpool -> flatten -> linear(2)
    output logits, features
}""")
    assert [(o.name, o.type.shape) for o in m.graph.outputs] == [("logits", (2,)), ("features", (8, 8, 8))]
    concat = next(n for n in m.graph.nodes if n.op == "concat")
    assert concat.output.shape == (12, 8, 8)
    # layers of `name = chain` live under `name.`: the block instance is logits.fuse_1
    assert concat.name == "logits.fuse_1.concat_1"
    assert concat.inputs == ("logits.fuse_1.conv_1", "features.relu_1")


def test_if_else_chain_and_else_if():
    text = """
block B(mode: int) {
    input x
    if mode == 0 { x -> relu } else if mode == 1 { x -> tanh } else { x -> sigmoid } -> output
}
model M(mode: int = 0) { input x: [4]\n x -> B(mode) -> output }"""
    for mode, op in ((0, "relu"), (1, "tanh"), (2, "sigmoid")):
        assert [n.op for n in load(text, args={"mode": mode}).graph.nodes] == [op]


def test_chains_over_several_lines_and_comments():
    m = load("""
model M {
    input x: [2, 8, 8]   # two channels
    y = concat(
        x -> conv(3, 1),   # a 1x1 conv

        x -> conv(5, 3, padding=1)
    )
    # a comment between the steps
    y -> relu
      # another
      -> output
}""")
    assert m.graph.outputs[0].type.shape == (8, 8, 8)


def test_budget_assertions_pass_and_fail_with_numbers():
    ok = "model M { input x: [3, 32, 32]\n x -> conv(8, 3) -> conv(8, 3) -> output\n" \
         " assert params < 1K and macs < 2M\n assert receptive_field >= 5 }"
    assert load(ok).summary().receptive_field == 5
    (diag,) = errors("model M { input x: [3, 32, 32]\n x -> conv(8, 3) -> output\n assert params < 100 }")
    assert diag.code == "E4001" and "params = 224" in diag.notes[0]


def test_a_failed_layer_leaves_the_budget_assertions_silent():
    """The failed layer counts nothing, so `params == 20` would fail with params = 0: one
    mistake, one error. An assertion on arguments alone is still checked."""
    (diag,) = errors("model M(c: int = 3) { input x: [1, 8, 8]\n"
                     " x -> pad(9, mode=reflect) -> conv(2, 3) -> output\n"
                     " assert params == 20\n assert macs < 1 }")
    assert diag.code == "E2108"
    found = errors("model M(c: int = 3) { input x: [1, 8, 8]\n"
                   " x -> pad(9, mode=reflect) -> conv(2, 3) -> output\n assert c == 4 }")
    assert [d.code for d in found] == ["E2108", "E4001"]


def test_block_assertions_check_parameters():
    (diag,) = errors("block B(c: int) { input x\n assert c % 4 == 0\n x -> conv(c, 1) -> output }\n"
                     "model M { input x: [3, 4, 4]\n x -> B(6) -> output }")
    assert diag.code == "E4001" and diag.message == "assertion failed: c % 4 == 0"


def test_errors_are_collected_without_cascades():
    diags = errors("""
model M {
    input x: [3, 32, 32]
    a = x -> conv(16, 4, stride=3) -> relu -> conv(8, 3)
    b = x -> batchnrom
    c = x -> conv(-1, 3)
    a + b + c -> output
}""")
    assert [d.code for d in diags] == ["E2101", "E1001", "E1007"]
    assert diags[1].help == "did you mean `batchnorm`?"


def test_unknown_names_and_arguments_suggest():
    (diag,) = errors("model M { input x: [3, 8, 8]\n x -> conv(4, 3, strde=2) -> output }")
    assert diag.code == "E1004" and diag.help == "did you mean `stride`?"
    (diag,) = errors("model M(width: int = 3) { input x: [3, 8, 8]\n x -> conv(widht, 3) -> output }")
    assert diag.code == "E1007" and diag.message == "invalid value for `channels` of `conv`: `widht`"


def test_recursion_is_an_error():
    (diag,) = errors("block A { input x\n x -> A -> output }\nmodel M { input x: [1]\n x -> A -> output }")
    assert diag.code == "E1012" and diag.notes == ("A -> A", "in `a_1`, the `A` used at <string>:4:7")


def test_unused_value_is_a_warning():
    m = load("model M { input x: [4]\n h = x -> relu\n x -> tanh -> output }")
    assert [w.code for w in m.warnings] == ["W0001"]


def test_ir_round_trips_through_json():
    m = load(RESIDUAL + "model N { input x: [8, 16, 16]\n rounding floor\n"
             " x -> Residual(16, stride=2) -> global_avgpool -> flatten -> linear(3) -> output }")
    program = m.program()
    assert Program.model_validate_json(program.model_dump_json()) == program
    assert Graph.model_validate_json(m.graph.model_dump_json()) == m.graph
    node = m.graph.nodes[0]
    assert node.span.line == 4 and node.span.col >= 12


def test_imports_resolve_relative_and_reject_cycles_and_escapes(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.nn").write_text("block Twice { input x\n x -> relu -> relu -> output }\n")
    (tmp_path / "main.nn").write_text('import "lib/blocks.nn"\nmodel M { input x: [2]\n x -> Twice -> output }\n')
    assert [n.name for n in nnspec.load(tmp_path / "main.nn").graph.nodes] == ["twice_1.relu_1", "twice_1.relu_2"]

    (tmp_path / "a.nn").write_text('import "b.nn"\nmodel M { input x: [2]\n x -> relu -> output }\n')
    (tmp_path / "b.nn").write_text('import "a.nn"\n')
    with pytest.raises(DiagnosticError) as info:
        nnspec.load(tmp_path / "a.nn")
    assert [d.code for d in info.value.diagnostics] == ["E3002"]
    assert info.value.diagnostics[0].notes == ("a.nn -> b.nn -> a.nn",)

    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "m.nn").write_text('import "../lib/blocks.nn"\nmodel M { input x: [2]\n x -> relu -> output }\n')
    with pytest.raises(DiagnosticError) as info:
        nnspec.load(inner / "m.nn")
    assert [d.code for d in info.value.diagnostics] == ["E3003"]


def test_parameter_limit_is_configurable():
    text = "model M { input x: [100_000]\n x -> linear(10**6) -> output }"
    (diag,) = errors(text)
    assert diag.code == "E4002"
    assert diag.message == "`linear_1` has 100,001,000,000 parameters"
    assert load(text, max_params=10**15).graph.param_count == 100_000 * 10**6 + 10**6
    (diag,) = errors("model M { input x: [10]\n x -> linear(10**12) -> output }")
    assert diag.code == "E4002"


# == edge cases: each was a crash or a silent acceptance ========================================

def spec(body: str, params: str = "", shape: str = "1") -> str:
    """A model M with one input; it outputs the input unless `body` has an output."""
    out = "" if "-> output" in body else "\n    x -> output"
    return f"model M{params} {{\n    input x: [{shape}]\n    {body}{out}\n}}\n"


def located_errors(text: str) -> list[tuple[str, int, int, str]]:
    return [(d.code, d.span.line, d.span.col, d.message) for d in errors(text)]


@pytest.mark.parametrize("literal, value", [
    ('"a\\tb"', "a\tb"), ('"\\"q\\""', '"q"'), ('"back\\\\slash"', "back\\slash"), ('"two\\nlines"', "two\nlines"),
    ('"é\\t→"', "é\t→"), ('"plain"', "plain"), ('""', ""),
])
def test_string_escapes(literal, value):
    assert load(spec("", params=f"(s: str = {literal})")).graph.args["s"] == value


@pytest.mark.parametrize("literal, col", [('"\\x41"', 19), ('"\\u12"', 19), ('"ok \\q"', 22), ('"\\\\\\d"', 21)])
def test_unknown_string_escape_is_located(literal, col):
    (diag,) = errors(spec("", params=f"(s: str = {literal})"))
    assert diag.code == "E0001" and "escape" in diag.message
    assert (diag.span.line, diag.span.col, diag.span.end - diag.span.start) == (1, col, 2)


@pytest.mark.parametrize("expr, message", [
    ("round(1e308 * 10)", "number too large"),
    ("1e308 * 10", "number too large"),
    ("-1e308 - 1e308", "number too large"),
    ("(-8) ** 0.5", "the result is not a real number"),
    ('float("inf")', "number too large"),
    ('float("nan")', "not a number"),
    ("int(1e308 * 10)", "number too large"),
    ("2.0 ** 2000", "number too large"),
])
def test_infinite_nan_and_complex_results_are_errors(expr, message):
    (diag,) = errors(spec(f"assert {expr} > 0"))
    assert (diag.code, diag.message, diag.span.line) == ("E1008", message, 3)


def test_model_argument_from_the_command_line_must_be_finite():
    (diag,) = errors(spec("", params="(f: float = 1.0)"), args={"f": float("inf")})
    assert diag.code == "E1007" and "finite" in diag.labels[0].message


def test_float_parameter_too_large_for_a_float():
    # integers are bounded (|int| < 2^63, issue 13): the power is refused before the float
    (diag,) = errors(spec("", params="(f: float = 10 ** 200 * 10 ** 200)"))
    assert (diag.code, diag.message, diag.span.col) == ("E0008", "integer result out of range", 20)


def test_builtins_take_no_keyword_arguments():
    assert located_errors(spec("assert max(1, key=2) > 0")) == [
        ("E1004", 3, 19, "`max` takes no keyword arguments")]


@pytest.mark.parametrize("params, code, col", [("(a = b)", "E1002", 13), ("(a = 1 / 0)", "E1008", 17),
                                                ("(a: int = 2, b = a + c)", "E1002", 29)])
def test_errors_in_model_parameter_defaults(params, code, col):
    assert [(d.code, d.span.line, d.span.col) for d in errors(spec("", params=params))] == [(code, 1, col)]


def test_error_in_a_block_parameter_default():
    text = "block B(a = 1 / 0) {\n    input x\n    x -> relu -> output\n}\n" + spec("x -> B -> output")
    assert [(d.code, d.span.line, d.span.col) for d in errors(text)] == [("E1008", 1, 17)]


def test_deep_assert_expression_within_the_limit():
    load(spec("assert params" + " + 0" * 250 + " < 1"))


def test_mentions_is_iterative():
    from nnspec.spec import ast
    from nnspec.spec.elaborate import _mentions

    span = load(spec("")).graph.span
    expr = ast.Name(span=span, id="params")
    for _ in range(5_000):
        expr = ast.BinOp(span=span, op="+", left=expr, right=ast.Number(span=span, value=0, text="0"),
                         op_span=span)
    assert _mentions(expr, "params") and not _mentions(expr, "macs")


def chain_of_blocks(depth: int) -> str:
    blocks = "".join(f"block B{i} {{\n    input x\n    x -> B{i + 1} -> output\n}}\n" for i in range(depth))
    return blocks + f"block B{depth} {{\n    input x\n    x -> relu -> output\n}}\n" + spec("x -> B0 -> output")


def test_blocks_nested_deeply_but_within_the_limit():
    graph = load(chain_of_blocks(63)).graph
    assert len(graph.nodes) == 1 and graph.nodes[0].name.count(".") == 64


def test_blocks_nested_too_deeply():
    (diag,) = errors(chain_of_blocks(300))
    assert diag.code == "E1013"
    assert (diag.span.line, diag.span.col) == (4 * 63 + 3, 10)  # `x -> B64` inside block B63, the 64th
    assert diag.message == "blocks nested more than 64 levels deep"
    assert diag.notes == ("B0 -> B1 -> B2 -> ... -> B61 -> B62 -> B63 -> B64",)


def test_layer_limit_at_the_repeat_that_crosses_it():
    text = ("block B {\n    input x\n    x -> relu * 10000 -> output\n}\n"
            "model M {\n    input x: [4]\n    x -> B * 10000 -> output\n}\n")
    (diag,) = errors(text)
    assert (diag.code, diag.span.line, diag.span.col) == ("E4002", 7, 10)
    assert diag.message == "this repeat makes 100,000,000 layers"
    assert diag.labels[0].message == "10,000 layers × 10,000"
    assert diag.notes == ("limit: 1,000,000 layers per model",)


def test_layer_limit_without_a_repeat(monkeypatch):
    import importlib

    monkeypatch.setattr(importlib.import_module("nnspec.spec.elaborate"), "MAX_NODES", 3)
    (diag,) = errors(spec("y = x -> relu -> relu -> relu -> relu -> relu\n    y -> output"))
    assert (diag.code, diag.span.line, diag.span.col) == ("E4002", 3, 38)  # the fourth relu
    assert diag.message == "the model has more than 3 layers"


def test_tuple_model_arguments_round_trip_through_json():
    m = load(spec("", params="(k = (3, (5, 7)), n = [1, 2])"))
    assert m.graph.args == {"k": [3, [5, 7]], "n": [1, 2]}
    assert Program.model_validate_json(m.ir_json()) == m.program()


def test_recursion_error_is_a_located_diagnostic():
    """A last resort behind the nesting limits: run out of Python stack on purpose."""
    import inspect
    import sys

    from nnspec.spec.elaborate import elaborate
    from nnspec.spec.loader import load_text

    loaded = load_text(chain_of_blocks(40))

    def at_depth(frames: int):
        return at_depth(frames - 1) if frames else elaborate(loaded, "M")

    with pytest.raises(DiagnosticError) as info:
        at_depth(sys.getrecursionlimit() - len(inspect.stack(0)) - 120)  # leave 120 frames
    (diag,) = info.value.diagnostics
    assert diag.code == "E0004" and diag.message == "spec nested too deeply to elaborate"
    assert diag.span is not None and diag.span.line % 4 == 3  # a `x -> B...` statement of a block
