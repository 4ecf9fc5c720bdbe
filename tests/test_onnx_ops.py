"""ONNX lowering, registry sweep: every op × its samples (the table of test_torch_lowering)
exported alone by ``build_onnx`` and run by onnxruntime equals the torch module in eval mode.

Weights are perturbed away from their initial values and batchnorm statistics made
non-trivial, so eval semantics and every parameter's layout (gate orders, per-channel
slopes) are exercised. Tolerance: 1e-5 absolute for every op. An op registered without an
ONNX lowering fails the sweep.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nnspec.spec.ir import Graph, GraphInput, GraphOutput, Node, TensorType
from nnspec.spec.ops import REGISTRY, Op
from nnspec.spec.source import Span

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from test_torch_lowering import SAMPLES, batch_of  # noqa: E402  (tests/ is on sys.path)

from nnspec.compiler.onnx_build import BATCH, OnnxGraph, build_onnx  # noqa: E402
from nnspec.compiler.torch_build import build_module  # noqa: E402

ATOL = 1e-5
SPAN = Span(file="<sweep>", start=0, end=0, line=1, col=1, end_line=1, end_col=1)
OPS = sorted({cls for cls in REGISTRY.values()}, key=lambda c: c.kind)


def one_node_graph(op: Op, types: list[TensorType]) -> Graph:
    """A model of one node `layer` on inputs x0, x1, ... with output `y`."""
    inputs = tuple(GraphInput(name=f"x{i}", type=t, span=SPAN) for i, t in enumerate(types))
    out = op.infer(types)
    node = Node(name="layer", op=op.kind, attrs=op.attrs(), inputs=tuple(i.name for i in inputs),
                output=out, params=op.param_shapes(types), buffers=op.buffer_shapes(types),
                span=SPAN)
    return Graph(name="One", args={}, inputs=inputs, nodes=(node,),
                 outputs=(GraphOutput(name="y", value="layer", type=out),), span=SPAN)


def f(*shape: int) -> TensorType:
    return TensorType(shape=shape)


# branches only the ONNX lowerings have (on top of the shared table)
EXTRA: dict[str, list[tuple[dict[str, Any], list[TensorType]]]] = {
    "maxpool": [({"kernel": 2, "stride": 4, "dilation": 4, "rounding": "ceil"}, [f(2, 6)])],
    "adaptive_avgpool": [({"size": 2}, [f(3, 8, 8)]), ({"size": (5, 5)}, [f(3, 5, 5)])],
    "upsample": [({"scale": 1.5}, [f(2, 5, 5)]), ({"scale": 3, "mode": "bilinear",
                                                    "align_corners": True}, [f(2, 3, 4)])],
    "lstm": [({"hidden": 4, "layers": 3, "bidirectional": True}, [f(6, 5)])],
    "gru": [({"hidden": 4, "bias": False, "select": "sequence"}, [f(6, 5)])],
    "layernorm": [({"affine": False}, [f(7)])],
    "batchnorm": [({"affine": False}, [f(6)])],
    "instancenorm": [({"affine": True}, [f(3, 9)])],
}


def cases():
    for cls in OPS:
        for i, (attrs, inputs) in enumerate(SAMPLES.get(cls.kind, [])):
            yield pytest.param(cls.kind, attrs, inputs, id=f"{cls.kind}-{i}")
        for i, (attrs, inputs) in enumerate(EXTRA.get(cls.kind, [])):
            yield pytest.param(cls.kind, attrs, inputs, id=f"{cls.kind}-onnx{i}")


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(("kind", "attrs", "inputs"), list(cases()))
def test_onnxruntime_equals_torch(kind: str, attrs: dict[str, Any], inputs: list[TensorType]):
    op = REGISTRY[kind].model_validate(attrs)
    graph = one_node_graph(op, inputs)
    torch.manual_seed(0)
    module = build_module(graph).eval()
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("running_mean"):
                tensor.normal_()
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))  # γ ≠ 1, β ≠ 0, biases ≠ 0
        xs = [batch_of(t, op) for t in inputs]
        expected = module(*xs).numpy()
    model = build_onnx(graph, module.state_dict())
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    outputs = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.output)}
    dims = [d.dim_param or d.dim_value for d in outputs["y"].type.tensor_type.shape.dim]
    assert dims == [BATCH, *graph.nodes[0].output.shape]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {f"x{i}": x.numpy() for i, x in enumerate(xs)})[0]
    assert got.shape == expected.shape and got.dtype == expected.dtype
    err = float(np.abs(got.astype(np.float64) - expected).max()) if got.size else 0.0
    assert err <= ATOL, f"{kind} {attrs}: max |onnx - torch| = {err:.3g} > {ATOL}"


@pytest.mark.parametrize("cls", OPS, ids=lambda c: c.kind)
def test_every_op_has_an_onnx_lowering(cls: type[Op]):
    samples = SAMPLES.get(cls.kind)
    if not samples:
        pytest.fail(f"`{cls.kind}` has no sample: add one to SAMPLES in test_torch_lowering.py")
    attrs, inputs = samples[0]
    op = cls.model_validate(attrs)
    assert type(op).to_onnx is not Op.to_onnx, f"`{cls.kind}` has no ONNX lowering"
    graph = one_node_graph(op, inputs)
    module = build_module(graph)
    try:
        op.to_onnx(OnnxGraph(), [f"x{i}" for i in range(len(inputs))], inputs, "layer",
                   {k.removeprefix("layer."): v.numpy() for k, v in module.state_dict().items()
                    if v.dtype.is_floating_point})
    except NotImplementedError as exc:
        pytest.fail(str(exc))


def test_extra_samples_reach_their_branches():
    op = REGISTRY["maxpool"].model_validate(EXTRA["maxpool"][0][0])
    model = build_onnx(one_node_graph(op, EXTRA["maxpool"][0][1]), {})
    assert [n.op_type for n in model.graph.node if n.op_type != "Constant"][:2] == ["Pad", "MaxPool"]


def test_a_missing_lowering_is_reported():
    class Nothing(Op):
        kind = "nothing"

    with pytest.raises(NotImplementedError, match="`nothing` has no ONNX lowering"):
        Nothing().to_onnx(OnnxGraph(), ["x"], [TensorType(shape=(3,))], "layer", {})
