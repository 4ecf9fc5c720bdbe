"""ONNX lowering details the registry sweep (verify/sweep.py, test_sweep.py) does not see.

The sweep exports every op × its samples alone and checks onnxruntime against torch, the
initializer sizes and strict shape inference; here: which ONNX nodes a branch emits, and
the message of a missing lowering.
"""

from __future__ import annotations

import pytest

from nnspec.spec.ir import TensorType
from nnspec.spec.ops import REGISTRY, Op

onnx = pytest.importorskip("onnx")

from nnspec.compiler.onnx_build import OnnxGraph, build_onnx  # noqa: E402
from nnspec.verify.sweep import one_node_graph  # noqa: E402


def non_constant_ops(model) -> list[str]:
    return [n.op_type for n in model.graph.node if n.op_type not in ("Constant", "Identity")]


def test_ceil_pool_is_an_explicit_pad_then_the_pool():
    op = REGISTRY["maxpool"].model_validate(
        {"kernel": 2, "stride": 4, "dilation": 4, "rounding": "ceil"})
    model = build_onnx(one_node_graph(op, [TensorType(shape=(2, 6))]), {})
    assert non_constant_ops(model)[:2] == ["Pad", "MaxPool"]


def test_floor_pool_is_one_node():
    op = REGISTRY["maxpool"].model_validate({"kernel": 2})
    model = build_onnx(one_node_graph(op, [TensorType(shape=(3, 8, 8))]), {})
    assert non_constant_ops(model) == ["MaxPool"]


def test_a_missing_lowering_is_reported():
    class Nothing(Op):
        kind = "nothing"

    with pytest.raises(NotImplementedError, match="`nothing` has no ONNX lowering"):
        Nothing().to_onnx(OnnxGraph(), ["x"], [TensorType(shape=(3,))], "layer", {})
