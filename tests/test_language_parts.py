"""Issue 12's language: layers with several outputs (`a, b = x -> split(2)`, `chunk`),
labelled groups of layers, and weight tying (`linear(vocab, tie=embed)`)."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec

SPLIT = """
block ShuffleUnit(c: int) {
    input x
    left, right = x -> split(2)
    r = right -> conv(c // 2, 1) -> relu
    concat(left, r) -> channel_shuffle(2) -> output
}
model Parts {
    input x: [8, 4, 4]
    a, b, c = x -> conv(6, 1) -> split([2, 1, 3])
    q, w = x -> chunk(3, axis=width)
    y = concat(c, a, b) -> ShuffleUnit(6)
    output y, q, w
}
"""


def graph_of(tmp_path, text: str, name: str = "m.nn"):
    path = tmp_path / name
    path.write_text(text)
    return nnspec.load(path).graph


def test_split_and_chunk_make_one_slice_per_name(tmp_path):
    graph = graph_of(tmp_path, SPLIT)
    slices = {n.name: (n.attrs["start"], n.attrs["stop"], n.attrs["axis"], n.output.shape)
              for n in graph.nodes if n.op == "slice"}
    assert slices == {
        "a": (0, 2, 0, (2, 4, 4)), "b": (2, 3, 0, (1, 4, 4)), "c": (3, 6, 0, (3, 4, 4)),
        "q": (0, 2, 2, (8, 4, 2)), "w": (2, 4, 2, (8, 4, 2)),  # torch.chunk(4, 3): 2 + 2
        "y.shuffle_unit_1.left": (0, 3, 0, (3, 4, 4)), "y.shuffle_unit_1.right": (3, 6, 0, (3, 4, 4)),
    }
    assert graph.node("a_b_c.conv_1").output.shape == (6, 4, 4)  # the chain before the split
    assert graph.node("a").inputs == ("a_b_c.conv_1",)
    assert graph.param_count == 8 * 6 + 6 + 3 * 3 + 3


def test_split_torch_and_onnx_equal_numpy(tmp_path):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from nnspec.compiler.onnx_build import build_onnx
    from nnspec.compiler.torch_build import build_module

    graph = graph_of(tmp_path, SPLIT)
    torch.manual_seed(0)
    module = build_module(graph).eval()
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        y, q, w = module(x)
        conv = module.a_b_c.conv_1(x)
    np.testing.assert_array_equal(q.numpy(), x[..., :2].numpy())
    np.testing.assert_array_equal(w.numpy(), x[..., 2:].numpy())
    assert y.shape == (2, 6, 4, 4)
    inner = torch.cat([conv[:, 3:], conv[:, :3]], dim=1)  # concat(c, a, b)
    unit = module.y.shuffle_unit_1
    with torch.no_grad():
        r = unit.r.relu_1(unit.r.conv_1(inner[:, 3:]))
    joined = torch.cat([inner[:, :3], r], dim=1)
    shuffled = joined.reshape(2, 2, 3, 4, 4).transpose(1, 2).reshape(2, 6, 4, 4)
    np.testing.assert_allclose(y.numpy(), shuffled.numpy(), rtol=1e-6)
    model = build_onnx(graph, module.state_dict())
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for got, want in zip(session.run(None, {"x": x.numpy()}), (y, q, w), strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)


def test_labelled_groups_name_their_layers(tmp_path):
    graph = graph_of(tmp_path, """
model M {
    input x: [3, 8, 8]
    x -> features: (conv(8, 3, padding=1) -> relu -> (conv(8, 1) -> relu) * 2)
      -> (global_avgpool -> flatten)
      -> head: (linear(10))
      -> output
}
""")
    assert [n.name for n in graph.nodes] == [
        "features.conv_1", "features.relu_1", "features.conv_2", "features.relu_2",
        "features.conv_3", "features.relu_3", "global_avgpool_1", "flatten_1", "head"]  # `head: (linear(10))` labels the one layer
    assert graph.param_count == (27 * 8 + 8) + 2 * (8 * 8 + 8) + (8 * 10 + 10)


def test_a_group_may_name_its_first_layer_and_each_repetition_gets_a_scope(tmp_path):
    graph = graph_of(tmp_path, """
model M {
    input x: [6]
    x -> mlp: (c_fc: linear(12) -> gelu -> c_proj: linear(6))
      -> (fc: linear(6) -> relu) * 2
      -> (out: linear(3))
      -> output
}
""")
    assert [n.name for n in graph.nodes] == [
        "mlp.c_fc", "mlp.gelu_1", "mlp.c_proj",
        "group_1.fc", "group_1.relu_1", "group_2.fc", "group_2.relu_1", "out"]
    assert graph.param_count == (6 * 12 + 12) + (12 * 6 + 6) + 2 * (6 * 6 + 6) + (6 * 3 + 3)


def test_a_labelled_group_is_not_a_value(tmp_path):
    path = tmp_path / "m.nn"
    path.write_text("model M {\n    input x: [4]\n    y = (fc: linear(4))\n    x -> output\n}\n")
    with pytest.raises(nnspec.DiagnosticError) as info:
        nnspec.load(path)
    (diag,) = info.value.diagnostics
    assert diag.code == "E1008"
    assert diag.message == "a labelled group of layers needs a value to flow into it"
    assert (diag.span.line, diag.span.col) == (3, 10)


def test_an_option_word_wins_over_a_value_of_the_same_name(tmp_path):
    """`layernorm(dims=channels)` in a model with a `channels` argument normalises over the
    channel axis (the option), and says that the argument's value was not used (W0004);
    where the argument has no such option (`conv(channels, 1)`) the value is used."""
    path = tmp_path / "m.nn"
    path.write_text("""
model M(channels: int = 8, height: int = 4) {
    input x: [channels, height, 5]
    x -> conv(channels, 1) -> layernorm(dims=channels) -> slice(0, height, axis=width) -> output
}
""")
    model = nnspec.load(path)
    conv, norm, part = model.graph.nodes
    assert conv.output.shape == (8, 4, 5)
    assert norm.attrs["dims"] == "channels" and norm.params["weight"] == (8,)
    assert part.output.shape == (8, 4, 4)  # stop = the value 4, on the named axis
    (w,) = [d for d in model.warnings if d.code == "W0004"]
    assert w.message == "`channels` here is the option, not the value `channels`"
    assert (w.span.line, w.span.col) == (4, 46)


TIED = """
model Tied {
    input x: int[16]
    x -> embed: embedding(50, 32) -> lstm(32, select=sequence) -> head: linear(50, tie=embed) -> output
}
"""


def test_a_tied_weight_is_counted_saved_and_exported_once(tmp_path):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from safetensors.torch import load_file, save_file

    from nnspec.compiler.onnx_build import build_onnx
    from nnspec.compiler.torch_build import build_module
    from nnspec.compiler.torch_source import torch_source

    graph = graph_of(tmp_path, TIED)
    head = graph.node("head")
    assert head.params == {"bias": (50,)} and head.tied == {"weight": "embed.weight"}
    lstm = 4 * 32 * (32 + 32) + 2 * 4 * 32
    assert graph.param_count == 50 * 32 + lstm + 50
    module = build_module(graph).eval()
    assert sum(p.numel() for p in module.parameters()) == graph.param_count
    state = module.state_dict()
    assert list(state) == list(graph.state_shapes())  # no head.weight
    save_file(dict(state), str(tmp_path / "w.safetensors"))  # one tensor: nothing shared
    assert len(load_file(str(tmp_path / "w.safetensors"))) == len(state)
    x = torch.randint(0, 50, (3, 16))
    with torch.no_grad():
        y = module(x)
        features = module.lstm_1(module.embed(x))
        expected = features @ module.embed.weight.T + module.head.bias
    np.testing.assert_allclose(y.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # training the embedding moves the head with it
        module.embed.weight.mul_(2)
        assert not torch.allclose(module(x), y)
        module.embed.weight.div_(2)
    model = build_onnx(graph, state)
    assert [i.name for i in model.graph.initializer].count("embed.weight") == 1
    assert "head.weight" not in {i.name for i in model.graph.initializer}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x.numpy()})[0], y.numpy(), rtol=1e-5, atol=1e-5)
    namespace: dict = {}
    exec(torch_source(graph), namespace)
    standalone = namespace["Tied"]()
    standalone.load_state_dict(state)
    with torch.no_grad():
        np.testing.assert_array_equal(standalone.eval()(x).numpy(), y.numpy())


def test_tying_resolves_the_label_from_inside_a_binding(tmp_path):
    graph = graph_of(tmp_path, """
model Tied {
    input x: int[8]
    h = x -> embed: embedding(20, 4)
    h -> linear(20, bias=false, tie=embed) -> output
}
""")
    assert graph.nodes[-1].tied == {"weight": "h.embed.weight"} and graph.nodes[-1].params == {}
    assert graph.param_count == 80
