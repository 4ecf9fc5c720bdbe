"""Axes family: transpose, permute, channel_shuffle (shapes, values, lowerings, located errors)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import cli

import nnspec
from nnspec.compiler.onnx_build import build_onnx
from nnspec.compiler.torch_build import build_module
from nnspec.spec import codes
from nnspec.spec.diagnostics import DiagnosticError
from nnspec.spec.ir import TensorType
from nnspec.spec.ops import GLOBAL, REGISTRY


def op(kind: str, **attrs):
    return REGISTRY[kind].model_validate(attrs)


def spec(layers: str, shape: str = "[4, 3, 5]") -> str:
    return f"model M {{\n    input x: {shape}\n    x -> {layers} -> output\n}}\n"


def load(layers: str, shape: str = "[4, 3, 5]") -> nnspec.Model:
    return nnspec.load(text=spec(layers, shape))


def run_torch(model: nnspec.Model, x: np.ndarray) -> np.ndarray:
    module = build_module(model.graph).eval()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


X = np.random.default_rng(0).standard_normal((2, 4, 3, 5)).astype(np.float32)


@pytest.mark.parametrize(
    ("layers", "perm", "shape"),
    [
        ("transpose(1, 2)", (0, 2, 1), (4, 5, 3)),
        ("transpose(0, -1)", (2, 1, 0), (5, 3, 4)),
        ("transpose(height, width)", (0, 2, 1), (4, 5, 3)),
        ("permute(1, 2, 0)", (1, 2, 0), (3, 5, 4)),
        ("permute(0, 2, 1)", (0, 2, 1), (4, 5, 3)),
        ("permute(-1, 0, 1)", (2, 0, 1), (5, 4, 3)),
        ("permute(height, width, channels)", (1, 2, 0), (3, 5, 4)),
    ],
)
def test_shapes_and_values_equal_numpy(layers, perm, shape):
    model = load(layers)
    assert model.graph.outputs[0].type.shape == shape
    expected = np.transpose(X, (0, *(a + 1 for a in perm)))
    np.testing.assert_array_equal(run_torch(model, X), expected)  # a reordering: exact
    (node,) = model.graph.nodes
    assert node.macs == 0 and node.param_count == 0


def test_onnx_is_one_transpose_with_the_batch_axis_first():
    import onnxruntime as ort

    model = load("permute(1, 2, 0)")
    proto = build_onnx(model.graph, {})
    nodes = [n for n in proto.graph.node if n.op_type != "Identity"]  # the output name
    assert [n.op_type for n in nodes] == ["Transpose"]
    perm = next(a.ints for a in nodes[0].attribute if a.name == "perm")
    assert list(perm) == [0, 2, 3, 1]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: X})
    np.testing.assert_array_equal(out, np.transpose(X, (0, 2, 3, 1)))


def test_channel_shuffle_equals_torch_and_the_formula():
    import onnxruntime as ort

    x = np.random.default_rng(1).standard_normal((2, 6, 3, 3)).astype(np.float32)
    model = load("channel_shuffle(3)", "[6, 3, 3]")
    ours = run_torch(model, x)
    theirs = torch.nn.ChannelShuffle(3)(torch.from_numpy(x)).numpy()
    formula = x.reshape(2, 3, 2, 3, 3).transpose(0, 2, 1, 3, 4).reshape(2, 6, 3, 3)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours, formula)
    # out channel i·g + j = in channel j·(C/g) + i
    np.testing.assert_array_equal(ours[:, [0, 1, 2, 3, 4, 5]], x[:, [0, 2, 4, 1, 3, 5]])
    proto = build_onnx(model.graph, {})
    assert [n.op_type for n in proto.graph.node if n.op_type not in ("Constant", "Identity")] == [
        "Reshape", "Transpose", "Reshape"]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_array_equal(out, formula)


def test_receptive_field_kept_unless_channels_move():
    x = [TensorType(shape=(4, 3, 5))]
    assert op("permute", d0=0, d1=2, d2=1).receptive_step(x) is None
    assert op("transpose", a=1, b=2).receptive_step(x) is None
    assert op("channel_shuffle", groups=2).receptive_step(x) is None
    assert op("permute", d0=1, d1=2, d2=0).receptive_step(x) == GLOBAL
    kept = nnspec.load(text=spec("conv(4, 3, padding=1) -> transpose(1, 2) -> conv(4, 3, padding=1)"))
    assert kept.summary().receptive_field == 5
    lost = nnspec.load(text=spec("conv(4, 3, padding=1) -> permute(1, 2, 0) -> conv(4, 3, padding=1)"))
    assert lost.summary().receptive_field is None


def test_standalone_torch_source_with_permute_runs(tmp_path: Path):
    path = tmp_path / "m.nn"
    path.write_text(spec("conv(4, 3, padding=1) -> permute(1, 2, 0) -> channel_shuffle(3)"))
    result = cli("compile", path, "--emit", "torch")
    assert result.exit_code == 0, result.stdout + result.stderr
    source = tmp_path / "m_model.py"
    source.write_text(result.stdout)
    module_spec = importlib.util.spec_from_file_location("m_model", source)
    assert module_spec is not None and module_spec.loader is not None
    standalone = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(standalone)
    compiled = build_module(nnspec.load(path).graph).eval()
    model = standalone.M().eval()
    model.load_state_dict(compiled.state_dict(), strict=True)
    with torch.no_grad():
        out = model(torch.from_numpy(X))
        torch.testing.assert_close(out, compiled(torch.from_numpy(X)), rtol=0, atol=0)
    assert out.shape == (2, 3, 5, 4)


@pytest.mark.parametrize(
    ("layers", "code", "message", "column"),
    [
        ("permute(1, 2, 3)", codes.ARGUMENT_SHAPE,
         "permute d2=3 is out of range for an input of rank 3", 24),
        ("permute(1, 1, 0)", codes.BAD_ARG, "permute names axis 1 twice: d0=1 and d1=1", 21),
        ("permute(1, 0)", codes.ARGUMENT_SHAPE,
         "permute has 2 axes but the input [4, 3, 5] has rank 3", 10),
        ("permute(1, 2, 0, 3)", codes.ARGUMENT_SHAPE,
         "permute has 4 axes but the input [4, 3, 5] has rank 3", 27),
        ("permute(length, 1, 0)", codes.ARGUMENT_SHAPE,
         "permute d0=length: an input of rank 3 has no length axis", 18),
        ("transpose(1, 1)", codes.BAD_ARG,
         "transpose swaps an axis with itself: a=1 and b=1 are both axis 1", 23),
        ("transpose(0, 3)", codes.ARGUMENT_SHAPE,
         "transpose b=3 is out of range for an input of rank 3", 23),
        ("transpose(-1, width)", codes.BAD_ARG,
         "transpose swaps an axis with itself: a=-1 and b=width are both axis 2", 24),
        ("channel_shuffle(3)", codes.DIVISIBLE, "channels (4) are not divisible by groups (3)", 26),
    ],
)
def test_argument_errors_are_located(layers, code, message, column):
    """The column of the argument at fault (the layer starts at column 10), or of the call."""
    with pytest.raises(DiagnosticError) as info:
        load(layers)
    (diag,) = [d for d in info.value.diagnostics if d.severity == "error"]
    assert diag.code == code
    assert diag.message == message
    assert diag.span.line == 3 and diag.span.col == column


def test_a_spec_with_the_ops_checks_and_verifies(tmp_path: Path):
    path = tmp_path / "axes.nn"
    path.write_text(spec("conv(6, 3, padding=1) -> channel_shuffle(2) -> transpose(1, 2) "
                         "-> permute(1, 2, 0) -> flatten -> linear(3)"))
    checked = cli("check", path)
    assert checked.exit_code == 0, checked.stdout + checked.stderr
    verified = cli("verify", path, "--checks", "structure,gradient,equivalence")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
