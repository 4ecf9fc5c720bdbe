"""Token ops: patchify equals torchvision's conv stem, row-major tokens; class_token,
position_embedding, sinusoidal_position (Vaswani's values), token_mean, take; located errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnspec
from nnspec.spec import codes
from nnspec.spec.ir import TensorType
from nnspec.spec.ops import REGISTRY, ShapeError
from nnspec.spec.ops.tokens import sinusoid_table

torch = pytest.importorskip("torch")

from nnspec.compiler.torch_build import instantiate  # noqa: E402


def t(*shape: int) -> TensorType:
    return TensorType(shape=shape)


def op(kind: str, **attrs):
    return REGISTRY[kind].model_validate(attrs)


def module(kind: str, x: TensorType, **attrs):
    return instantiate(op(kind, **attrs).torch_call([x]))


def test_patchify_is_torchvisions_process_input():
    patchify = op("patchify", p=4, dim=6)
    x = t(3, 8, 12)
    assert patchify.infer([x]) == t(6, 6)
    assert patchify.param_shapes([x]) == {"weight": (6, 3, 4, 4), "bias": (6,)}
    assert patchify.macs([x], t(6, 6)) == 6 * 6 * 3 * 16
    m = module("patchify", x, p=4, dim=6)
    conv = torch.nn.Conv2d(3, 6, 4, stride=4)
    conv.load_state_dict(m.state_dict())
    images = torch.randn(2, 3, 8, 12)
    with torch.no_grad():
        # torchvision: conv_proj, reshape(n, hidden, h·w), permute(0, 2, 1)
        want = conv(images).reshape(2, 6, 6).permute(0, 2, 1)
        got = m(images)
    assert torch.equal(got, want)
    # row-major: token 4 is the patch at row 1, column 1 (3 patches per row)
    with torch.no_grad():
        one = torch.nn.functional.conv2d(images[:, :, 4:8, 4:8], m.weight, m.bias).flatten(1)
    assert float((got[:, 4] - one).abs().max()) <= 1e-6


def test_patchify_sizes_must_divide():
    with pytest.raises(ShapeError) as err:
        op("patchify", p=16, dim=8).infer([t(3, 224, 200)])
    e = err.value
    assert e.code == codes.DIVISIBLE and e.arg == "p"
    assert e.message == "the width (200) is not divisible by the patch size p (16)"
    assert e.help == "use a patch size dividing both 224 and 200: 2, 4, 8"
    with pytest.raises(ShapeError) as err:
        op("patchify", p=2, dim=8).infer([t(3, 7, 9)])
    assert err.value.message.startswith("the height (7)")
    assert "no common divisor above 1" in err.value.help


def test_class_token_prepends_the_learned_token():
    x = t(5, 4)
    assert op("class_token").infer([x]) == t(6, 4)
    assert op("class_token").param_shapes([x]) == {"token": (1, 1, 4)}
    m = module("class_token", x)
    assert torch.equal(m.token, torch.zeros(1, 1, 4))  # torchvision starts from zeros
    with torch.no_grad():
        m.token.copy_(torch.arange(4.0).reshape(1, 1, 4))
        seq = torch.randn(3, 5, 4)
        y = m(seq)
    assert y.shape == (3, 6, 4)
    assert torch.equal(y[:, 0], torch.arange(4.0).expand(3, 4)) and torch.equal(y[:, 1:], seq)


def test_position_embedding_adds_the_first_rows():
    pe = op("position_embedding", max_len=10)
    assert pe.param_shapes([t(4, 3)]) == {"weight": (10, 3)}
    m = module("position_embedding", t(4, 3), max_len=10)
    assert abs(float(m.weight.detach().std()) - 0.02) < 0.01
    seq = torch.randn(2, 4, 3)
    with torch.no_grad():
        assert torch.equal(m(seq), seq + m.weight[:4])
    with pytest.raises(ShapeError) as err:
        pe.infer([t(11, 3)])
    assert err.value.code == codes.ARGUMENT_SHAPE and err.value.arg == "max_len"
    assert err.value.message == "position_embedding has 10 positions but the sequence has 11 tokens"
    assert err.value.help == "use max_len=11 or more"


def test_sinusoidal_table_values():
    table = sinusoid_table(50, 6)
    assert table[0].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert table[1, 0] == math.sin(1.0) and table[1, 1] == math.cos(1.0)
    assert math.isclose(table[7, 2], math.sin(7 / 10000 ** (2 / 6)), rel_tol=1e-15)
    assert math.isclose(table[7, 5], math.cos(7 / 10000 ** (4 / 6)), rel_tol=1e-15)
    odd = sinusoid_table(3, 5)
    assert odd.shape == (3, 5) and math.isclose(odd[2, 4], math.sin(2 / 10000 ** (4 / 5)))
    assert op("sinusoidal_position").param_shapes([t(50, 6)]) == {}
    m = module("sinusoidal_position", t(50, 6))
    x = torch.zeros(1, 50, 6, dtype=torch.float64)
    assert np.allclose(m(x)[0].numpy(), table, rtol=0, atol=1e-14)
    assert list(m.state_dict()) == []


def test_token_mean_and_take():
    seq = torch.randn(2, 5, 3)
    assert op("token_mean").infer([t(5, 3)]) == t(3)
    assert op("token_mean").macs([t(5, 3)], t(3)) == 15
    assert torch.allclose(module("token_mean", t(5, 3))(seq), seq.mean(1))
    assert op("take", index=-1).infer([t(5, 3)]) == t(3)
    assert torch.equal(module("take", t(5, 3), index=-1)(seq), seq[:, 4])
    assert torch.equal(module("take", t(5, 3), index=0)(seq), seq[:, 0])
    for index in (5, -6):
        with pytest.raises(ShapeError) as err:
            op("take", index=index).infer([t(5, 3)])
        assert err.value.code == codes.ARGUMENT_SHAPE and err.value.arg == "index"
        assert err.value.message == f"take index={index} is out of range for a sequence of 5 tokens"


def test_a_small_vit_in_spec_text():
    text = """
model V {
    input x: [1, 8, 8]
    x -> patchify(4, 16) -> class_token -> position_embedding(5) -> sinusoidal_position
      -> attention(2) -> layernorm(1) -> take(0) -> linear(3) -> output
}
"""
    model = nnspec.load(text=text)
    shapes = [n.output.shape for n in model.graph.nodes]
    assert shapes == [(4, 16), (5, 16), (5, 16), (5, 16), (5, 16), (5, 16), (16,), (3,)]
    assert model.summary().total_params == (16 * 16 + 16) + 16 + 5 * 16 + (4 * 256 + 4 * 16) \
        + 32 + (16 * 3 + 3)
    patch = next(n for n in model.graph.nodes if n.op == "patchify")
    assert patch.receptive_field is not None and patch.receptive_field.size == 4
