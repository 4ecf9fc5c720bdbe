"""batchnorm, layernorm, instancenorm, groupnorm: shapes, params and buffers against torch."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nnspec.spec import codes
from nnspec.spec.ir import TensorType
from nnspec.spec.ops import REGISTRY, ShapeError

KINDS = ["batchnorm", "layernorm", "instancenorm", "groupnorm"]


def t(*shape: int, dtype: str = "float32") -> TensorType:
    return TensorType(shape=shape, dtype=dtype)


def op(kind: str, **attrs):
    return REGISTRY[kind].model_validate(attrs)


def shapes_of(norm, x: TensorType) -> tuple[dict, dict]:
    return norm.param_shapes([x]), norm.buffer_shapes([x])


def torch_shapes(module) -> tuple[dict, dict]:
    params = {k: tuple(v.shape) for k, v in module.named_parameters()}
    buffers = {k: tuple(v.shape) for k, v in module.named_buffers()}
    return params, buffers


def check_forward(module, norm, x: TensorType) -> None:
    torch = pytest.importorskip("torch")
    module.train()
    y = module(torch.randn(4, *x.shape))
    assert tuple(y.shape[1:]) == norm.infer([x]).shape


@pytest.mark.parametrize("shape", [(16,), (16, 9), (16, 5, 5)])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_matches_torch(shape, affine):
    torch = pytest.importorskip("torch")
    bn = op("batchnorm", affine=affine)
    x = t(*shape)
    cls = torch.nn.BatchNorm2d if len(shape) == 3 else torch.nn.BatchNorm1d
    module = cls(16, affine=affine)
    assert torch_shapes(module) == shapes_of(bn, x)
    check_forward(module, bn, x)


def test_batchnorm_shapes():
    bn = op("batchnorm")
    x = t(16, 5, 5)
    assert bn.infer([x]) == x
    assert bn.param_shapes([x]) == {"weight": (16,), "bias": (16,)}
    assert bn.buffer_shapes([x]) == {
        "running_mean": (16,),
        "running_var": (16,),
        "num_batches_tracked": (),
    }


@pytest.mark.parametrize("dims", [None, 1, 2, 3])
def test_layernorm_matches_torch(dims):
    torch = pytest.importorskip("torch")
    ln = op("layernorm", dims=dims)
    x = t(16, 5, 7)
    normalized = x.shape if dims is None else x.shape[3 - dims :]
    assert ln.normalized_shape(x) == normalized
    module = torch.nn.LayerNorm(normalized)
    assert torch_shapes(module) == shapes_of(ln, x)
    check_forward(module, ln, x)


def test_layernorm_defaults_to_all_features():
    ln = op("layernorm")
    assert ln.param_shapes([t(16, 5, 7)]) == {"weight": (16, 5, 7), "bias": (16, 5, 7)}
    assert op("layernorm", affine=False).param_shapes([t(16, 5, 7)]) == {}
    assert REGISTRY["layernorm"].positional == ("dims",)


def test_layernorm_dims_larger_than_rank():
    ln = op("layernorm", dims=3)
    with pytest.raises(ShapeError) as err:
        ln.infer([t(16, 5)])
    assert err.value.code == codes.BAD_ARG and err.value.arg == "dims"
    assert "3" in err.value.message and "rank 2" in err.value.message
    with pytest.raises(ValidationError):
        op("layernorm", dims=0)


@pytest.mark.parametrize("shape", [(16, 9), (16, 5, 5)])
@pytest.mark.parametrize("affine", [True, False])
def test_instancenorm_matches_torch(shape, affine):
    torch = pytest.importorskip("torch")
    inorm = op("instancenorm", affine=affine)
    x = t(*shape)
    cls = torch.nn.InstanceNorm2d if len(shape) == 3 else torch.nn.InstanceNorm1d
    module = cls(16, affine=affine)
    assert torch_shapes(module) == shapes_of(inorm, x)
    check_forward(module, inorm, x)


def test_instancenorm_is_not_affine_by_default():
    inorm = op("instancenorm")
    assert shapes_of(inorm, t(16, 5, 5)) == ({}, {})


@pytest.mark.parametrize("shape", [(12,), (12, 9), (12, 5, 5)])
def test_groupnorm_matches_torch(shape):
    torch = pytest.importorskip("torch")
    gn = op("groupnorm", groups=4)
    x = t(*shape)
    module = torch.nn.GroupNorm(4, 12)
    assert torch_shapes(module) == shapes_of(gn, x)
    assert gn.param_shapes([x]) == {"weight": (12,), "bias": (12,)}
    check_forward(module, gn, x)


def test_groupnorm_channels_not_divisible():
    gn = op("groupnorm", groups=4)
    with pytest.raises(ShapeError) as err:
        gn.infer([t(10, 5, 5)])
    assert err.value.code == codes.DIVISIBLE and err.value.arg == "groups"
    assert "10" in err.value.message and "4" in err.value.message
    assert REGISTRY["groupnorm"].positional == ("groups",)


@pytest.mark.parametrize(
    ("kind", "shape"),
    [("batchnorm", (16, 5, 5, 5)), ("instancenorm", (16,)), ("groupnorm", ()), ("layernorm", ())],
)
def test_wrong_rank(kind, shape):
    attrs = {"groups": 4} if kind == "groupnorm" else {}
    with pytest.raises(ShapeError) as err:
        op(kind, **attrs).infer([t(*shape)])
    assert err.value.code == codes.RANK and f"rank {len(shape)}" in err.value.message


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("affine", [True, False])
def test_macs_one_per_element(kind, affine):
    attrs = {"groups": 4} if kind == "groupnorm" else {}
    norm = op(kind, affine=affine, **attrs)
    x = t(16, 5, 5)
    assert norm.macs([x], norm.infer([x])) == 16 * 5 * 5
    assert norm.receptive_step([x]) is None


@pytest.mark.parametrize("kind", KINDS)
def test_eps_positive_and_docstring(kind):
    attrs = {"groups": 4} if kind == "groupnorm" else {}
    with pytest.raises(ValidationError):
        op(kind, eps=0.0, **attrs)
    doc = REGISTRY[kind].__doc__
    assert all(word in doc for word in ("Shape:", "Params:", "MACs:"))


def test_batchnorm_momentum_range():
    with pytest.raises(ValidationError):
        op("batchnorm", momentum=1.5)


# -- rmsnorm ----------------------------------------------------------------------------------
def onnx_run(kind: str, attrs: dict, x, params: dict):
    """The op exported alone with ``params`` as its weights, run by onnxruntime (float32)."""
    import numpy as np
    ort = pytest.importorskip("onnxruntime")
    from nnspec.compiler.onnx_build import build_onnx
    from nnspec.verify.sweep import one_node_graph

    graph = one_node_graph(op(kind, **attrs), [t(*x.shape[1:])])
    weights = {f"{graph.nodes[0].name}.{k}": np.asarray(v, np.float32) for k, v in params.items()}
    model = build_onnx(graph, weights)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    kinds = [n.op_type for n in model.graph.node if n.op_type not in ("Constant", "Identity")]
    return session.run(None, {"x0": x.astype(np.float32)})[0], kinds


def test_rmsnorm_known_values():
    import numpy as np
    # rows [3, 4]: mean square 12.5; [1, -1]: 1; γ = [2, 0.5]
    x = np.array([[[3.0, 4.0], [1.0, -1.0]]])
    weight = np.array([2.0, 0.5])
    eps = 1e-6
    want = np.array([[[2 * 3 / np.sqrt(12.5 + eps), 0.5 * 4 / np.sqrt(12.5 + eps)],
                      [2 / np.sqrt(1 + eps), -0.5 / np.sqrt(1 + eps)]]])
    rms = op("rmsnorm")
    np.testing.assert_allclose(rms.reference([x], {"weight": weight}), want, rtol=1e-15)
    plain = op("rmsnorm", affine=False).reference([x], {})
    np.testing.assert_allclose(plain, want / weight, rtol=1e-15)
    y, kinds = onnx_run("rmsnorm", {}, x, {"weight": weight})
    np.testing.assert_allclose(y, want, rtol=1e-6)
    assert kinds == ["Mul", "ReduceMean", "Add", "Sqrt", "Div", "Mul"]
    assert onnx_run("rmsnorm", {"affine": False}, x, {})[1] == ["Mul", "ReduceMean", "Add",
                                                                "Sqrt", "Div"]


@pytest.mark.parametrize("shape", [(8,), (5, 8), (3, 4, 8)])
@pytest.mark.parametrize("affine", [True, False])
def test_rmsnorm_equals_torch_rmsnorm(shape, affine):
    import numpy as np
    torch = pytest.importorskip("torch")
    from nnspec.compiler.torch_build import instantiate

    rms = op("rmsnorm", eps=1e-5, affine=affine)
    x = t(*shape)
    module = instantiate(rms.torch_call([x])).double()
    want = torch.nn.RMSNorm(8, eps=1e-5, elementwise_affine=affine).double()
    assert isinstance(module, torch.nn.RMSNorm)
    assert torch_shapes(module) == torch_shapes(want) == shapes_of(rms, x)
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(3, *shape, generator=gen, dtype=torch.float64)
    params = {}
    if affine:
        weight = torch.rand(8, generator=gen, dtype=torch.float64) + 0.5
        with torch.no_grad():
            module.weight.copy_(weight)
            want.weight.copy_(weight)
        params = {"weight": weight.numpy()}
    with torch.no_grad():
        got = module(xs)
        torch.testing.assert_close(got, want(xs), rtol=0, atol=0)
    np.testing.assert_allclose(got.numpy(), rms.reference([xs.numpy()], params), rtol=1e-13)


def test_rmsnorm_shapes_and_costs():
    rms = op("rmsnorm")
    assert (rms.eps, rms.affine) == (1e-6, True)
    assert REGISTRY["rmsnorm"].signature() == "rmsnorm(eps=1e-06, affine=true)"
    assert REGISTRY["rmsnorm"].family == "norm"
    x = t(16, 5, 7)
    assert rms.infer([x]) == x
    assert shapes_of(rms, x) == ({"weight": (7,)}, {})
    assert op("rmsnorm", affine=False).param_shapes([x]) == {}
    assert rms.macs([x], x) == 16 * 5 * 7 and rms.receptive_step([x]) is None
    with pytest.raises(ShapeError) as err:
        rms.infer([t()])
    assert err.value.code == codes.RANK and "rank 0" in err.value.message


def diagnostics_of(call: str, shape: str = "[3, 8]"):
    from nnspec.spec.diagnostics import DiagnosticError
    from nnspec.spec.loader import load_text
    from nnspec.spec.models import elaborate_model

    text = f"model M {{\n    input x: {shape}\n    x -> {call} -> output\n}}\n"
    with pytest.raises(DiagnosticError) as err:
        elaborate_model(load_text(text))
    return [d for d in err.value.diagnostics if d.severity == "error"]


# the layer starts at column 10 of `    x -> ...`
@pytest.mark.parametrize(("call", "code", "col", "words"), [
    ("rmsnorm(eps=0)", codes.BAD_ARG, 22, ["invalid value for `eps` of `rmsnorm`: 0"]),
    ("rmsnorm(eps=-1e-6)", codes.BAD_ARG, 22, ["`eps` of `rmsnorm`"]),
    ("rmsnorm(affine=1)", codes.BAD_ARG, 25, ["`affine` of `rmsnorm`: 1"]),
    ("rmsnorm(1e-5)", codes.TOO_MANY_ARGS, 18, ["`rmsnorm` takes 0 positional"]),
    ("rmsnorm(dims=1)", codes.UNKNOWN_ARG, 18, ["`rmsnorm` has no argument `dims`"]),
])
def test_rmsnorm_argument_errors_are_located(call, code, col, words):
    first = diagnostics_of(call)[0]
    assert first.code == code
    assert first.span.line == 3 and first.span.col == col, (first.span.col, first.message)
    assert all(w in first.message for w in words), first.message


# -- layernorm: `dims=all` and the W0003 lint on [C, H, W] -------------------------------------
def warnings_of(body: str, shape: str = "[6, 8, 8]"):
    from nnspec.spec.loader import load_text
    from nnspec.spec.models import elaborate_model

    text = f"model M {{\n    input x: {shape}\n    {body}\n}}\n"
    _graph, warnings = elaborate_model(load_text(text))
    return [w for w in warnings if w.code == codes.LAYERNORM_AXES]


def test_layernorm_dims_all_is_the_default_said_explicitly():
    import numpy as np
    x = t(6, 8, 8)
    implicit, explicit = op("layernorm"), op("layernorm", dims="all")
    assert explicit.normalized_shape(x) == implicit.normalized_shape(x) == (6, 8, 8)
    assert shapes_of(explicit, x) == shapes_of(implicit, x)
    assert explicit.torch_call([x]) == implicit.torch_call([x])
    assert REGISTRY["layernorm"].signature() == "layernorm(dims=all, eps=1e-05, affine=true)"
    xs = np.random.default_rng(0).normal(size=(2, 6, 8, 8))
    y = explicit.reference([xs], {"weight": np.ones(x.shape), "bias": np.zeros(x.shape)})
    flat = y.reshape(2, -1)
    np.testing.assert_allclose(flat.mean(axis=1), 0, atol=1e-14)
    np.testing.assert_allclose(flat.var(axis=1), 1 / (1 + 1e-5 / xs.reshape(2, -1).var(axis=1)),
                               rtol=1e-12)


def test_layernorm_default_on_a_map_warns():
    (w,) = warnings_of("x -> conv(6, 1) -> layernorm -> output")
    assert w.severity == "warning" and w.code == "W0003"
    assert w.message == ("`layernorm` without `dims` on [6, 8, 8] normalises all 6·8·8 = 384 "
                         "values of each sample together")
    # the span is the layer: `    x -> conv(6, 1) -> layernorm` puts it at column 24
    assert (w.span.line, w.span.col, w.span.end_col) == (3, 24, 33)
    assert w.notes == ("chosen: every feature (dims=all), γ and β of shape [6, 8, 8]",
                       "not each position's 6 channel values alone (ConvNeXt's LayerNorm2d)")
    assert "`layernorm(dims=all)`" in w.help and "`layernorm(1)`" in w.help
    assert ("`layernorm(dims=channels)` to normalise each position's 6 channel values "
            "(LayerNorm2d)") in w.help


@pytest.mark.parametrize(("body", "shape"), [
    ("x -> layernorm(dims=all) -> output", "[6, 8, 8]"),
    ("x -> layernorm(3) -> output", "[6, 8, 8]"),
    ("x -> layernorm(1) -> output", "[6, 8, 8]"),
    ("x -> layernorm(dims=channels) -> output", "[6, 8, 8]"),
    ("x -> layernorm(channels) -> output", "[6, 8]"),
    ("x -> layernorm -> output", "[5, 8]"),
    ("x -> layernorm -> output", "[8]"),
    ("x -> rmsnorm -> output", "[6, 8, 8]"),
])
def test_layernorm_explicit_or_unambiguous_does_not_warn(body, shape):
    assert warnings_of(body, shape) == []


@pytest.mark.parametrize(("call", "code", "col", "words"), [
    ("layernorm(dims=al)", codes.BAD_ARG, 25, ["invalid value for `dims` of `layernorm`: `al`"]),
    ("layernorm(0)", codes.BAD_ARG, 20, ["`dims` of `layernorm`: 0"]),
    ("layernorm(3)", codes.BAD_ARG, 20, ["last 3 axes needs rank 3", "rank 2"]),
])
def test_layernorm_argument_errors_are_located(call, code, col, words):
    first = diagnostics_of(call)[0]
    assert first.code == code
    assert first.span.line == 3 and first.span.col == col, (first.span.col, first.message)
    assert all(w in first.message for w in words), first.message


def test_layernorm_dims_typo_suggests_all():
    (d,) = diagnostics_of("layernorm(dims=al)")
    assert d.help == "did you mean `all`?"


# -- layernorm(dims=channels): ConvNeXt's LayerNorm2d ------------------------------------------
def layernorm2d(x, weight, bias, eps):
    """torchvision.models.convnext.LayerNorm2d's forward, written out: channels last,
    F.layer_norm over C, channels first again (here for any rank >= 2)."""
    import torch.nn.functional as F
    y = F.layer_norm(x.movedim(1, -1), (x.shape[1],), weight, bias, eps)
    return y.movedim(-1, 1)


def test_layernorm_channels_shapes_and_costs():
    ln = op("layernorm", dims="channels", eps=1e-6)
    x = t(96, 14, 14)
    assert ln.infer([x]) == x and ln.normalized_shape(x) == (96,)
    assert shapes_of(ln, x) == ({"weight": (96,), "bias": (96,)}, {})
    assert op("layernorm", dims="channels", affine=False).param_shapes([x]) == {}
    assert ln.macs([x], x) == 96 * 14 * 14 and ln.receptive_step([x]) is None
    assert shapes_of(ln, t(5, 7)) == ({"weight": (5,), "bias": (5,)}, {})
    assert REGISTRY["layernorm"].keeps_own_init and REGISTRY["rmsnorm"].keeps_own_init


@pytest.mark.parametrize("shape", [(6, 5, 4), (6, 9), (6, 2, 3, 4)])
@pytest.mark.parametrize("affine", [True, False])
def test_layernorm_channels_equals_layernorm2d(shape, affine):
    import numpy as np
    torch = pytest.importorskip("torch")
    from nnspec.compiler.torch_build import instantiate

    ln = op("layernorm", dims="channels", eps=1e-6, affine=affine)
    x = t(*shape)
    call = ln.torch_call([x])
    assert call.cls == "ChannelLayerNorm"
    module = instantiate(call).double()
    assert torch_shapes(module) == shapes_of(ln, x)
    gen = torch.Generator().manual_seed(0)
    xs = 3 * torch.randn(4, *shape, generator=gen, dtype=torch.float64) + 1
    weight = bias = None
    params = {}
    if affine:
        assert torch.equal(module.weight, torch.ones(6, dtype=torch.float64))
        assert torch.equal(module.bias, torch.zeros(6, dtype=torch.float64))
        weight = torch.rand(6, generator=gen, dtype=torch.float64) + 0.5
        bias = torch.randn(6, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            module.weight.copy_(weight)
            module.bias.copy_(bias)
        params = {"weight": weight.numpy(), "bias": bias.numpy()}
    with torch.no_grad():
        got = module(xs)
    torch.testing.assert_close(got, layernorm2d(xs, weight, bias, 1e-6), rtol=0, atol=0)
    ref = ln.reference([xs.numpy()], params)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=1e-13)
    # each position's C values: mean 0 and biased variance 1 (before γ, β)
    plain = op("layernorm", dims="channels", eps=1e-6, affine=False).reference([xs.numpy()], {})
    np.testing.assert_allclose(plain.mean(axis=1), 0, atol=1e-13)
    var = xs.numpy().var(axis=1)
    np.testing.assert_allclose(plain.var(axis=1), var / (var + 1e-6), rtol=1e-12)


def test_layernorm_channels_known_values_and_onnx():
    import numpy as np
    # positions (c values): [1, 3] (μ 2, σ² 1) and [-2, 2] (μ 0, σ² 4); γ = [2, 1], β = [0, 1]
    x = np.array([[[1.0, -2.0], [3.0, 2.0]]])  # [N=1, C=2, L=2]
    eps = 1e-5
    a, b = 1 / np.sqrt(1 + eps), 2 / np.sqrt(4 + eps)
    want = np.array([[[2 * -a, 2 * -b], [a + 1, b + 1]]])
    params = {"weight": np.array([2.0, 1.0]), "bias": np.array([0.0, 1.0])}
    ln = op("layernorm", dims="channels")
    np.testing.assert_allclose(ln.reference([x], params), want, rtol=1e-14)
    y, kinds = onnx_run("layernorm", {"dims": "channels"}, x, params)
    np.testing.assert_allclose(y, want, rtol=1e-6)
    assert kinds == ["Transpose", "LayerNormalization", "Transpose"]
    y, kinds = onnx_run("layernorm", {"dims": "channels", "affine": False},
                        np.tile(x[..., None], (2, 1, 1, 3)), {})
    plain = np.array([[[-a, -b], [a, b]]])  # x̂ alone; on [C, H, W] each (h, w) the same
    np.testing.assert_allclose(y, np.tile(plain[..., None], (2, 1, 1, 3)), rtol=1e-6)
    assert kinds == ["Transpose", "LayerNormalization", "Transpose"]


def test_layernorm_channels_on_a_vector_is_a_located_error():
    (d,) = diagnostics_of("layernorm(dims=channels)", "[8]")
    assert d.code == codes.RANK
    assert d.message == ("layernorm(dims=channels) normalises the C channel values at each "
                         "position of a [C, *spatial] map (rank 2 or more), got [8] of rank 1")
    # the caret is under `channels`: `    x -> layernorm(dims=` ends at column 24
    assert (d.span.line, d.span.col, d.span.end_col) == (3, 25, 33)
    assert d.help == "use `layernorm` to normalise the 8 features together (`layernorm(dims=all)`)"
    (d,) = diagnostics_of("layernorm(channels)", "[8]")
    assert d.code == codes.RANK and (d.span.col, d.span.end_col) == (20, 28)


def test_layernorm_channels_typo_and_expected_values():
    (d,) = diagnostics_of("layernorm(dims=channel)", "[6, 8, 8]")
    assert d.code == codes.BAD_ARG and d.help == "did you mean `channels`?"
    assert d.labels[0].message == "expected an integer, `all` or `channels`"
