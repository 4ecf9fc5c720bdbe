"""Activations (the elementwise table, prelu, softmax, log_softmax, maxout) and dropouts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from nnspec.spec import codes
from nnspec.spec.ir import TensorType
from nnspec.spec.ops import REGISTRY, ShapeError

TABLE = {  # kind -> (attrs, torch module factory taking the attrs)
    "relu": ({}, lambda nn: nn.ReLU()),
    "sigmoid": ({}, lambda nn: nn.Sigmoid()),
    "tanh": ({}, lambda nn: nn.Tanh()),
    "gelu": ({"approximate": "tanh"}, lambda nn: nn.GELU(approximate="tanh")),
    "elu": ({"alpha": 0.5}, lambda nn: nn.ELU(alpha=0.5)),
    "leaky_relu": ({"alpha": 0.2}, lambda nn: nn.LeakyReLU(0.2)),
    "softmax": ({"axis": -1}, lambda nn: nn.Softmax(dim=-1)),
    "log_softmax": ({"axis": 0}, lambda nn: nn.LogSoftmax(dim=1)),
    "dropout": ({"p": 0.3}, lambda nn: nn.Dropout(0.3)),
    "dropout2d": ({"p": 0.3}, lambda nn: nn.Dropout2d(0.3)),
    "relu6": ({}, lambda nn: nn.ReLU6()),
    "hardtanh": ({"min": -0.5, "max": 2.0}, lambda nn: nn.Hardtanh(-0.5, 2.0)),
    "clamp": ({"min": 0.0, "max": 6.0}, lambda nn: nn.Hardtanh(0.0, 6.0)),
    "hardsigmoid": ({}, lambda nn: nn.Hardsigmoid()),
    "hardswish": ({}, lambda nn: nn.Hardswish()),
    "silu": ({}, lambda nn: nn.SiLU()),
    "mish": ({}, lambda nn: nn.Mish()),
    "softplus": ({"beta": 2.0, "threshold": 1.0}, lambda nn: nn.Softplus(2.0, 1.0)),
    "softsign": ({}, lambda nn: nn.Softsign()),
}
KINDS = [*TABLE, "prelu", "maxout"]


def t(*shape: int, dtype: str = "float32") -> TensorType:
    return TensorType(shape=shape, dtype=dtype)


def op(kind: str, **attrs):
    return REGISTRY[kind].model_validate(attrs)


@pytest.mark.parametrize("kind", list(TABLE))
def test_shape_kept_no_params_no_macs(kind):
    act = op(kind, **TABLE[kind][0])
    x = t(6, 5, 5)
    y = act.infer([x])
    assert y == x
    assert act.param_shapes([x]) == {} and act.buffer_shapes([x]) == {}
    assert act.macs([x], y) == 0
    assert act.receptive_step([x]) is None


@pytest.mark.parametrize("kind", list(TABLE))
def test_matches_torch_module(kind):
    torch = pytest.importorskip("torch")
    attrs, factory = TABLE[kind]
    module = factory(torch.nn)
    x = t(6, 5, 5)
    assert dict(module.state_dict()) == {}
    assert tuple(module(torch.randn(2, *x.shape)).shape[1:]) == op(kind, **attrs).infer([x]).shape


@pytest.mark.parametrize("kind", KINDS)
def test_docstring_is_a_contract(kind):
    doc = REGISTRY[kind].__doc__
    assert all(word in doc for word in ("Shape:", "Params:", "MACs:")), kind
    assert f"{kind}(" in doc or kind in ("prelu", "maxout", "dropout", "dropout2d"), kind


def test_defaults_and_positional():
    assert op("leaky_relu").alpha == 0.01 and op("elu").alpha == 1.0
    assert op("gelu").approximate == "none"
    assert REGISTRY["leaky_relu"].positional == ("alpha",)
    assert REGISTRY["maxout"].positional == ("k",)
    assert REGISTRY["dropout"].positional == ("p",)
    assert REGISTRY["softmax"].positional == ("axis",)
    with pytest.raises(ValidationError):
        op("gelu", approximate="erf")


@pytest.mark.parametrize("per_channel", [False, True])
def test_prelu_matches_torch(per_channel):
    torch = pytest.importorskip("torch")
    prelu = op("prelu", per_channel=per_channel)
    x = t(6, 5, 5)
    module = torch.nn.PReLU(6 if per_channel else 1)
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert prelu.param_shapes([x]) == expected == {"weight": (6 if per_channel else 1,)}
    assert prelu.infer([x]) == x and prelu.macs([x], x) == 0
    assert tuple(module(torch.randn(2, 6, 5, 5)).shape[1:]) == x.shape


def test_prelu_per_channel_needs_channels():
    with pytest.raises(ShapeError) as err:
        op("prelu", per_channel=True).infer([t()])
    assert err.value.code == codes.RANK and err.value.arg == "per_channel"


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
@pytest.mark.parametrize(("axis", "resolved"), [(0, 0), (2, 2), (-1, 2), (-3, 0)])
def test_softmax_axis(kind, axis, resolved):
    sm = op(kind, axis=axis)
    x = t(10, 4, 3)
    assert sm.infer([x]) == x
    assert sm.resolved_axis(x) == resolved


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [3, -4])
def test_softmax_axis_out_of_range(kind, axis):
    with pytest.raises(ShapeError) as err:
        op(kind, axis=axis).infer([t(10, 4, 3)])
    assert err.value.code == codes.BAD_ARG and err.value.arg == "axis"
    assert str(axis) in err.value.message and "rank 3" in err.value.message


def test_softmax_sums_to_one_along_resolved_axis():
    torch = pytest.importorskip("torch")
    x = t(10, 4)
    axis = op("softmax", axis=-1).resolved_axis(x)
    y = torch.nn.Softmax(dim=axis + 1)(torch.randn(2, *x.shape))
    assert torch.allclose(y.sum(dim=-1), torch.ones(2, 10))


@pytest.mark.parametrize(("shape", "k", "out"), [((12,), 3, (4,)), ((12, 5, 5), 4, (3, 5, 5))])
def test_maxout(shape, k, out):
    mo = op("maxout", k=k)
    x = t(*shape)
    assert mo.infer([x]) == t(*out)
    assert mo.param_shapes([x]) == {} and mo.macs([x], t(*out)) == 0


def test_maxout_matches_torch_grouping():
    torch = pytest.importorskip("torch")
    x = torch.arange(12.0).reshape(1, 12)  # groups of 3 consecutive channels
    y = x.reshape(1, 4, 3).amax(dim=2)
    assert y.tolist() == [[2.0, 5.0, 8.0, 11.0]]
    assert op("maxout", k=3).infer([t(12)]).shape == tuple(y.shape[1:])


def test_maxout_not_divisible():
    with pytest.raises(ShapeError) as err:
        op("maxout", k=3).infer([t(10, 5)])
    assert err.value.code == codes.DIVISIBLE and err.value.arg == "k"
    assert "10" in err.value.message and "3" in err.value.message
    with pytest.raises(ValidationError):
        op("maxout", k=0)


@pytest.mark.parametrize("p", [0.0, 0, 0.5, 0.99])
def test_dropout_accepts(p):
    assert op("dropout", p=p).infer([t(7)]) == t(7)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_range(p):
    with pytest.raises(ValidationError):
        op("dropout", p=p)


def test_dropout2d_needs_channels_height_width():
    d2 = op("dropout2d")
    assert d2.infer([t(6, 5, 5)]) == t(6, 5, 5)
    with pytest.raises(ShapeError) as err:
        d2.infer([t(120)])
    assert err.value.code == codes.RANK and "rank 1" in err.value.message


# -- the modern activations of issue 12 -----------------------------------------------------------
MODERN = ["relu6", "hardtanh", "clamp", "hardsigmoid", "hardswish", "silu", "mish", "softplus",
          "softsign", "gelu"]
F32_MAX = float(np.finfo(np.float32).max)
SIG1 = 1 / (1 + math.exp(-1))  # σ(1)

# kind, attrs, inputs, outputs: each output from the formula by hand
KNOWN = [
    ("relu6", {}, [-1, 0, 3, 6, 7], [0, 0, 3, 6, 6]),
    ("hardtanh", {}, [-2, -1, 0.5, 1, 2], [-1, -1, 0.5, 1, 1]),
    ("hardtanh", {"min": -0.5, "max": 2.0}, [-3, 1, 5], [-0.5, 1, 2]),
    ("clamp", {"min": 0, "max": 6}, [-1, 3, 7], [0, 3, 6]),
    ("clamp", {"min": 0.25}, [-1e30, -1, 0.25, 3, 1e30], [0.25, 0.25, 0.25, 3, 1e30]),
    ("clamp", {"max": -0.25}, [-1e30, -5, 0, 1], [-1e30, -5, -0.25, -0.25]),
    ("hardsigmoid", {}, [-4, -3, 0, 1.5, 3, 4], [0, 0, 0.5, 0.75, 1, 1]),
    ("hardswish", {}, [-4, -3, 0, 1.5, 3, 4], [0, 0, 0, 1.125, 3, 4]),
    ("silu", {}, [-1, 0, 1], [-(1 - SIG1), 0, SIG1]),
    ("mish", {}, [-1, 0, 1],
     [-math.tanh(math.log1p(math.exp(-1))), 0, math.tanh(math.log1p(math.e))]),
    ("softplus", {}, [-30, 0, 1, 20, 20.5, 30],
     [math.log1p(math.exp(-30)), math.log(2), math.log1p(math.e), math.log1p(math.exp(20)),
      20.5, 30]),
    # β = 2, threshold 1: x itself once 2x > 1; at 2x = 1 exactly still ln(1 + e) / 2
    ("softplus", {"beta": 2.0, "threshold": 1.0}, [-1, 0.25, 0.5, 0.75, 3],
     [math.log1p(math.exp(-2)) / 2, math.log1p(math.exp(0.5)) / 2, math.log1p(math.e) / 2,
      0.75, 3]),
    ("softsign", {}, [-3, 0, 1, 4], [-0.75, 0, 0.5, 0.8]),
    ("gelu", {}, [-1, 0, 1], [-0.5 * (1 - math.erf(1 / math.sqrt(2))), 0,
                               0.5 * (1 + math.erf(1 / math.sqrt(2)))]),
    ("gelu", {"approximate": "tanh"}, [1],
     [0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * (1 + 0.044715)))]),
]


def onnx_run(kind: str, attrs: dict, x: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The op exported alone, run by onnxruntime on a float32 batch; and its node types."""
    ort = pytest.importorskip("onnxruntime")
    from nnspec.compiler.onnx_build import build_onnx
    from nnspec.verify.sweep import one_node_graph

    model = build_onnx(one_node_graph(op(kind, **attrs), [t(*x.shape[1:])]), {})
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    kinds = [n.op_type for n in model.graph.node if n.op_type not in ("Constant", "Identity")]
    return session.run(None, {"x0": x.astype(np.float32)})[0], kinds


def torch_run(kind: str, attrs: dict, x: np.ndarray, dtype: str = "float32") -> np.ndarray:
    torch = pytest.importorskip("torch")
    from nnspec.compiler.torch_build import instantiate

    module = instantiate(op(kind, **attrs).torch_call([t(*x.shape[1:])]))
    with torch.no_grad():
        return module(torch.from_numpy(x).to(getattr(torch, dtype))).double().numpy()


@pytest.mark.parametrize(("kind", "attrs", "xs", "ys"), KNOWN,
                         ids=[f"{k}-{i}" for i, (k, *_rest) in enumerate(KNOWN)])
def test_known_values(kind, attrs, xs, ys):
    x = np.array([xs], dtype=np.float64)
    want = np.array([ys], dtype=np.float64)
    ref = op(kind, **attrs).reference([x], {})
    np.testing.assert_allclose(ref, want, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(torch_run(kind, attrs, x, "float64"), want, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(torch_run(kind, attrs, x), want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(onnx_run(kind, attrs, x)[0], want, rtol=1e-6, atol=1e-7)


def test_the_kinks_are_exact_in_float32():
    # bounds and clipped regions are the exact numbers of the formula, in every backend
    x = np.array([[-4.0, -3.0, 3.0, 7.0]])
    for run in (torch_run, lambda k, a, v: onnx_run(k, a, v)[0]):
        assert run("hardswish", {}, x).tolist() == [[0.0, 0.0, 3.0, 7.0]]
        assert run("hardsigmoid", {}, x).tolist() == [[0.0, 0.0, 1.0, 1.0]]
        assert run("relu6", {}, x).tolist() == [[0.0, 0.0, 3.0, 6.0]]
        assert run("clamp", {"max": 0.5}, x).tolist() == [[-4.0, -3.0, 0.5, 0.5]]


def test_softplus_threshold_rule():
    # torch's rule, reproduced in both other backends: x itself where β·x > threshold
    sp = op("softplus", beta=2.0, threshold=1.0)
    x = np.array([[0.4999, 0.5, 0.5001, 2.0]])
    y = sp.reference([x], {})
    assert y[0, 2] == 0.5001 and y[0, 3] == 2.0  # above: the identity, exactly
    assert y[0, 1] == pytest.approx(math.log1p(math.e) / 2, rel=1e-15)  # 2·0.5 = 1 is not above
    assert y[0, 1] - 0.5 == pytest.approx(math.log1p(math.exp(-1)) / 2)  # the jump torch makes
    np.testing.assert_allclose(torch_run("softplus", sp.attrs(), x), y, rtol=1e-6)
    got, nodes = onnx_run("softplus", sp.attrs(), x)
    np.testing.assert_allclose(got, y, rtol=1e-6)
    assert nodes == ["Mul", "Softplus", "Div", "Greater", "Where"]
    assert onnx_run("softplus", {"threshold": 0.75}, x)[1] == ["Softplus", "Greater", "Where"]
    assert onnx_run("softplus", {"beta": 0.5}, x)[1] == ["Mul", "Softplus", "Div", "Greater",
                                                         "Where"]


def test_softplus_default_is_one_onnx_node_and_still_torch_beyond_the_threshold():
    # β = 1, threshold 20: the Where is left out since ln(1 + e^x) rounds to x in float32
    x = np.linspace(-60, 200, 5201).astype(np.float32).astype(np.float64)[None]
    got, nodes = onnx_run("softplus", {}, x)
    assert nodes == ["Softplus"]
    want = torch_run("softplus", {}, x)
    above = x > 20
    assert np.array_equal(got[above], want[above]) and np.array_equal(want[above], x[above])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_gelu_tanh_differs_from_erf_by_a_little():
    x = np.linspace(-4, 4, 801)[None]
    exact = op("gelu").reference([x], {})
    approx = op("gelu", approximate="tanh").reference([x], {})
    gap = np.abs(exact - approx).max()
    assert 1e-4 < gap < 1e-3  # the approximation is good to ~5e-4, not exact
    assert exact[0, 500] == pytest.approx(0.8413447460685429, rel=1e-14)  # gelu(1) = Φ(1)
    for kind_attrs in ({}, {"approximate": "tanh"}):
        ref = op("gelu", **kind_attrs).reference([x], {})
        np.testing.assert_allclose(torch_run("gelu", kind_attrs, x, "float64"), ref, rtol=1e-13,
                                   atol=1e-15)
        got, nodes = onnx_run("gelu", kind_attrs, x)
        assert nodes == ["Gelu"]
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_onnx_lowerings():
    x = np.zeros((1, 4))
    assert onnx_run("relu6", {}, x)[1] == ["Clip"]
    assert onnx_run("hardtanh", {}, x)[1] == ["Clip"]
    assert onnx_run("hardswish", {}, x)[1] == ["HardSwish"]
    assert onnx_run("silu", {}, x)[1] == ["Sigmoid", "Mul"]
    assert onnx_run("mish", {}, x)[1] == ["Mish"]
    assert onnx_run("softsign", {}, x)[1] == ["Softsign"]
    pytest.importorskip("onnx")
    from nnspec.compiler.onnx_build import build_onnx
    from nnspec.verify.sweep import one_node_graph

    def nodes(kind, **attrs):
        model = build_onnx(one_node_graph(op(kind, **attrs), [t(4)]), {})
        return [n for n in model.graph.node if n.op_type not in ("Constant", "Identity")]

    (hs,) = nodes("hardsigmoid")  # torch's constants, not ONNX's default alpha 0.2
    got = {a.name: a.f for a in hs.attribute}
    assert hs.op_type == "HardSigmoid" and got == pytest.approx({"alpha": 1 / 6, "beta": 0.5})
    (both,) = nodes("clamp", min=-1.0, max=2.0)
    assert len(both.input) == 3 and all(both.input)
    (low,) = nodes("clamp", min=-1.0)
    assert len(low.input) == 2  # no max input: no upper bound
    (high,) = nodes("clamp", max=2.0)
    assert list(high.input)[1] == "" and len(high.input) == 3  # min skipped: no lower bound


def test_clamp_torch_lowering():
    import ast

    calls = {
        "both": op("clamp", min=-1.0, max=2.0).torch_call([t(4)]),
        "min": op("clamp", min=-1.0).torch_call([t(4)]),
        "max": op("clamp", max=2.0).torch_call([t(4)]),
    }
    assert calls["both"].cls == "nn.Hardtanh" and calls["both"].kwargs == {"min_val": -1.0,
                                                                           "max_val": 2.0}
    assert calls["min"].cls == "nn.Threshold" and calls["min"].kwargs == {"threshold": -1.0,
                                                                          "value": -1.0}
    assert calls["max"].cls == "nn.Hardtanh" and calls["max"].kwargs == {"min_val": -F32_MAX,
                                                                         "max_val": 2.0}
    for call in calls.values():  # written into standalone Python: no `inf`
        assert all(ast.literal_eval(repr(v)) == v for v in call.kwargs.values())
    # every finite float32 passes the stand-in bound unchanged
    x = np.array([[-F32_MAX, -1e38, -3.0, 5.0]], dtype=np.float32).astype(np.float64)
    assert torch_run("clamp", {"max": 2.0}, x).tolist() == [[*x[0, :3], 2.0]]


def test_swish_is_silu():
    from nnspec.spec.loader import load_text
    from nnspec.spec.models import elaborate_model

    assert REGISTRY["swish"] is REGISTRY["silu"]
    assert REGISTRY["silu"].kind == "silu" and REGISTRY["silu"].aliases == ("swish",)
    graph, _warnings = elaborate_model(load_text(
        "model M {\n    input x: [4]\n    x -> swish -> silu -> output\n}\n"))
    assert [n.op for n in graph.nodes] == ["silu", "silu"]
    assert [n.name for n in graph.nodes] == ["silu_1", "silu_2"]


def test_modern_defaults_and_positional():
    assert (op("hardtanh").min, op("hardtanh").max) == (-1.0, 1.0)
    assert (op("clamp", min=0).min, op("clamp", min=0).max) == (0.0, None)
    assert (op("softplus").beta, op("softplus").threshold) == (1.0, 20.0)
    assert REGISTRY["hardtanh"].positional == REGISTRY["clamp"].positional == ("min", "max")
    assert REGISTRY["softplus"].positional == ("beta", "threshold")
    assert REGISTRY["clamp"].signature() == "clamp(min=none, max=none)"
    assert REGISTRY["hardtanh"].signature() == "hardtanh(min=-1.0, max=1.0)"
    assert REGISTRY["softplus"].signature() == "softplus(beta=1.0, threshold=20.0)"
    for kind in MODERN:
        assert REGISTRY[kind].family == "activation"


@pytest.mark.parametrize("attrs", [
    {"beta": 0.0}, {"beta": -1.0}, {"threshold": 0.0}, {"beta": float("nan")},
    {"threshold": float("inf")},
])
def test_softplus_ranges(attrs):
    with pytest.raises(ValidationError):
        op("softplus", **attrs)


@pytest.mark.parametrize(("kind", "attrs"), [
    ("hardtanh", {"max": float("inf")}), ("hardtanh", {"min": float("nan")}),
    ("hardtanh", {"min": -1e39}), ("clamp", {"max": float("inf")}), ("clamp", {"min": 1e39}),
])
def test_bounds_are_finite_float32(kind, attrs):
    with pytest.raises(ValidationError):
        op(kind, **attrs)


@pytest.mark.parametrize(("kind", "attrs", "arg", "message"), [
    ("hardtanh", {"min": 1.0, "max": -1.0}, "max", "hardtanh needs min < max, got min=1 and max=-1"),
    ("hardtanh", {"min": 2.0}, "min", "hardtanh needs min < max, got min=2 and max=1"),
    ("hardtanh", {"max": -1.0}, "max", "hardtanh needs min < max, got min=-1 and max=-1"),
    ("clamp", {"min": 0.5, "max": 0.25}, "max", "clamp needs min < max, got min=0.5 and max=0.25"),
])
def test_bounds_in_order(kind, attrs, arg, message):
    layer = op(kind, **attrs)
    for ask in (lambda: layer.infer([t(4)]), lambda: layer.torch_call([t(4)])):
        with pytest.raises(ShapeError) as err:
            ask()
        assert err.value.code == codes.BAD_ARG and err.value.arg == arg
        assert err.value.message == message


def test_clamp_needs_a_bound():
    with pytest.raises(ShapeError) as err:
        op("clamp").infer([t(4)])
    assert err.value.code == codes.MISSING_ARG and err.value.arg is None
    assert "`min`, `max` or both" in err.value.message
    assert op("clamp", max=1).infer([t(4)]) == t(4)


def diagnostics_of(call: str):
    from nnspec.spec.diagnostics import DiagnosticError
    from nnspec.spec.loader import load_text
    from nnspec.spec.models import elaborate_model

    text = f"model M {{\n    input x: [3, 8]\n    x -> {call} -> output\n}}\n"
    with pytest.raises(DiagnosticError) as err:
        elaborate_model(load_text(text))
    return [d for d in err.value.diagnostics if d.severity == "error"]


# the layer starts at column 10 of `    x -> ...`
@pytest.mark.parametrize(("call", "code", "col", "words"), [
    ("hardtanh(2, 1)", codes.BAD_ARG, 22, ["min < max", "min=2 and max=1"]),
    ("hardtanh(min=2)", codes.BAD_ARG, 23, ["min=2 and max=1"]),
    ("hardtanh(max=-3)", codes.BAD_ARG, 23, ["min=-1 and max=-3"]),
    ("clamp(3, 1)", codes.BAD_ARG, 19, ["clamp needs min < max", "min=3 and max=1"]),
    ("clamp(min=1, max=1)", codes.BAD_ARG, 27, ["min=1 and max=1"]),
    ("clamp", codes.MISSING_ARG, 10, ["`clamp` needs a bound"]),
    ("clamp(max=-1e39)", codes.BAD_ARG, 20, ["`max` of `clamp`"]),
    ("softplus(0)", codes.BAD_ARG, 19, ["`beta` of `softplus`: 0"]),
    ("softplus(threshold=-1)", codes.BAD_ARG, 29, ["`threshold` of `softplus`"]),
    ("hardsigmoid(alpha=0.2)", codes.UNKNOWN_ARG, 22, ["no argument `alpha`"]),
    ("relu6(6)", codes.TOO_MANY_ARGS, 16, ["`relu6` takes 0 positional"]),
    ('gelu(approximate="erf")', codes.BAD_ARG, 27, ['"erf"']),
])
def test_argument_errors_are_located(call, code, col, words):
    first = diagnostics_of(call)[0]
    assert first.code == code
    assert first.span.line == 3 and first.span.col == col, (first.span.col, first.message)
    assert all(w in first.message for w in words), first.message


def test_bound_error_notes_say_which_bound_is_the_default():
    (d,) = diagnostics_of("hardtanh(min=2)")
    assert d.notes == ("min < max fails: 2 >= 1", "max=1 is the default")
    assert d.help == "swap the bounds: `hardtanh(min=1, max=2)`"


KINKS = {  # kind -> where its derivative jumps (or, for softplus, the output itself)
    "relu6": lambda o: [0.0, 6.0],
    "hardtanh": lambda o: [o.min, o.max],
    "clamp": lambda o: [b for b in (o.min, o.max) if b is not None],
    "hardsigmoid": lambda o: [-3.0, 3.0],
    "hardswish": lambda o: [-3.0, 3.0],
    "softplus": lambda o: [o.threshold / o.beta],
    "softsign": lambda o: [0.0],
}


@pytest.mark.parametrize("kind", list(KINKS))
def test_sweep_inputs_stay_away_from_kinks(kind):
    from nnspec.verify.finite_diff import STEP
    from nnspec.verify.sweep import sample_inputs

    cls = REGISTRY[kind]
    for index, s in enumerate(cls.samples):
        layer = cls.model_validate(s.attrs)
        (x,) = sample_inputs(layer, s.inputs, index)  # the sweep's inputs (seed 0 + index)
        for kink in KINKS[kind](layer):
            assert np.abs(x - kink).min() > 1000 * STEP, (index, kink)


@pytest.mark.parametrize(("kind", "index"), [("hardtanh", 0), ("hardtanh", 1), ("clamp", 0),
                                             ("hardsigmoid", 0), ("hardswish", 0), ("softplus", 1),
                                             ("softplus", 2)])
def test_sweep_reaches_every_branch(kind, index):
    from nnspec.verify.sweep import sample_inputs

    s = REGISTRY[kind].samples[index]
    layer = REGISTRY[kind].model_validate(s.attrs)
    (x,) = sample_inputs(layer, s.inputs, index)
    edges = [-math.inf, *sorted(KINKS[kind](layer)), math.inf]
    for low, high in zip(edges, edges[1:]):
        assert ((x > low) & (x < high)).any(), (low, high)


def test_a_spec_of_modern_activations_checks_and_verifies(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from cli_runner import cli

    path = tmp_path / "modern.nn"
    path.write_text(
        "model Modern(classes: int = 4) {\n"
        "    input x: [3, 8, 8]\n"
        "    x -> conv(8, 3, padding=1) -> relu6\n"
        "      -> conv(8, 3, padding=1) -> hardswish\n"
        "      -> conv(8, 1) -> hardsigmoid -> conv(8, 1) -> silu -> swish\n"
        "      -> global_avgpool -> flatten\n"
        "      -> linear(16) -> mish -> linear(16) -> softplus(beta=2, threshold=1)\n"
        "      -> linear(16) -> hardtanh(-0.5, 2)\n"
        "      -> linear(16) -> clamp(min=-1) -> clamp(max=1.5) -> clamp(-2, 2)\n"
        "      -> linear(16) -> gelu(approximate=\"tanh\") -> softsign\n"
        "      -> linear(classes) -> output\n"
        "}\n")
    checked = cli("check", path)
    assert checked.exit_code == 0, checked.stderr
    assert all(k in checked.stdout for k in ("relu6_1", "silu_2", "clamp_3", "softsign_1"))
    verified = cli("verify", path, "--checks", "structure,gradient,equivalence")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert "0 failed" in verified.stdout + verified.stderr
