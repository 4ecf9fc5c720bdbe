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
