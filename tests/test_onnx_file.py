"""Writing an .onnx file by streaming (compiler/onnx_build.OnnxFile): the file parses to
exactly the ModelProto that is built in memory, passes the full checker, runs in
onnxruntime, and a broken graph is caught by the check of the skeleton."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import nnspec  # noqa: E402
from nnspec.api import onnx_parts  # noqa: E402
from nnspec.compiler.onnx_build import _varint, ensemble_onnx_file  # noqa: E402
from nnspec.compiler.torch_build import initial_weights  # noqa: E402

EXAMPLES = Path(__file__).parent.parent / "examples"
SPEC = """
model Tied {
    input tokens: int[6]
    tokens -> embed: embedding(11, 8) -> layernorm(1) -> attention(2, causal=true)
      -> head: linear(11, tie=embed) -> output
}
"""


def test_varint_is_protobufs():
    assert [_varint(n) for n in (0, 1, 127, 128, 300, 2**35)] == [
        b"\x00", b"\x01", b"\x7f", b"\x80\x01", b"\xac\x02", b"\x80\x80\x80\x80\x80\x01"]


@pytest.mark.parametrize("weights", ["initial", "buffers"])
def test_the_streamed_file_is_the_built_model(tmp_path, weights):
    if weights == "initial":
        model = nnspec.load(text=SPEC)
    else:  # knn's stored samples and one-hot labels: buffers, not parameters
        model = nnspec.load(EXAMPLES / "knn_digits.nn")
    built = onnx_parts(model)
    path = tmp_path / "m.onnx"
    built.write(path)
    back = onnx.load(path)
    assert back == built.model()
    onnx.checker.check_model(str(path), full_check=True)
    assert [t.name for t in back.graph.initializer] == list(built.weights)
    if weights == "initial":
        assert "embed.weight" in built.weights and "head.weight" not in built.weights
        assert built.weight_bytes == sum(a.nbytes for a in built.weights.values()) > 0
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        ids = np.arange(12, dtype=np.int64).reshape(2, 6) % 11
        (got,) = session.run(None, {"tokens": ids})
        (expected,) = ort.InferenceSession(built.model().SerializeToString(),
                                           providers=["CPUExecutionProvider"]).run(None, {"tokens": ids})
        np.testing.assert_array_equal(got, expected)


def test_an_ensemble_streams_every_member(tmp_path):
    model = nnspec.load(text="model M { input x: [5]\n x -> linear(3) -> output }")
    members = [initial_weights(model.graph, seed) for seed in (0, 1)]
    built = ensemble_onnx_file(model.graph, members, task="classification")
    path = tmp_path / "e.onnx"
    built.write(path)
    assert onnx.load(path) == built.model()
    assert sorted(built.weights) == ["member_0.linear_1.bias", "member_0.linear_1.weight",
                                     "member_1.linear_1.bias", "member_1.linear_1.weight"]


def test_the_skeleton_check_catches_a_broken_graph(tmp_path):
    built = onnx_parts(nnspec.load(text=SPEC))
    built.skeleton.graph.node[1].input[0] = "nowhere"
    with pytest.raises(onnx.checker.ValidationError, match="nowhere"):
        built.check()
    path = tmp_path / "m.onnx"
    with pytest.raises(onnx.checker.ValidationError):
        built.write(path)
