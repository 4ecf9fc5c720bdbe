"""rnn, lstm, gru: output shapes, torch's parameter names and shapes, MACs, errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nnspec.spec import codes
from nnspec.spec.ir import TensorType
from nnspec.spec.ops import REGISTRY, ShapeError

TORCH = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def t(*shape: int, dtype: str = "float32") -> TensorType:
    return TensorType(shape=shape, dtype=dtype)


def op(kind: str, **attrs):
    return REGISTRY[kind].model_validate(attrs)


@pytest.mark.parametrize("kind", list(TORCH))
@pytest.mark.parametrize(
    ("layers", "bidirectional", "bias"), [(1, False, True), (2, True, True), (3, False, False)]
)
def test_params_match_torch_state_dict(kind, layers, bidirectional, bias):
    torch = pytest.importorskip("torch")
    cell = op(kind, hidden=20, layers=layers, bidirectional=bidirectional, bias=bias)
    module = getattr(torch.nn, TORCH[kind])(
        10, 20, layers, bias=bias, bidirectional=bidirectional, batch_first=True
    )
    expected = [(k, tuple(v.shape)) for k, v in module.state_dict().items()]
    assert list(cell.param_shapes([t(7, 10)]).items()) == expected  # names, shapes and order
    assert cell.buffer_shapes([t(7, 10)]) == {}


def test_lstm_bidirectional_two_layers():
    lstm = op("lstm", hidden=20, layers=2, bidirectional=True)
    shapes = lstm.param_shapes([t(7, 10)])
    assert shapes["weight_ih_l0"] == (80, 10)
    assert shapes["weight_ih_l1_reverse"] == (80, 40)
    assert shapes["weight_hh_l1"] == (80, 20)
    assert shapes["bias_hh_l0_reverse"] == (80,)
    assert len(shapes) == 16


@pytest.mark.parametrize("kind", list(TORCH))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("select", ["last", "sequence"])
def test_output_shape_matches_torch(kind, bidirectional, select):
    torch = pytest.importorskip("torch")
    cell = op(kind, hidden=20, layers=2, bidirectional=bidirectional, select=select)
    y = cell.infer([t(7, 10)])
    module = getattr(torch.nn, TORCH[kind])(
        10, 20, 2, bidirectional=bidirectional, batch_first=True
    )
    out, h_n = module(torch.randn(3, 7, 10))
    if kind == "lstm":
        h_n = h_n[0]
    dirs = 2 if bidirectional else 1
    last = torch.cat(list(h_n[-dirs:]), dim=-1)  # the last layer's directions, concatenated
    expected = out if select == "sequence" else last
    assert tuple(expected.shape[1:]) == y.shape
    if not bidirectional:  # one direction: the final state is the last output step
        assert torch.allclose(last, out[:, -1])


def test_select_last_default():
    assert op("gru", hidden=32).infer([t(50, 8)]) == t(32)
    assert op("gru", hidden=32, bidirectional=True).infer([t(50, 8)]) == t(64)
    assert op("rnn", hidden=32, select="sequence").infer([t(50, 8)]) == t(50, 32)


@pytest.mark.parametrize("kind", list(TORCH))
def test_macs(kind):
    cell = op(kind, hidden=20, layers=2, bidirectional=True)
    x = t(7, 10)
    g = GATES[kind]
    expected = 7 * (2 * g * 20 * (10 + 20) + 2 * g * 20 * (40 + 20))
    assert cell.macs([x], cell.infer([x])) == expected
    # = T · (number of weights in the weight matrices)
    weights = sum(
        a * b
        for name, (a, b) in [(k, v) for k, v in cell.param_shapes([x]).items() if "weight" in k]
    )
    assert expected == 7 * weights
    assert cell.receptive_step([x]) is None


def test_lstm_macs_numbers():
    lstm = op("lstm", hidden=20, layers=2, bidirectional=True)
    assert lstm.macs([t(7, 10)], t(40)) == 100_800


def test_positional_and_attributes():
    for kind in TORCH:
        assert REGISTRY[kind].positional == ("hidden", "layers")
    assert op("rnn", hidden=8, nonlinearity="relu").nonlinearity == "relu"
    with pytest.raises(ValidationError):
        op("lstm", hidden=8, nonlinearity="relu")  # only rnn has a nonlinearity
    with pytest.raises(ValidationError):
        op("rnn", hidden=8, nonlinearity="sigmoid")
    with pytest.raises(ValidationError):
        op("gru", hidden=0)
    with pytest.raises(ValidationError):
        op("gru", hidden=8, layers=0)
    with pytest.raises(ValidationError):
        op("lstm", hidden=8, select="first")


@pytest.mark.parametrize("kind", list(TORCH))
def test_rank_and_dtype_errors(kind):
    cell = op(kind, hidden=8)
    with pytest.raises(ShapeError) as err:
        cell.infer([t(3, 28, 28)])
    assert err.value.code == codes.RANK and "rank 3" in err.value.message
    assert "[T, F]" in err.value.message
    with pytest.raises(ShapeError) as err:
        cell.infer([t(50, 4, dtype="int64")])
    assert err.value.code == codes.DTYPE and "int[50, 4]" in err.value.message
    assert "embedding" in err.value.help


@pytest.mark.parametrize("kind", list(TORCH))
def test_docstring_is_a_contract(kind):
    doc = REGISTRY[kind].__doc__
    assert all(word in doc for word in ("Shape:", "Params:", "MACs:"))
