"""linear and embedding: shapes, parameters against torch, MACs, errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nnspec.spec import codes
from nnspec.spec.ir import TensorType
from nnspec.spec.ops import REGISTRY, ShapeError


def t(*shape: int, dtype: str = "float32") -> TensorType:
    return TensorType(shape=shape, dtype=dtype)


def op(kind: str, **attrs):
    return REGISTRY[kind].model_validate(attrs)


def torch_shapes(module) -> tuple[dict, dict]:
    params = {k: tuple(v.shape) for k, v in module.named_parameters()}
    buffers = {k: tuple(v.shape) for k, v in module.named_buffers()}
    return params, buffers


@pytest.mark.parametrize(
    ("shape", "out"), [((84,), (10,)), ((7, 32), (7, 10)), ((3, 4, 5), (3, 4, 10))]
)
def test_linear_acts_on_last_axis(shape, out):
    lin = op("linear", features=10)
    x = t(*shape)
    y = lin.infer([x])
    assert y == t(*out)
    assert lin.param_shapes([x]) == {"weight": (10, shape[-1]), "bias": (10,)}
    assert lin.macs([x], y) == shape[-1] * 10 * (y.numel // 10)


def test_linear_macs_counts_leading_axes():
    lin = op("linear", features=10)
    x = t(7, 32)
    assert lin.macs([x], lin.infer([x])) == 32 * 10 * 7
    assert lin.receptive_step([x]) is None


@pytest.mark.parametrize("bias", [True, False])
def test_linear_params_match_torch(bias):
    torch = pytest.importorskip("torch")
    lin = op("linear", features=10, bias=bias)
    x = t(7, 32)
    module = torch.nn.Linear(32, 10, bias=bias)
    assert torch_shapes(module) == (lin.param_shapes([x]), {})
    assert tuple(module(torch.zeros(2, 7, 32)).shape[1:]) == lin.infer([x]).shape


def test_linear_positional_and_ranges():
    assert REGISTRY["linear"].positional == ("features",)
    with pytest.raises(ValidationError):
        op("linear", features=0)
    with pytest.raises(ValidationError):
        op("linear", features=10, scale=2)


def test_linear_rejects_rank_0_and_ids():
    lin = op("linear", features=10)
    with pytest.raises(ShapeError) as err:
        lin.infer([t()])
    assert err.value.code == codes.RANK and "rank 0" in err.value.message
    with pytest.raises(ShapeError) as err:
        lin.infer([t(12, dtype="int64")])
    assert err.value.code == codes.DTYPE and "int[12]" in err.value.message
    assert "embedding" in err.value.help


@pytest.mark.parametrize(("shape", "out"), [((12,), (12, 16)), ((), (16,)), ((3, 12), (3, 12, 16))])
def test_embedding_shapes(shape, out):
    emb = op("embedding", num=100, dim=16)
    x = t(*shape, dtype="int64")
    y = emb.infer([x])
    assert y == t(*out)
    assert emb.param_shapes([x]) == {"weight": (100, 16)}
    assert emb.macs([x], y) == 0


@pytest.mark.parametrize("padding_idx", [None, 0, -1])
def test_embedding_params_match_torch(padding_idx):
    torch = pytest.importorskip("torch")
    emb = op("embedding", num=100, dim=16, padding_idx=padding_idx)
    x = t(12, dtype="int64")
    module = torch.nn.Embedding(100, 16, padding_idx=padding_idx)
    assert torch_shapes(module) == (emb.param_shapes([x]), {})
    ids = torch.zeros(2, 12, dtype=torch.int64)
    assert tuple(module(ids).shape[1:]) == emb.infer([x]).shape


def test_embedding_positional():
    assert REGISTRY["embedding"].positional == ("num", "dim")


def test_embedding_rejects_floats():
    emb = op("embedding", num=100, dim=16)
    with pytest.raises(ShapeError) as err:
        emb.infer([t(12)])
    assert err.value.code == codes.DTYPE
    assert "[12]" in err.value.message and "int[" in err.value.help


def test_embedding_padding_idx_out_of_range():
    emb = op("embedding", num=100, dim=16, padding_idx=100)
    with pytest.raises(ShapeError) as err:
        emb.infer([t(12, dtype="int64")])
    assert err.value.code == codes.BAD_ARG and err.value.arg == "padding_idx"
    assert "100" in err.value.message


@pytest.mark.parametrize("kind", ["linear", "embedding"])
def test_docstring_is_a_contract(kind):
    doc = REGISTRY[kind].__doc__
    assert all(word in doc for word in ("Shape:", "Params:", "MACs:"))
