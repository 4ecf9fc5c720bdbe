"""Every example in examples/ exported to ONNX and run by onnxruntime, against torch (eval).

Per example: the torch module (seeded) with non-trivial batchnorm statistics and affine
values, so eval semantics are exercised; ``build_onnx`` (which runs
``check_model(full_check=True)``); ``infer_shapes(strict_mode=True)`` giving the IR's type at
every node; initializers = the parameters and float buffers (``num_batches_tracked`` is
training-only and not exported); onnxruntime's output = torch's within 1e-5 absolute on
random inputs and, where the example trains on shipped data, on real samples; batchnorm
folding on resnet18 and digits_cnn.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import nnspec

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from nnspec.compiler.onnx_build import BATCH, build_onnx  # noqa: E402
from nnspec.compiler.torch_build import build_module  # noqa: E402
from nnspec.runtime.data.sources import Normalizer, load_builtin  # noqa: E402

EXAMPLES = Path(__file__).parent.parent / "examples"
NAMES = sorted(p.name for p in EXAMPLES.glob("*.nn"))  # not examples/blocks/
BIG = {"alexnet.nn", "vgg16.nn", "resnet50.nn", "unet_valid.nn", "xception.nn"}
SLOW = {"unet_valid.nn", "xception.nn", "vgg16.nn"}  # seconds each; still run in CI
ATOL = 1e-5  # of the output's scale max(1, max |torch output|): float32 rounding grows with it
# real samples: the data each example trains on (lstm_classifier reads digits row by row)
REAL = {
    "digits_cnn.nn": ("digits", {"as_image": True}),
    "logreg.nn": ("breast_cancer", {}),
    "linreg.nn": ("diabetes", {}),
    "lstm_classifier.nn": ("digits", {"sequence": True}),
}


def batch_size(name: str) -> int:
    return 1 if name in BIG else 2


def perturb_norms(module) -> None:
    """Running statistics and γ, β away from their initial 0 / 1 (seeded by the caller)."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("running_mean"):
                tensor.uniform_(-0.2, 0.2)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
        for sub in module.modules():
            if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm) and sub.affine:
                sub.weight.uniform_(0.8, 1.2)
                sub.bias.uniform_(-0.1, 0.1)


def session(data: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


class Exported:
    def __init__(self, name: str):
        self.name = name
        self.graph = nnspec.load(EXAMPLES / name).graph
        torch.manual_seed(0)
        self.module = build_module(self.graph).eval()
        perturb_norms(self.module)
        self.state = self.module.state_dict()
        self.model = build_onnx(self.graph, self.state)
        self.data = self.model.SerializeToString()  # once: the giant models take seconds
        self.session = session(self.data)
        torch.manual_seed(1)
        self.inputs = [
            torch.randint(0, 2, (batch_size(name), *i.type.shape)) if i.type.dtype == "int64"
            else torch.randn(batch_size(name), *i.type.shape)
            for i in self.graph.inputs
        ]

    def torch_out(self, *xs) -> np.ndarray:
        with torch.no_grad():
            return self.module(*xs).numpy()

    def onnx_out(self, *xs, sess=None) -> np.ndarray:
        feeds = {i.name: x.numpy() for i, x in zip(self.graph.inputs, xs, strict=True)}
        return (sess or self.session).run(None, feeds)[0]


@pytest.fixture(scope="module", params=[
    pytest.param(n, id=n.removesuffix(".nn"), marks=[pytest.mark.slow] if n in SLOW else [])
    for n in NAMES])
def exported(request) -> Exported:
    return Exported(request.param)


def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_examples_found():
    assert len(NAMES) >= 10 and set(REAL) <= set(NAMES)


def test_onnxruntime_equals_torch_on_random_inputs(exported: Exported):
    expected = exported.torch_out(*exported.inputs)
    got = exported.onnx_out(*exported.inputs)
    assert got.shape == expected.shape
    err = float(np.abs(got - expected).max())
    # gpt_char's tied head reads torch's N(0, 1) embedding: logits of magnitude ~40 at init
    scale = max(1.0, float(np.abs(expected).max()))
    assert err <= ATOL * scale, f"{exported.name}: max |onnx - torch| = {err:.3g} > {ATOL} × {scale:.3g}"


def test_shape_inference_gives_the_ir_types(exported: Exported):
    inferred = onnx.shape_inference.infer_shapes(exported.data, strict_mode=True)
    types = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.output)}
    checked = 0
    for node in exported.graph.nodes:
        if node.name in types:  # absent: the op is the identity in eval (dropout, identity)
            assert dims(types[node.name]) == [BATCH, *node.output.shape], node.name
            checked += 1
    assert checked >= len(exported.graph.nodes) // 2
    for out in exported.graph.outputs:
        assert dims(types[out.name]) == [BATCH, *out.type.shape]
    assert [i.name for i in exported.model.graph.input] == [i.name for i in exported.graph.inputs]
    assert [o.name for o in exported.model.graph.output] == [o.name for o in exported.graph.outputs]


def test_initializers_are_the_parameters_and_buffers(exported: Exported):
    graph, model = exported.graph, exported.model
    sizes = {t.name: math.prod(t.dims) for t in model.graph.initializer}
    training_only = sum(1 for k in exported.state if k.endswith("num_batches_tracked"))
    assert sum(sizes.values()) == graph.param_count + graph.buffer_count - training_only
    expected = {k: tuple(v.shape) for k, v in exported.state.items()
                if not k.endswith("num_batches_tracked")}
    assert {t.name: tuple(t.dims) for t in model.graph.initializer} == expected


def test_metadata(exported: Exported):
    props = {p.key: p.value for p in exported.model.metadata_props}
    assert props["model"] == exported.graph.name
    assert props["nnspec_version"] == nnspec.__version__
    assert props["output_kind"] in ("logits", "probabilities", "log_probabilities", "values")


@pytest.mark.parametrize("name", sorted(REAL), ids=lambda n: n.removesuffix(".nn"))
def test_onnxruntime_equals_torch_on_real_samples(name: str):
    case = Exported(name)
    data, options = REAL[name]
    x = load_builtin(data, **options).x[:128]
    if x.ndim == 2:  # tabular features are standardised for training
        x = Normalizer().fit(x).transform(x)
    xs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    err = float(np.abs(case.onnx_out(xs) - case.torch_out(xs)).max())
    assert err <= ATOL, f"{name}: max |onnx - torch| = {err:.3g} on {data}"


@pytest.mark.parametrize("name", ["resnet18.nn", "digits_cnn.nn"])
def test_folding_batchnorm_keeps_the_outputs(name: str):
    case = Exported(name)
    model = build_onnx(case.graph, case.state, fold_bn=True)
    kinds = [n.op_type for n in model.graph.node]
    assert "BatchNormalization" not in kinds
    folded = json.loads({p.key: p.value for p in model.metadata_props}["folded_batchnorm"])
    assert len(folded) == sum(1 for n in case.graph.nodes if n.op == "batchnorm")
    expected = case.torch_out(*case.inputs)
    err = float(np.abs(case.onnx_out(*case.inputs, sess=session(model.SerializeToString())) - expected).max())
    assert err <= ATOL, f"{name}: folded max |onnx - torch| = {err:.3g}"


FOLD_CASES = """
model Folds {
    input x: [3, 12, 12]
    a = x -> separable_conv(8, 3, padding=1, bias=false) -> batchnorm    # folded (pointwise)
    b = a -> conv(8, 3, padding=1) -> batchnorm(eps=0.001, affine=false)  # folded, own bias
    shared = b -> conv(8, 1, bias=false)
    c = shared -> batchnorm                                                # not: conv used twice
    (c + shared) -> relu -> reshape([8, 144]) -> conv1d(4, 3) -> batchnorm -> output
}
"""


def test_folding_rules():
    graph = nnspec.load(text=FOLD_CASES).graph
    torch.manual_seed(0)
    module = build_module(graph).eval()
    perturb_norms(module)
    model = build_onnx(graph, module.state_dict(), fold_bn=True)
    folded = json.loads({p.key: p.value for p in model.metadata_props}["folded_batchnorm"])
    assert folded == ["a.batchnorm_1", "b.batchnorm_1", "batchnorm_1"]  # not c.batchnorm_1
    assert [n.op_type for n in model.graph.node].count("BatchNormalization") == 1
    names = {t.name for t in model.graph.initializer}
    assert {"a.separable_conv_1.pointwise.bias", "conv1d_1.bias", "b.conv_1.bias"} <= names
    assert "c.batchnorm_1.running_mean" in names
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        expected = module(x).numpy()
    got = session(model.SerializeToString()).run(None, {"x": x.numpy()})[0]
    assert float(np.abs(got - expected).max()) <= ATOL
