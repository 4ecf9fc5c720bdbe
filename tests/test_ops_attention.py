"""attention: nn.MultiheadAttention's layout and outputs, the MACs formula, one or two inputs
in spec text, located errors, the decomposed ONNX graph; the ViT example maps one to one onto
a torchvision-layout ViT built by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.spec import codes
from nnspec.spec.diagnostics import DiagnosticError
from nnspec.spec.ir import TensorType
from nnspec.spec.ops import REGISTRY, ShapeError

torch = pytest.importorskip("torch")

from nnspec.compiler.torch_build import build_module, instantiate  # noqa: E402


def t(*shape: int) -> TensorType:
    return TensorType(shape=shape)


def op(**attrs):
    return REGISTRY["attention"].model_validate(attrs)


def pair(heads: int, d: int, bias: bool = True, causal: bool = False):
    """Our module (perturbed weights) and nn.MultiheadAttention holding its state_dict."""
    torch.manual_seed(0)
    ours = instantiate(op(heads=heads, bias=bias, causal=causal).torch_call([t(5, d)])).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ref = torch.nn.MultiheadAttention(d, heads, bias=bias, batch_first=True).eval()
    ref.load_state_dict(ours.state_dict())
    return ours, ref


@pytest.mark.parametrize("bias", [True, False])
def test_parameters_are_multihead_attentions(bias):
    ref = torch.nn.MultiheadAttention(12, 3, bias=bias, batch_first=True)
    shapes = op(heads=3, bias=bias).param_shapes([t(7, 12)])
    assert shapes == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert list(shapes) == list(ref.state_dict())  # the same order too
    assert sum(math.prod(s) for s in shapes.values()) == (4 * 144 + 4 * 12 if bias else 4 * 144)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lengths", [(5, None), (3, 7), (6, 6)])
def test_state_dict_loads_into_multihead_attention_with_the_same_output(bias, lengths):
    ours, ref = pair(4, 16, bias)
    lq, lk = lengths
    q = torch.randn(3, lq, 16)
    kv = q if lk is None else torch.randn(3, lk, 16)
    with torch.no_grad():
        got = ours(q) if lk is None else ours(q, kv)
        want = ref(q, kv, kv, need_weights=False)[0]
    assert got.shape == (3, lq, 16)
    assert float((got - want).abs().max()) <= 1e-5


@pytest.mark.parametrize("lengths", [(6, None), (4, 9)])
def test_causal_equals_multihead_attention_with_a_triangular_mask(lengths):
    ours, ref = pair(2, 8, causal=True)
    lq, lk = lengths
    q = torch.randn(2, lq, 8)
    kv = q if lk is None else torch.randn(2, lk, 8)
    blocked = torch.ones(lq, lk or lq, dtype=torch.bool).triu(1)  # MHA: True = not allowed
    with torch.no_grad():
        got = ours(q) if lk is None else ours(q, kv)
        want = ref(q, kv, kv, attn_mask=blocked, need_weights=False)[0]
    assert float((got - want).abs().max()) <= 1e-5
    # query 0 sees key 0 only: changing the later keys leaves it unchanged
    later = kv.clone()
    later[:, 1:] += 1.0
    with torch.no_grad():
        moved = ours(later) if lk is None else ours(q, later)
    assert float((got[:, 0] - moved[:, 0]).abs().max()) <= 1e-6
    assert float((got[:, 1:] - moved[:, 1:]).abs().max()) > 1e-3


def test_dropout_only_in_training():
    module = instantiate(op(heads=2, dropout=0.5).torch_call([t(6, 8)]))
    x = torch.randn(4, 6, 8)
    module.eval()
    with torch.no_grad():
        assert torch.equal(module(x), module(x))
        module.train()
        torch.manual_seed(1)
        a = module(x)
        torch.manual_seed(2)
        b = module(x)
    assert float((a - b).abs().max()) > 1e-3


def test_macs_formula():
    self_attn = op(heads=12)
    x = t(197, 768)
    # L·D·3D + Lq·Lk·D (QKᵀ) + Lq·Lk·D (AV) + Lq·D·D
    assert self_attn.macs([x], x) == 197 * 768 * 2304 + 2 * 197 * 197 * 768 + 197 * 768 * 768
    assert self_attn.macs([x], x) == 524_391_936
    q, kv = t(10, 64), t(30, 64)
    # Lq·D·D + 2·Lk·D·D + 2·Lq·Lk·D + Lq·D·D
    assert op(heads=8).macs([q, kv], q) == 10 * 4096 + 2 * 30 * 4096 + 2 * 10 * 30 * 64 + 10 * 4096


SPEC = """
model Seq {
    input x: [10, 32]
    input memory: [7, 32]
    a = x -> attention(4)
    b = attention(a, memory, heads=8, causal=true)
    c = b -> attention(memory, 2, bias=false)
    c -> output
}
"""


def test_one_piped_or_two_positional_inputs():
    model = nnspec.load(text=SPEC)
    nodes = {n.name: n for n in model.graph.nodes}
    assert nodes["a.attention_1"].inputs == ("x",)
    assert nodes["b.attention_1"].inputs == ("a.attention_1", "memory")
    assert nodes["b.attention_1"].attrs["causal"] is True
    assert nodes["c.attention_1"].inputs == ("b.attention_1", "memory")
    assert nodes["c.attention_1"].attrs["heads"] == 2
    assert [n.output.shape for n in nodes.values()] == [(10, 32)] * 3
    assert model.summary().total_params == 2 * (4 * 32 * 32 + 4 * 32) + 4 * 32 * 32
    assert nodes["a.attention_1"].receptive_field is None


def errors(text: str) -> list:
    with pytest.raises(DiagnosticError) as err:
        nnspec.load(text=text)
    return [d for d in err.value.diagnostics if d.severity == "error"]


def test_heads_must_divide_the_width():
    with pytest.raises(ShapeError) as err:
        op(heads=5).infer([t(4, 12)])
    e = err.value
    assert e.code == codes.DIVISIBLE and e.arg == "heads"
    assert e.message == "the embedding width D (12) is not divisible by heads (5)"
    assert e.help == "use heads dividing 12: 1, 2, 3, 4, 6, 12"


def test_cross_widths_must_agree_and_three_inputs_are_refused():
    (d,) = errors("model M {\n input q: [4, 32]\n input kv: [6, 16]\n"
                  " attention(q, kv, heads=4) -> output\n}\n")
    assert d.code == codes.ARGUMENT_SHAPE and "the query is [4, 32], the keys/values [6, 16]" in d.message
    assert d.span.line == 4 and d.span.col == 15  # the caret under `kv`
    (d,) = errors("model M {\n input q: [4, 32]\n attention(q, q, q, heads=4) -> output\n}\n")
    assert d.code == codes.BAD_ARG and d.message == "`attention` takes one to two inputs, got 3"
    (d,) = errors("model M {\n input q: [3, 4, 32]\n q -> attention(4) -> output\n}\n")
    assert d.code == codes.RANK and "token sequence [L, D] (rank 2)" in d.message


@pytest.mark.parametrize("causal", [False, True])
def test_onnx_is_decomposed_with_an_additive_causal_mask(causal):
    pytest.importorskip("onnx")
    from nnspec.compiler.onnx_build import build_onnx

    text = f"model M {{\n input x: [5, 8]\n x -> attention(2, causal={str(causal).lower()}) -> output\n}}\n"
    graph = nnspec.load(text=text).graph
    module = build_module(graph)
    model = build_onnx(graph, module.state_dict())
    kinds = [n.op_type for n in model.graph.node]
    assert "Attention" not in kinds and kinds.count("Softmax") == 1
    assert kinds.count("MatMul") == 4 and kinds.count("Split") == 1
    assert sorted(i.name for i in model.graph.initializer) == [
        "attention_1.in_proj_bias", "attention_1.in_proj_weight", "attention_1.out_proj.bias",
        "attention_1.out_proj.weight"]
    masks = [n for n in model.graph.node if n.op_type == "Constant"
             and n.attribute[0].t.dims == [5, 5]]
    assert len(masks) == int(causal)
    if causal:
        from onnx import numpy_helper
        mask = numpy_helper.to_array(masks[0].attribute[0].t)
        assert np.array_equal(np.isinf(mask), np.triu(np.ones((5, 5), bool), 1))
        assert mask[np.tril_indices(5)].max() == 0


class TorchvisionViT(torch.nn.Module):
    """torchvision's VisionTransformer layout, written by hand (torchvision is not a
    dependency): conv_proj, class_token, encoder (pos_embedding, layers, ln), heads.head."""

    def __init__(self, size, patch, layers, heads, hidden, mlp, classes):
        super().__init__()
        nn = torch.nn
        self.patch, self.hidden = patch, hidden
        self.conv_proj = nn.Conv2d(3, hidden, patch, stride=patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden))
        seq = (size // patch) ** 2 + 1
        self.encoder = nn.Module()
        self.encoder.pos_embedding = nn.Parameter(torch.randn(1, seq, hidden) * 0.02)
        self.encoder.layers = nn.Sequential()
        for i in range(layers):
            block = nn.Module()
            block.ln_1 = nn.LayerNorm(hidden, eps=1e-6)
            block.self_attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
            block.ln_2 = nn.LayerNorm(hidden, eps=1e-6)
            block.mlp = nn.Sequential(nn.Linear(hidden, mlp), nn.GELU(), nn.Dropout(0.0),
                                      nn.Linear(mlp, hidden), nn.Dropout(0.0))
            self.encoder.layers.add_module(f"encoder_layer_{i}", block)
        self.encoder.ln = nn.LayerNorm(hidden, eps=1e-6)
        self.heads = nn.Sequential()
        self.heads.add_module("head", nn.Linear(hidden, classes))

    def forward(self, x):
        x = self.conv_proj(x).reshape(x.shape[0], self.hidden, -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.encoder.pos_embedding
        for block in self.encoder.layers:
            y = block.ln_1(x)
            y, _ = block.self_attention(y, y, y, need_weights=False)
            x = x + y
            x = x + block.mlp(block.ln_2(x))
        return self.heads(self.encoder.ln(x)[:, 0])


def test_vit_example_maps_torchvision_weights_in_order():
    args = {"size": 32, "patch": 8, "layers": 2, "heads": 2, "hidden": 16, "mlp": 24, "classes": 5}
    model = nnspec.load(Path(__file__).parent.parent / "examples" / "vit_b_16.nn", args=args)
    ours = build_module(model.graph).eval()
    torch.manual_seed(0)
    theirs = TorchvisionViT(**args).eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.05 * torch.randn_like(p))
    # torchvision's state_dict lists its own class_token first; in module order it follows
    # conv_proj, as in the spec
    names = list(theirs.state_dict())
    assert names[0] == "class_token"
    names = [names[1], names[2], names[0], *names[3:]]
    mine = list(ours.state_dict())
    assert len(mine) == len(names) == 4 + 2 * 12 + 4
    state = {}
    for key, name in zip(mine, names, strict=True):
        value = theirs.state_dict()[name]
        if name == "encoder.pos_embedding":
            value = value.squeeze(0)
        assert tuple(ours.state_dict()[key].shape) == tuple(value.shape), (key, name)
        state[key] = value
    ours.load_state_dict(state)
    assert mine[:4] == ["conv_proj.weight", "conv_proj.bias", "class_token.token",
                        "encoder.pos_embedding.weight"]
    assert mine[-2:] == ["heads.head.weight", "heads.head.bias"]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert float((ours(x) - theirs(x)).abs().max()) <= 1e-5
