"""`nnspec check` on bad and extreme input: the right exit code (0 valid, 1 the spec has errors,
2 the command line is wrong), a located message where a location exists, never a traceback.

Most cases run in-process with typer's CliRunner; a handful run the real command in a
subprocess (each costs about half a second), including one that checks `check` imports
neither torch nor onnx.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnspec.cli import app

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "examples" / "lenet5.nn"
LOCATION = re.compile(r"--> (?P<file>[^\n]+?):(?P<line>\d+):(?P<col>\d+)\n")

VALID = "model M(n: int = 4) {\n    input x: [8]\n    x -> linear(n) -> relu -> output\n}\n"


def cli(*args: str | Path) -> tuple[int, str, str]:
    """Run `nnspec ARGS` in-process: (exit code, stdout, stderr); fail on any crash."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        crash = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
        pytest.fail(f"`nnspec {' '.join(map(str, args))}` crashed:\n{crash}")
    stdout, stderr = result.stdout, result.stderr
    assert "Traceback" not in stdout + stderr
    return result.exit_code, stdout, stderr


def run(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m nnspec ARGS` in a subprocess, from the repository root."""
    proc = subprocess.run([sys.executable, "-m", "nnspec", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def located(stderr: str, path: Path | None = None) -> tuple[int, int]:
    """The first `--> file:line:col` of the rendered diagnostics (its file is the one given)."""
    match = LOCATION.search(stderr)
    assert match, f"no file:line:col in:\n{stderr}"
    if path is not None:
        assert match["file"] == str(path), stderr
    return int(match["line"]), int(match["col"])


def codes(stderr: str) -> list[str]:
    return re.findall(r"^(?:error|warning)\[(\w+)\]", stderr, flags=re.M)


@pytest.fixture
def spec(tmp_path: Path):
    """Write a spec (text or bytes) to a file and return its path."""

    def write(content: str | bytes, name: str = "spec.nn") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return write


# == files that are not specs ==================================================================


def test_empty_file(spec):
    path = spec("")
    code, out, err = cli("check", path)
    assert code == 1
    assert codes(err) == ["E0006"]
    assert str(path) in err  # no location exists in an empty file; the message names it


def test_whitespace_and_comments_only(spec):
    code, _, err = cli("check", spec("\n\n   # nothing here\n\t\n"))
    assert code == 1
    assert codes(err) == ["E0006"]


def test_binary_file(spec):
    path = spec(bytes(range(256)) * 4)
    code, _, err = cli("check", path)
    assert code == 1
    assert codes(err) == ["E0003"]
    assert located(err, path) == (1, 1)  # the NUL byte at offset 0
    assert "binary" in err


def test_binary_file_with_a_late_nul(spec):
    path = spec(VALID.encode() + b"\x00\x01\x02")
    code, _, err = cli("check", path)
    assert code == 1
    assert codes(err) == ["E0003"]
    assert located(err, path) == (5, 1)


def test_not_utf8(spec):
    path = spec("model M {\n    input x: [1]\n    # caf\xe9\n    x -> output\n}\n".encode("latin-1"))
    code, _, err = cli("check", path)
    assert code == 1
    assert codes(err) == ["E0003"]
    assert located(err, path) == (3, 10)
    assert "0xe9" in err


def test_utf8_bom_is_accepted(spec):
    code, out, err = cli("check", spec("\ufeff" + VALID))
    assert code == 0, err


def test_crlf_line_endings_are_accepted(spec):
    code, out, err = cli("check", spec(VALID.replace("\n", "\r\n")))
    assert code == 0, err


def test_directory_given_as_the_file(tmp_path):
    code, _, err = cli("check", tmp_path)
    assert code == 1
    assert codes(err) == ["E0005"]
    assert str(tmp_path) in err and "directory" in err


def test_missing_file(tmp_path):
    path = tmp_path / "nope.nn"
    code, _, err = cli("check", path)
    assert code == 1
    assert codes(err) == ["E0005"]
    assert str(path) in err


def test_missing_file_json(tmp_path):
    code, out, _ = cli("check", tmp_path / "nope.nn", "--json")
    assert code == 1
    payload = json.loads(out)
    assert [d["code"] for d in payload["diagnostics"]] == ["E0005"]


# == broken and extreme specs ===================================================================


@pytest.mark.parametrize("fraction", [0.45, 0.55, 0.62, 0.7, 0.8, 0.9, 0.97])
def test_truncated_spec(spec, fraction):
    """LeNet-5 cut in the middle of its model: an error at a real place, never a crash."""
    text = LENET.read_text("utf-8")
    start = text.index("model ")
    end = text.index("\n}\n", start) + 1  # the model's closing brace (a recipe may follow)
    cut = start + int((end - start) * fraction)
    path = spec(text[:cut])
    code, _, err = cli("check", path)
    assert code == 1, err
    line, col = located(err, path)
    assert 1 <= line <= text[:cut].count("\n") + 1
    assert set(codes(err)) <= {"E0001", "E0002"}, err


def test_truncated_spec_points_at_the_unclosed_brace(spec):
    text = LENET.read_text("utf-8")
    cut = text.index("-> flatten")
    path = spec(text[:cut])
    code, _, err = cli("check", path)
    assert code == 1
    assert codes(err) == ["E0002"]
    brace_line = text[: text.index("{")].count("\n") + 1
    assert located(err, path)[0] == brace_line
    assert "never closed" in err


def test_ten_thousand_open_brackets_at_top_level(spec):
    path = spec("(" * 10_000)
    code, _, err = cli("check", path)
    assert code == 1
    assert codes(err) == ["E0001"]
    assert located(err, path) == (1, 1)


def test_ten_thousand_nested_brackets_in_an_expression(spec):
    path = spec("model M {\n    input x: [" + "(" * 10_000 + "1" + ")" * 10_000 + "]\n    x -> output\n}\n")
    code, _, err = cli("check", path)
    assert code == 1
    assert codes(err) == ["E0004"]
    line, col = located(err, path)
    assert line == 2 and col > 100  # at the bracket that goes past the limit


def test_ten_thousand_unclosed_brackets_in_a_model(spec):
    path = spec("model M {\n    input x: [1]\n    y = x -> " + "relu(" * 10_000 + "\n}\n")
    code, _, err = cli("check", path)
    assert code == 1
    assert codes(err) in (["E0004"], ["E0001"], ["E0002"])
    assert located(err, path)[0] == 3


@pytest.mark.parametrize("expression", [
    " + ".join(["1"] * 5_000),
    "- " * 5_000 + "1",
    "not " * 5_000 + "true",
    "1" + " * 1" * 5_000,
])
def test_very_deep_expression(spec, expression):
    path = spec(f"model M {{\n    input x: [1]\n    assert {expression} > 0\n    x -> output\n}}\n")
    code, _, err = cli("check", path)
    assert code == 1
    assert codes(err) == ["E0004"], err
    located(err, path)


def test_very_deep_expression_is_located_at_the_expression(spec):
    path = spec("model M {\n    input x: [1]\n    assert " + " + ".join(["1"] * 5_000) + " > 0\n    x -> output\n}\n")
    _, _, err = cli("check", path)
    line, col = located(err, path)
    assert line == 3
    # at the innermost operator past the limit: the 256th `+` (each term is `1 + `, 4 characters)
    assert col == len("    assert ") + 256 * 4 - 1


def test_long_else_if_chain_is_located_at_the_innermost_if(spec):
    path = spec("model M {\n    input x: [1]\n    y = " + "if false { x } else " * 1_500 + "x\n    y -> output\n}\n")
    code, _, err = cli("check", path)
    assert code == 1
    assert codes(err) == ["E0004"], err
    line, col = located(err, path)
    assert line == 3
    # the outermost of the last 256 `if`s, the first to nest 257 levels deep counting the
    # innermost values (each `if false { x } else ` is 20 characters)
    assert col == len("    y = ") + (1_500 - 256) * 20 + 1


def test_error_in_a_model_parameter_default(spec):
    path = spec("model M(a = b) {\n    input x: [1]\n    x -> output\n}\n")
    code, _, err = cli("check", path)
    assert code == 1
    assert codes(err) == ["E1002"]
    assert located(err, path) == (1, 13)


def test_moderately_deep_expression_works(spec):
    """Depth that real specs might reach (a sum of 200 terms) compiles."""
    path = spec("model M {\n    input x: [" + " + ".join(["1"] * 200) + "]\n    x -> output\n}\n")
    code, out, err = cli("check", path)
    assert code == 0, err
    assert "[200]" in out


def ten_thousand_layers() -> str:
    """10,000 layers: 2,500 conv/batchnorm/relu/residual-add units, one per line."""
    lines = ["model Deep {", "    input x: [8, 16, 16]", "    h0 = x -> conv(8, 3, padding=1)"]
    for i in range(1, 2_500):
        lines.append(f"    m{i} = h{i - 1} -> conv(8, 3, padding=1) -> batchnorm -> relu")
        lines.append(f"    h{i} = m{i} + h{i - 1}")
    lines += ["    h2499 -> global_avgpool -> flatten -> linear(10) -> output", "}", ""]
    return "\n".join(lines)


def test_ten_thousand_layer_chain_on_one_line(spec):
    path = spec("model M {\n    input x: [4, 8, 8]\n    x" + " -> relu" * 10_000 + " -> output\n}\n")
    code, out, err = cli("check", path, "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert len(payload["layers"]) == 10_000
    assert payload["layers"][-1]["name"] == "relu_10000"
    assert payload["outputs"][0]["shape"] == [4, 8, 8]


def test_ten_thousand_layer_chain_with_continuation_lines(spec):
    path = spec("model M {\n    input x: [4, 8, 8]\n    x\n" + "      -> leaky_relu(0.1)  # step\n" * 10_000
                + "      -> output\n}\n")
    code, out, err = cli("check", path, "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert len(payload["layers"]) == 10_000
    assert payload["outputs"][0]["shape"] == [4, 8, 8]


def test_ten_thousand_layers_with_residuals(spec):
    path = spec(ten_thousand_layers())
    code, out, err = cli("check", path, "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert len(payload["layers"]) == 1 + 4 * 2_499 + 3
    assert payload["outputs"][0]["shape"] == [10]


def test_ten_thousand_repeats(spec):
    path = spec("block B {\n    input x\n    x -> relu -> output\n}\n"
                "model M {\n    input x: [4]\n    x -> B * 10000 -> output\n}\n")
    code, out, err = cli("check", path, "--json")
    assert code == 0, err
    assert len(json.loads(out)["layers"]) == 10_000


# == limits =====================================================================================

HUGE_LINEAR = "model Huge {\n    input x: [10]\n    x -> linear(10**15) -> output\n}\n"
BIG_LINEAR = "model Big {\n    input x: [1000000]\n    x -> linear(100000) -> output\n}\n"  # 1e11 params


def test_parameter_limit(spec):
    path = spec(HUGE_LINEAR)
    code, _, err = cli("check", path)
    assert code == 1
    assert "E4002" in codes(err)
    assert located(err, path) == (3, 10)
    assert "--max-params" in err


def test_parameter_limit_json(spec):
    code, out, _ = cli("check", spec(HUGE_LINEAR), "--json")
    assert code == 1
    diagnostics = json.loads(out)["diagnostics"]
    assert diagnostics[0]["code"] == "E4002"
    assert (diagnostics[0]["line"], diagnostics[0]["col"]) == (3, 10)


def test_raised_parameter_limit_passes(spec):
    """100G parameters: over the default limit (10G), accepted with --max-params raised."""
    path = spec(BIG_LINEAR)
    code, _, err = cli("check", path)
    assert code == 1 and "E4002" in codes(err)
    code, out, err = cli("check", path, "--max-params", str(10**12), "--json")
    assert code == 0, err
    assert json.loads(out)["total_params"] == 10**6 * 10**5 + 10**5


def test_raised_parameter_limit_then_the_tensor_limit(spec):
    """linear(10**15) with the parameter limit raised still fails: its output has 10**15
    elements, over the per-tensor limit (2**31), which --max-params does not raise."""
    path = spec(HUGE_LINEAR)
    code, _, err = cli("check", path, "--max-params", str(10**18))
    assert code == 1
    assert codes(err) == ["E4002"]
    assert "elements" in err
    assert located(err, path) == (3, 10)


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_bad_max_params_is_a_usage_error(spec, value):
    code, _, err = cli("check", spec(VALID), "--max-params", value)
    assert code == 2
    assert "--max-params" in err


# == command line ===============================================================================


def test_unknown_model_lists_the_models(spec):
    path = spec(VALID.replace("model M", "model Alpha") + VALID.replace("model M", "model Beta"))
    code, _, err = cli("check", path, "--model", "Gamma")
    assert code == 1
    assert codes(err) == ["E0006"]
    assert "Alpha" in err and "Beta" in err


def test_unknown_model_suggests_the_closest(spec):
    code, _, err = cli("check", spec(VALID.replace("model M", "model LeNet5")), "--model", "LeNet6")
    assert code == 1
    assert "LeNet5" in err


@pytest.mark.parametrize("assignment", ["foo", "=3", "1x=3", "a b=3", ""])
def test_malformed_set_is_a_usage_error(spec, assignment):
    code, out, err = cli("check", spec(VALID), "--set", assignment)
    assert code == 2
    assert "--set" in err
    assert out == ""


def test_set_of_an_unknown_parameter_is_located(spec):
    path = spec(VALID)
    code, _, err = cli("check", path, "--set", "m=3")
    assert code == 1
    assert codes(err) == ["E1004"]
    assert located(err, path) == (1, 7)


def test_set_with_a_wrong_type(spec):
    code, _, err = cli("check", spec(VALID), "--set", "n=four")
    assert code == 1
    assert codes(err) == ["E1007"]


def test_set_works(spec):
    code, out, err = cli("check", spec(VALID), "--set", "n=7", "--json")
    assert code == 0, err
    assert json.loads(out)["outputs"][0]["shape"] == [7]


def test_set_that_no_model_declares_is_an_error(spec):
    path = spec(VALID.replace("model M", "model Alpha") + VALID.replace("model M", "model Beta"))
    code, out, err = cli("check", path, "--set", "typo=3")
    assert code == 2
    assert out == ""
    assert "`typo`" in err and "Alpha(n)" in err and "Beta(n)" in err


def test_set_of_one_models_parameter_with_several_models(spec):
    path = spec(VALID.replace("model M", "model Alpha")
                + VALID.replace("model M(n: int = 4)", "model Beta(m: int = 4)").replace("linear(n)", "linear(m)"))
    code, out, err = cli("check", path, "--set", "m=3", "--json")
    assert code == 0, err
    assert [model["outputs"][0]["shape"] for model in json.loads(out)] == [[4], [3]]


@pytest.mark.parametrize("args", [["--bogus"], ["-z"], ["--json=maybe"], ["--model"]])
def test_unknown_or_incomplete_option_is_a_usage_error(spec, args):
    code, out, err = cli("check", spec(VALID), *args)
    assert code == 2
    assert out == ""


def test_missing_file_argument_is_a_usage_error():
    code, _, err = cli("check")
    assert code == 2
    assert "Missing argument 'FILE'" in err


@pytest.mark.parametrize("command", ["check", "compile", "train"])
def test_usage_line_names_the_file_argument(command):
    code, _, err = cli(command)
    assert code == 2
    assert f"nnspec {command} [OPTIONS] {{FILE}}" in err


@pytest.mark.parametrize("text, col", [('import "\\x"\n', 9),
                                       ('model M(s: str = "ok\\u12") {\n    input x: [1]\n    x -> output\n}\n', 21)])
def test_bad_string_escape(spec, text, col):
    path = spec(text)
    code, _, err = cli("check", path)
    assert code == 1
    assert codes(err) == ["E0001"]
    assert located(err, path) == (1, col)
    assert "escape" in err


def test_non_ascii_strings_are_kept(spec):
    code, out, err = cli("check", spec('model M(s: str = "é\\t→") {\n    input x: [1]\n    x -> output\n}\n'))
    assert code == 0, err


@pytest.mark.parametrize("expression", ["round(1e308 * 10)", "1e308 * 10", "(-8) ** 0.5", "int(1e308 * 10)"])
def test_infinite_or_complex_numbers(spec, expression):
    path = spec(f"model M {{\n    input x: [1]\n    assert {expression} > 0\n    x -> output\n}}\n")
    code, _, err = cli("check", path)
    assert code == 1
    assert codes(err) == ["E1008"]
    assert located(err, path)[0] == 3


def test_builtin_with_a_keyword(spec):
    path = spec("model M {\n    input x: [1]\n    assert max(1, key=2) > 0\n    x -> output\n}\n")
    code, _, err = cli("check", path)
    assert code == 1
    assert codes(err) == ["E1004"]
    assert located(err, path) == (3, 19)


def test_blocks_nested_too_deeply(spec):
    path = spec("".join(f"block B{i} {{\n    input x\n    x -> B{i + 1} -> output\n}}\n" for i in range(300))
                + "block B300 {\n    input x\n    x -> relu -> output\n}\n"
                + "model M {\n    input x: [1]\n    x -> B0 -> output\n}\n")
    code, _, err = cli("check", path)
    assert code == 1
    assert codes(err) == ["E1013"]
    assert located(err, path) == (255, 10)
    assert "B0 -> B1 -> B2 -> ... -> B61 -> B62 -> B63 -> B64" in err


def test_a_hundred_million_layers_are_refused_quickly(spec):
    path = spec("block B {\n    input x\n    x -> relu * 10000 -> output\n}\n"
                "model M {\n    input x: [4]\n    x -> B * 10000 -> output\n}\n")
    code, _, err = cli("check", path)
    assert code == 1
    assert codes(err) == ["E4002"]
    assert located(err, path) == (7, 10)
    assert "100,000,000 layers" in err and "1,000,000" in err


@pytest.mark.parametrize("text", ["(\n", "model M {\n    input x: [1]\n    output x y\n}\n",
                                  "model M {\n    input x: [1]\n    x -> conv(6 5) -> output\n}\n",
                                  "train M {\n    epochs 10 20\n}\n"])
def test_no_chain_help_outside_a_body(spec, text):
    code, _, err = cli("check", spec(text))
    assert code == 1
    assert codes(err) == ["E0001"]
    assert "join chain steps" not in err


def test_chain_help_in_a_body(spec):
    code, _, err = cli("check", spec("model M {\n    input x: [1]\n    x -> relu tanh -> output\n}\n"))
    assert code == 1
    assert "help: join chain steps with `->`" in err


def test_unknown_command_is_a_usage_error():
    code, _, _ = cli("compile-everything")
    assert code == 2


# == JSON output ================================================================================


def test_json_output_has_the_documented_keys():
    code, out, err = cli("check", LENET, "--json")
    assert code == 0, err
    payload = json.loads(out)
    for key in ("model", "inputs", "outputs", "layers", "total_params", "trainable_params", "buffers",
                "total_macs"):
        assert key in payload, key
    assert payload["model"] == "LeNet5"
    assert payload["inputs"] == [{"name": "x", "shape": [1, 32, 32], "dtype": "float32"}]
    for item in payload["inputs"] + payload["outputs"]:
        assert {"name", "shape"} <= item.keys()
    assert payload["outputs"][0]["shape"] == [10]
    for layer in payload["layers"]:
        assert {"name", "op", "output_shape", "params", "macs", "receptive_field"} <= layer.keys(), layer
    assert [layer["name"] for layer in payload["layers"]][:3] == ["c1", "tanh_1", "s2"]
    assert payload["total_params"] == sum(layer["params"] for layer in payload["layers"]) == 61_706
    assert payload["trainable_params"] == 61_706
    assert payload["buffers"] == 0
    assert payload["total_macs"] == sum(layer["macs"] for layer in payload["layers"])
    assert "diagnostics" not in payload
    assert err == ""


def test_json_output_of_an_invalid_spec_is_still_json(spec):
    code, out, err = cli("check", spec("model M {\n    input x: [1, 32, 32]\n    x -> conv(6, 4, stride=3)"
                                       " -> output\n}\n"), "--json")
    assert code == 1
    payload = json.loads(out)
    (diag,) = payload["diagnostics"]
    assert diag["code"] == "E2101"
    assert (diag["line"], diag["col"]) == (3, 10)


# == the real command, in a subprocess ==========================================================


def test_subprocess_valid_spec():
    proc = run("check", "examples/lenet5.nn")
    assert proc.returncode == 0, proc.stderr
    assert "61,706" in proc.stdout


def test_subprocess_errors(tmp_path):
    binary = tmp_path / "model.onnx"
    binary.write_bytes(b"\x08\x07\x12\x00\x00\x01" * 50)
    proc = run("check", binary)
    assert proc.returncode == 1
    assert "E0003" in proc.stderr and f"{binary}:1:" in proc.stderr
    proc = run("check", tmp_path / "missing.nn")
    assert proc.returncode == 1
    assert "E0005" in proc.stderr


def test_subprocess_usage_errors():
    proc = run("check", "examples/lenet5.nn", "--no-such-option")
    assert proc.returncode == 2
    assert proc.stdout == ""


def test_check_imports_neither_torch_nor_onnx():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from nnspec.cli import app\n"
        "result = CliRunner().invoke(app, ['check', 'examples/lenet5.nn'])\n"
        "assert result.exit_code == 0, result.output\n"
        "result = CliRunner().invoke(app, ['check', 'examples/lenet5.nn', '--json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout
