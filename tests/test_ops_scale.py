"""layer_scale: the parameter's shape per axis, its constant init under every recipe init
scheme and in the compiled artefacts, the lowerings against torchvision's CNBlock layout."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from nnspec.spec import codes
from nnspec.spec.ir import TensorType
from nnspec.spec.ops import REGISTRY, ShapeError

torch = pytest.importorskip("torch")


def t(*shape: int) -> TensorType:
    return TensorType(shape=shape)


def op(**attrs):
    return REGISTRY["layer_scale"].model_validate(attrs)


@pytest.mark.parametrize(("attrs", "shape", "scale"), [
    ({}, (96, 14, 14), (96, 1, 1)),                 # torchvision CNBlock.layer_scale
    ({"axis": -1}, (49, 768), (768,)),              # tokens [L, D]: one γ per feature
    ({"axis": 0}, (49, 768), (49, 1)),
    ({"axis": "channels"}, (8, 5), (8, 1)),
    ({"axis": "height"}, (3, 4, 5), (4, 1)),
    ({"axis": -1}, (3, 4, 5), (5,)),
    ({}, (10,), (10,)),
])
def test_scale_shape_per_axis(attrs, shape, scale):
    ls = op(**attrs)
    x = t(*shape)
    assert ls.infer([x]) == x
    assert ls.param_shapes([x]) == {"scale": scale} and ls.buffer_shapes([x]) == {}
    assert ls.macs([x], x) == int(np.prod(shape)) and ls.receptive_step([x]) is None


def test_defaults_signature_and_class_facts():
    cls = REGISTRY["layer_scale"]
    assert (op().init, op().axis) == (1e-6, 0)
    assert cls.signature() == "layer_scale(init=1e-06, axis=0)"
    assert cls.positional == ("init",) and cls.family == "scale" and cls.keeps_own_init
    assert all(word in cls.__doc__ for word in ("Shape:", "Params:", "MACs:", "numel"))
    with pytest.raises(ValidationError):
        op(init=float("nan"))
    with pytest.raises(ValidationError):
        op(init=True)


def test_torch_module_starts_at_init_and_scales_each_channel():
    from nnspec.compiler.torch_build import instantiate

    ls = op()
    x = t(6, 4, 4)
    call = ls.torch_call([x])
    assert (call.cls, call.kwargs) == ("LayerScale", {"shape": (6, 1, 1), "init": 1e-6})
    module = instantiate(call)
    assert {k: tuple(v.shape) for k, v in module.named_parameters()} == {"scale": (6, 1, 1)}
    assert torch.equal(module.scale, torch.full((6, 1, 1), 1e-6))
    gamma = torch.arange(1.0, 7.0).reshape(6, 1, 1)
    with torch.no_grad():
        module.scale.copy_(gamma)
    xs = torch.randn(3, 6, 4, 4, generator=torch.Generator().manual_seed(0))
    y = module(xs)
    for c in range(6):
        assert torch.equal(y[:, c], (c + 1) * xs[:, c])
    got = ls.reference([xs.double().numpy()], {"scale": gamma.double().numpy()})
    np.testing.assert_allclose(got, (xs.double() * gamma.double()).numpy(), rtol=1e-15)


def test_tokens_scale_the_last_axis_in_torch_numpy_and_onnx():
    ort = pytest.importorskip("onnxruntime")
    from nnspec.compiler.onnx_build import build_onnx
    from nnspec.compiler.torch_build import instantiate
    from nnspec.verify.sweep import one_node_graph

    ls = op(init=0.5, axis=-1)
    x = t(5, 3)
    gamma = np.array([1.0, -2.0, 0.25])
    xs = np.random.default_rng(0).normal(size=(2, 5, 3))
    want = xs * gamma
    np.testing.assert_allclose(ls.reference([xs], {"scale": gamma}), want, rtol=1e-15)
    module = instantiate(ls.torch_call([x])).double()
    assert torch.equal(module.scale, torch.full((3,), 0.5, dtype=torch.float64))
    with torch.no_grad():
        module.scale.copy_(torch.from_numpy(gamma))
        np.testing.assert_allclose(module(torch.from_numpy(xs)).numpy(), want, rtol=1e-15)
    graph = one_node_graph(ls, [x])
    model = build_onnx(graph, {"layer.scale": gamma.astype(np.float32)})
    assert [n.op_type for n in model.graph.node if n.op_type != "Identity"] == ["Mul"]
    assert [(i.name, list(i.dims)) for i in model.graph.initializer] == [("layer.scale", [3])]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = session.run(None, {"x0": xs.astype(np.float32)})[0]
    np.testing.assert_allclose(y, want, rtol=1e-6)


def test_axis_out_of_range_is_located_with_help():
    with pytest.raises(ShapeError) as err:
        op(axis=3).infer([t(6, 8, 8)])
    assert err.value.code == codes.ARGUMENT_SHAPE and err.value.arg == "axis"
    assert err.value.message == "layer_scale axis=3 is out of range for an input of rank 3"
    assert err.value.help == ("axis=0 scales the 6 channels (scale [6, 1, 1]); axis=-1 the 8 "
                              "values of the last axis (scale [8])")
    with pytest.raises(ShapeError) as err:
        op(axis="width").infer([t(6, 8)])
    assert err.value.code == codes.ARGUMENT_SHAPE and "has no width axis" in err.value.message
    with pytest.raises(ShapeError) as err:
        op().infer([t()])
    assert err.value.code == codes.RANK and "rank 0" in err.value.message


CONVNEXT_BLOCK = """
block CNBlock(dim: int) {
    input x
    h = x -> conv(dim, 7, padding=3, groups=dim) -> permute(1, 2, 0)
          -> layernorm(1, eps=1e-6) -> linear(4 * dim) -> gelu -> linear(dim)
          -> permute(2, 0, 1) -> layer_scale(1e-6) -> drop_path(0.1)
    x + h -> output
}
model M(dim: int = 96) {
    input x: [dim, 14, 14]
    x -> CNBlock(dim) -> output
}
"""


def test_convnext_block_counts_torchvisions_parameters():
    from nnspec.api import load

    model = load(text=CONVNEXT_BLOCK)
    # 7·7·96 + 96 dwconv, 2·96 norm, 96·384 + 384, 384·96 + 96, 96 scale
    assert model.summary().total_params == 79_296 == (7 * 7 * 96 + 96) + 2 * 96 + (
        96 * 384 + 384) + (384 * 96 + 96) + 96
    scale = next(n for n in model.graph.nodes if n.op == "layer_scale")
    assert scale.name == "cn_block_1.h.layer_scale_1" and scale.params == {"scale": (96, 1, 1)}


RECIPE = """
model Net {
    input x: [1, 8, 8]
    h = x -> conv(4, 3, padding=1) -> layernorm(channels) -> layer_scale -> relu
    h -> flatten -> linear(10) -> layer_scale(0.5, axis=-1) -> output
}
train Net {
    data  digits(as_image=true)
    loss  cross_entropy
    init  SCHEME
}
"""


@pytest.mark.parametrize("scheme", ["kaiming", "xavier", "normal(std=0.5)", "constant(0.3)"])
def test_init_schemes_keep_the_scale_at_its_init(scheme):
    """The recipe's `init` (as the trainer applies it) changes conv and linear, but every
    layer_scale keeps its constant and the norm its γ = 1, β = 0."""
    from nnspec.api import load_recipe
    from nnspec.compiler.torch_build import build_module
    from nnspec.runtime.loop.init import initialise

    model, recipe = load_recipe(text=RECIPE.replace("SCHEME", scheme))
    torch.manual_seed(0)
    module = build_module(model.graph)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    applied = initialise(module, model.graph, recipe.init.default, recipe.init.per_kind)
    assert set(applied) == {"h.conv_1", "linear_1"}
    state = module.state_dict()
    assert not torch.equal(state["h.conv_1.weight"], before["h.conv_1.weight"])
    assert torch.equal(state["h.layer_scale_1.scale"], torch.full((4, 1, 1), 1e-6))
    assert state["h.layer_scale_1.scale"][0, 0, 0].item() == np.float32(1e-6)
    assert torch.equal(state["layer_scale_1.scale"], torch.full((10,), 0.5))
    assert torch.equal(state["h.layernorm_1.weight"], torch.ones(4))
    assert torch.equal(state["h.layernorm_1.bias"], torch.zeros(4))


def test_initial_weights_and_the_standalone_file_keep_the_scale(tmp_path):
    from nnspec.api import load
    from nnspec.compiler.torch_build import initial_weights
    from nnspec.compiler.torch_source import torch_source

    model = load(text=CONVNEXT_BLOCK.replace("dim: int = 96", "dim: int = 8"))
    weights = initial_weights(model.graph)
    assert torch.equal(weights["cn_block_1.h.layer_scale_1.scale"], torch.full((8, 1, 1), 1e-6))
    source = torch_source(model.graph)
    assert "class LayerScale(nn.Module)" in source and "class DropPath(nn.Module)" in source
    namespace: dict = {}
    exec(compile(source, "standalone.py", "exec"), namespace)
    torch.manual_seed(0)
    standalone = namespace["M"]()
    state = standalone.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == \
        {k: tuple(v.shape) for k, v in weights.items()}
    assert torch.equal(state["cn_block_1.h.layer_scale_1.scale"], torch.full((8, 1, 1), 1e-6))
