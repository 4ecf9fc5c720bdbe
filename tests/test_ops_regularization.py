"""drop_path (stochastic depth) on the compiled torch module: per-sample keep-or-zero with
1/(1-p) scaling in training, the identity in eval and for p = 0, no ONNX node; beside it
dropout, which draws per element."""

from __future__ import annotations

import numpy as np
import pytest

from nnspec.spec import codes
from nnspec.spec.ir import TensorType
from nnspec.spec.ops import REGISTRY

torch = pytest.importorskip("torch")

SPEC = """
model Net {
    input x: [3, 4, 4]
    h = x -> drop_path(P)
    x + h -> output
}
"""


def compiled(p: float):
    from nnspec.api import load
    from nnspec.compiler.torch_build import build_module

    model = load(text=SPEC.replace("P", repr(p)))
    return model, build_module(model.graph)


def branch(module):
    return module.get_submodule("h.drop_path_1")


@pytest.mark.parametrize("p", [0.5, 0.25, 0.1])
def test_train_keeps_or_zeroes_each_whole_sample(p):
    model, module = compiled(p)
    layer = branch(module)
    assert type(layer).__name__ == "DropPath" and layer.p == p
    assert sum(v.numel() for v in module.state_dict().values()) == 0
    n = 20_000
    torch.manual_seed(0)
    x = torch.rand(n, 3, 4, 4) + 0.5  # no zero entries: a zeroed sample is the mask's doing
    layer.train()
    y = layer(x)
    zero = (y == 0).flatten(1).all(1)
    scaled = x / (1 - p)
    kept = torch.isclose(y, scaled, rtol=1e-6, atol=0).flatten(1).all(1)
    assert torch.all(zero ^ kept)  # every sample is either all zeros or exactly x / (1 - p)
    if p == 0.5:  # 1 / (1 - p) = 2 exactly
        assert torch.equal(y[kept], 2 * x[kept])
    fraction = kept.double().mean().item()
    # the kept fraction is Binomial(n, 1 - p) / n: within 5 standard deviations of 1 - p
    assert abs(fraction - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n), fraction
    # unbiased: the mean over samples stays x's mean (inverted scaling)
    assert abs(y.mean().item() - x.mean().item()) < 5 * np.sqrt(p / (1 - p) / n)
    # the whole model in train mode: x + h, h per sample x/(1-p) or 0
    module.train()
    out = module(x[:64])
    per = (out - x[:64]).flatten(1)
    assert torch.all((per == 0).all(1) | torch.isclose(out, x[:64] * (1 + 1 / (1 - p)),
                                                       rtol=1e-6).flatten(1).all(1))


def test_gradient_follows_the_mask():
    _, module = compiled(0.5)
    layer = branch(module).train()
    torch.manual_seed(1)
    x = torch.randn(200, 3, 4, 4, requires_grad=True)
    layer(x).sum().backward()
    grads = x.grad.flatten(1)
    assert torch.all((grads == 0).all(1) | (grads == 2).all(1))
    assert 0 < int((grads == 2).all(1).sum()) < 200


def test_eval_and_p_zero_are_the_identity():
    x = torch.randn(50, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    _, module = compiled(0.3)
    layer = branch(module).eval()
    assert torch.equal(layer(x), x)
    assert torch.equal(module.eval()(x), x + x)
    _, module = compiled(0.0)
    layer = branch(module).train()
    assert torch.equal(layer(x), x)


def test_per_sample_not_per_element_unlike_dropout():
    from nnspec.compiler.torch_build import instantiate

    x = torch.ones(400, 3, 4, 4)
    torch.manual_seed(3)
    drop = instantiate(REGISTRY["dropout"].model_validate({"p": 0.5}).torch_call(
        [TensorType(shape=(3, 4, 4))])).train()
    mixed = (drop(x) == 0).flatten(1)
    assert bool((mixed.any(1) & ~mixed.all(1)).any())  # dropout zeroes parts of samples
    path = instantiate(REGISTRY["drop_path"].model_validate({"p": 0.5}).torch_call(
        [TensorType(shape=(3, 4, 4))])).train()
    whole = (path(x) == 0).flatten(1)
    assert torch.equal(whole.any(1), whole.all(1))  # drop_path never does


def test_onnx_has_no_node_and_reference_is_identity():
    ort = pytest.importorskip("onnxruntime")
    from nnspec.compiler.onnx_build import build_onnx
    from nnspec.verify.sweep import one_node_graph

    dp = REGISTRY["drop_path"].model_validate({"p": 0.2})
    x = TensorType(shape=(5, 8))
    graph = one_node_graph(dp, [x])
    model = build_onnx(graph, {})
    assert [n.op_type for n in model.graph.node if n.op_type != "Identity"] == []
    xs = np.random.default_rng(0).normal(size=(3, 5, 8)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.array_equal(session.run(None, {"x0": xs})[0], xs)
    assert np.array_equal(dp.reference([xs.astype(np.float64)], {}), xs.astype(np.float64))


def test_drop_path_facts_and_errors():
    cls = REGISTRY["drop_path"]
    assert cls.signature() == "drop_path(p)" and cls.family == "regularization"
    dp = cls.model_validate({"p": 0.1})
    x = TensorType(shape=(96, 14, 14))
    assert dp.infer([x]) == x and dp.param_shapes([x]) == {} and dp.macs([x], x) == 0
    assert dp.torch_call([x]).cls == "DropPath" and dp.torch_call([x]).kwargs == {"p": 0.1}
    assert all(word in cls.__doc__ for word in ("Shape:", "Params:", "MACs:"))
    from nnspec.spec.diagnostics import DiagnosticError
    from nnspec.spec.loader import load_text
    from nnspec.spec.models import elaborate_model

    for call, code, message in [
        ("drop_path", codes.MISSING_ARG, "`drop_path` needs `p`"),
        ("drop_path(1.0)", codes.BAD_ARG, "invalid value for `p` of `drop_path`: 1.0"),
        ("drop_path(p=-0.1)", codes.BAD_ARG, "invalid value for `p` of `drop_path`: -0.1"),
    ]:
        text = f"model M {{\n    input x: [3, 8]\n    x -> {call} -> output\n}}\n"
        with pytest.raises(DiagnosticError) as err:
            elaborate_model(load_text(text))
        (d,) = [d for d in err.value.diagnostics if d.severity == "error"]
        assert (d.code, d.message, d.span.line) == (code, message, 3)
