"""Elementwise arithmetic between tensors (spec/ops/arithmetic.py): numpy's broadcasting rule
over the sample axes, numbers on either side, and the spec syntax that makes them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnspec
from nnspec.spec import codes
from nnspec.spec.ir import TensorType
from nnspec.spec.ops import REGISTRY, ShapeError
from nnspec.spec.ops.arithmetic import aligned, broadcast_conflict, broadcast_shape

shapes = st.lists(st.sampled_from([1, 2, 3]), min_size=1, max_size=4).map(tuple)


@settings(max_examples=300, deadline=None)
@given(st.lists(shapes, min_size=2, max_size=3))
def test_broadcasting_is_numpys_rule(operands):
    try:
        expected = np.broadcast_shapes(*operands)
    except ValueError:
        expected = None
    types = [TensorType(shape=s) for s in operands]
    if expected is None:
        assert broadcast_conflict(operands) is not None
        with pytest.raises(ShapeError) as info:
            REGISTRY["add"]().infer(types)
        assert info.value.code == codes.ADD_MISMATCH and info.value.operand is not None
    else:
        assert broadcast_conflict(operands) is None
        assert broadcast_shape(operands) == expected
        assert REGISTRY["mul"]().infer(types).shape == expected


@settings(max_examples=100, deadline=None)
@given(shapes, shapes)
def test_reference_broadcasts_each_sample_not_the_batch(a, b):
    """The batch axis stays first: a lower-rank sample gains its size-1 axes after it."""
    if broadcast_conflict([a, b]) is not None:
        return
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(2, *a)), rng.normal(size=(2, *b))
    out = REGISTRY["sub"]().reference([xa, xb], {})
    for i in range(2):
        np.testing.assert_array_equal(out[i], xa[i] - xb[i])


def test_aligned_shapes_line_up_on_the_last_axis():
    assert aligned([(64, 56, 56), (56, 1)]) == ["[64, 56, 56]", "    [56,  1]"]
    assert aligned([(8,), (3, 8)]) == ["   [8]", "[3, 8]"]


def test_macs_count_one_multiply_per_element_for_products_only():
    x, s = TensorType(shape=(8, 4, 4)), TensorType(shape=(8, 1, 1))
    out = TensorType(shape=(8, 4, 4))
    assert REGISTRY["mul"]().macs([x, s], out) == 128
    assert REGISTRY["div"]().macs([x, s], out) == 128
    assert REGISTRY["mul"](scalar=0.5).macs([x], out) == 128
    assert REGISTRY["add"]().macs([x, s], out) == 0
    assert REGISTRY["sub"](scalar=1.0).macs([x], out) == 0


SPEC = """
model M {
    input x: [8, 4, 4]
    s = x -> global_avgpool -> conv(2, 1) -> relu -> conv(8, 1) -> sigmoid
    y = x * s
    z = 1 - y * 0.5
    w = -z / 4
    v = 2 / (w + x - 3)
    v -> output
}
"""


def test_spec_arithmetic_becomes_elementwise_layers(tmp_path):
    path = tmp_path / "m.nn"
    path.write_text(SPEC)
    graph = nnspec.load(path).graph
    ops = [(n.name, n.op, {k: v for k, v in n.attrs.items() if v not in (None, False)})
           for n in graph.nodes if n.op in ("add", "sub", "mul", "div")]
    assert ops == [
        ("y.mul_1", "mul", {}),
        ("z.mul_1", "mul", {"scalar": 0.5}),
        ("z.sub_1", "sub", {"scalar": 1.0, "scalar_first": True}),
        ("w.mul_1", "mul", {"scalar": -1.0}),
        ("w.div_1", "div", {"scalar": 4.0}),
        ("v.add_1", "add", {}),
        ("v.sub_1", "sub", {"scalar": 3.0}),
        ("v.div_1", "div", {"scalar": 2.0, "scalar_first": True}),
    ]
    assert graph.node("y.mul_1").inputs == ("x", "s.sigmoid_1")
    assert graph.node("y.mul_1").output.shape == (8, 4, 4)
    assert graph.node("y.mul_1").macs == 128


def test_torch_and_onnx_agree_with_numpy_on_broadcast_arithmetic(tmp_path):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from nnspec.compiler.onnx_build import build_onnx
    from nnspec.compiler.torch_build import build_module

    path = tmp_path / "m.nn"
    path.write_text("""
model Rows {
    input x: [5, 6]
    b = x -> global_avgpool -> flatten -> linear(6)
    y = (x + b) * x -> sub(b)
    1 - y / 2 -> output
}
""")
    graph = nnspec.load(path).graph
    torch.manual_seed(0)
    module = build_module(graph).eval()
    x = torch.randn(3, 5, 6)
    with torch.no_grad():
        got = module(x).numpy()
        b = module.b.linear_1(x.mean(dim=2)).numpy()
    xs = x.numpy()
    y = (xs + b[:, None, :]) * xs - b[:, None, :]
    np.testing.assert_allclose(got, 1 - y / 2, rtol=1e-5, atol=1e-6)
    weights = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    model = build_onnx(graph, weights)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"x": xs})
    np.testing.assert_allclose(onnx_out, got, rtol=1e-5, atol=1e-6)


def test_a_scalar_op_takes_one_tensor():
    with pytest.raises(ShapeError) as info:
        REGISTRY["mul"](scalar=2.0).infer([TensorType(shape=(3,)), TensorType(shape=(3,))])
    assert info.value.code == codes.BAD_ARG and "one tensor" in info.value.message
    with pytest.raises(ShapeError) as info:
        REGISTRY["sub"]().infer([TensorType(shape=(3,))] * 3)
    assert "two tensors, got 3" in info.value.message
    with pytest.raises(ShapeError) as info:
        REGISTRY["add"](scalar=1.0).infer([TensorType(shape=(3,), dtype="int64")])
    assert info.value.code == codes.DTYPE
