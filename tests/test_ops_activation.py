"""Activations (the elementwise table, prelu, softmax, log_softmax, maxout) and dropouts."""

from __future__ import annotations

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
