"""Torch lowering, registry sweep: every op × its samples builds a module that agrees with the IR.

For each sample (attributes + input types) the module built from ``op.torch_call(inputs)``
must hold exactly the IR's parameters and buffers (names and shapes, so the state_dict keys
are the spec's), the same number of parameters, and map a batch of 2 to ``infer``'s shape.
An op registered without a sample here, or without a torch lowering, fails the sweep.
"""

from __future__ import annotations

import ast
import math
from typing import Any

import pytest

from nnspec.spec.ir import TensorType
from nnspec.spec.ops import REGISTRY, Op

torch = pytest.importorskip("torch")
torch_build = pytest.importorskip("nnspec.compiler.torch_build")

BATCH = 2


def f(*shape: int) -> TensorType:
    return TensorType(shape=shape)


def ids(*shape: int) -> TensorType:
    return TensorType(shape=shape, dtype="int64")


# kind -> [(attributes, input types)]: 1-d and 2-d variants, every rounding and lowering branch
SAMPLES: dict[str, list[tuple[dict[str, Any], list[TensorType]]]] = {
    # -- activations
    "relu": [({}, [f(3, 4, 4)]), ({}, [f(5)])],
    "sigmoid": [({}, [f(2, 8)])],
    "tanh": [({}, [f(2, 8)])],
    "gelu": [({}, [f(6)]), ({"approximate": "tanh"}, [f(3, 4, 4)])],
    "elu": [({"alpha": 0.5}, [f(3, 4, 4)])],
    "leaky_relu": [({"alpha": 0.2}, [f(2, 8)])],
    "prelu": [
        ({}, [f(3, 4, 4)]),
        ({"per_channel": True}, [f(3, 4, 4)]),
        ({"per_channel": True}, [f(4, 7)]),
        ({"per_channel": True}, [f(6)]),
    ],
    "softmax": [({}, [f(10)]), ({"axis": -1}, [f(5, 10)]), ({"axis": 1}, [f(3, 4, 5)])],
    "log_softmax": [({"axis": 0}, [f(3, 4, 4)]), ({"axis": -2}, [f(5, 10)])],
    "maxout": [({"k": 2}, [f(8)]), ({"k": 3}, [f(6, 4, 4)])],
    # -- convolutions
    "conv": [
        ({"channels": 4, "kernel": 3}, [f(3, 8, 8)]),
        ({"channels": 4, "kernel": 3, "padding": "same"}, [f(2, 10)]),
        ({"channels": 4, "kernel": 4, "padding": "same"}, [f(3, 8, 8)]),  # asymmetric same
        ({"channels": 6, "kernel": 3, "stride": 2, "dilation": 2, "groups": 3, "bias": False,
          "rounding": "floor"}, [f(3, 10, 10)]),
    ],
    "conv1d": [({"channels": 4, "kernel": 3, "stride": 2, "padding": 1}, [f(2, 15)])],
    "conv2d": [({"channels": 4, "kernel": (3, 1), "stride": (2, 1), "padding": (1, 0)},
                [f(3, 9, 5)])],
    "separable_conv": [
        ({"channels": 8, "kernel": 3, "padding": 1}, [f(4, 8, 8)]),
        ({"channels": 8, "kernel": 3, "bias": False}, [f(4, 12)]),
    ],
    "upconv": [
        ({"channels": 4, "kernel": 2, "stride": 2}, [f(8, 5, 5)]),
        ({"channels": 4, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1,
          "groups": 2}, [f(4, 7)]),
    ],
    # -- dense
    "linear": [({"features": 5}, [f(7)]), ({"features": 5, "bias": False}, [f(3, 7)])],
    "embedding": [
        ({"num": 10, "dim": 4}, [ids(6)]),
        ({"num": 10, "dim": 4, "padding_idx": 0}, [ids(2, 3)]),
        ({"num": 10, "dim": 4, "padding_idx": -1}, [ids(5)]),
    ],
    # -- normalisations
    "batchnorm": [
        ({}, [f(6)]),
        ({}, [f(4, 10)]),
        ({"eps": 1e-3, "momentum": 0.01}, [f(3, 5, 5)]),
        ({"affine": False}, [f(3, 5, 5)]),
    ],
    "layernorm": [
        ({}, [f(3, 4, 4)]),
        ({"dims": 1, "eps": 1e-6}, [f(5, 8)]),
        ({"dims": 2, "affine": False}, [f(3, 4, 4)]),
    ],
    "instancenorm": [({}, [f(3, 10)]), ({"affine": True}, [f(3, 5, 5)])],
    "groupnorm": [
        ({"groups": 2}, [f(4, 5, 5)]),
        ({"groups": 3}, [f(6, 10)]),
        ({"groups": 2}, [f(4)]),
        ({"groups": 1, "affine": False}, [f(4, 3, 3)]),
    ],
    # -- pools
    "maxpool": [
        ({"kernel": 2}, [f(3, 8, 8)]),
        ({"kernel": 3, "stride": 2, "padding": 1, "rounding": "ceil"}, [f(2, 10, 10)]),
        ({"kernel": 2, "padding": 1, "rounding": "ceil"}, [f(2, 5)]),  # last window dropped
        ({"kernel": 3, "stride": 2, "rounding": "floor"}, [f(2, 10)]),
        ({"kernel": (3, 2), "stride": 1, "dilation": 2}, [f(2, 9, 9)]),
    ],
    "avgpool": [
        ({"kernel": 2}, [f(3, 8, 8)]),
        ({"kernel": 3, "stride": 2, "padding": 1, "rounding": "ceil",
          "count_include_pad": False}, [f(2, 10, 10)]),
        ({"kernel": 2, "padding": 1, "rounding": "ceil"}, [f(2, 5)]),
        ({"kernel": 3, "stride": 2, "rounding": "floor"}, [f(2, 10)]),
    ],
    "global_avgpool": [({}, [f(3, 5, 5)]), ({}, [f(3, 7)])],
    "global_maxpool": [({}, [f(3, 5, 5)]), ({}, [f(3, 7)])],
    "adaptive_avgpool": [
        ({"size": 1}, [f(3, 5, 5)]),
        ({"size": (2, 3)}, [f(3, 7, 7)]),
        ({"size": 4}, [f(3, 10)]),
    ],
    # -- recurrent
    "rnn": [
        ({"hidden": 5}, [f(7, 3)]),
        ({"hidden": 5, "layers": 2, "nonlinearity": "relu", "bidirectional": True,
          "select": "sequence"}, [f(7, 3)]),
    ],
    "lstm": [
        ({"hidden": 6, "bidirectional": True}, [f(5, 4)]),  # select=last
        ({"hidden": 6, "layers": 2, "bidirectional": True, "select": "sequence"}, [f(5, 4)]),
        ({"hidden": 3, "bias": False}, [f(5, 4)]),
    ],
    "gru": [
        ({"hidden": 5, "layers": 2}, [f(6, 3)]),
        ({"hidden": 5, "bidirectional": True, "select": "sequence"}, [f(6, 3)]),
        ({"hidden": 5, "layers": 3, "bidirectional": True}, [f(6, 3)]),
    ],
    # -- regularisation
    "dropout": [({"p": 0.3}, [f(10)]), ({}, [f(3, 4, 4)])],
    "dropout2d": [({"p": 0.2}, [f(3, 4, 4)])],
    # -- shape
    "flatten": [
        ({}, [f(3, 4, 4)]),
        ({"start": 1}, [f(3, 4, 4)]),
        ({"start": -1}, [f(3, 4, 4)]),
        ({}, [ids(2, 3)]),
    ],
    "reshape": [
        ({"shape": (4, -1)}, [f(2, 8)]),
        ({"shape": 12}, [f(3, 4)]),
        ({"shape": (3, 2, 2)}, [f(12)]),
    ],
    "center_crop": [
        ({"size": 4}, [f(2, 7, 8)]),
        ({"size": (3, 5)}, [f(2, 8, 8)]),
        ({"size": 3}, [f(2, 6)]),
    ],
    "pad": [
        ({"padding": 1}, [f(2, 4, 4)]),
        ({"padding": (1, 2, 0, 3), "value": 1.5}, [f(2, 4, 4)]),
        ({"padding": (2, 1), "mode": "reflect"}, [f(2, 5)]),
        ({"padding": (1, 2), "mode": "replicate"}, [f(2, 4, 4)]),
    ],
    "upsample": [
        ({"scale": 2}, [f(2, 4, 4)]),
        ({"scale": 2, "mode": "linear", "align_corners": True}, [f(2, 5)]),
        ({"scale": (2, 3), "mode": "bilinear"}, [f(2, 3, 3)]),
        ({"scale": 1.5, "mode": "bicubic"}, [f(2, 5, 5)]),
        ({"scale": 0.5}, [f(2, 7)]),
    ],
    "concat": [
        ({}, [f(2, 4, 4), f(3, 4, 4)]),
        ({"axis": -1}, [f(2, 4, 3), f(2, 4, 5), f(2, 4, 1)]),
        ({"axis": 1}, [f(5, 3), f(5, 2)]),
    ],
    "add": [({}, [f(3, 4, 4), f(3, 4, 4)]), ({}, [f(5), f(5), f(5)])],
    "identity": [({}, [f(3, 4)])],
}

OPS = sorted({cls for cls in REGISTRY.values()}, key=lambda c: c.kind)


def cases():
    for cls in OPS:
        samples = SAMPLES.get(cls.kind, [])
        if not samples:
            yield pytest.param(cls.kind, None, None, id=f"{cls.kind}-no-sample")
        for i, (attrs, inputs) in enumerate(samples):
            yield pytest.param(cls.kind, attrs, inputs, id=f"{cls.kind}-{i}")


def test_samples_name_registered_ops():
    assert sorted(set(SAMPLES) - {cls.kind for cls in OPS}) == []


def batch_of(t: TensorType, op: Op) -> torch.Tensor:
    if t.dtype == "int64":
        high = getattr(op, "num", 10)  # embedding ids must lie in [0, num)
        return torch.randint(0, high, (BATCH, *t.shape))
    return torch.randn(BATCH, *t.shape)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(("kind", "attrs", "inputs"), list(cases()))
def test_lowering_agrees_with_ir(kind: str, attrs, inputs):
    if attrs is None:
        pytest.fail(f"`{kind}` has no sample: add one to SAMPLES in {__file__}")
    op = REGISTRY[kind].model_validate(attrs)
    out = op.infer(inputs)
    try:
        call = op.torch_call(inputs)
    except NotImplementedError as e:
        pytest.fail(str(e))
    # the call is written into standalone files with repr: its values must read back
    for key, value in call.kwargs.items():
        assert ast.literal_eval(repr(value)) == value, (key, value)
    module = torch_build.instantiate(call)

    params = op.param_shapes(inputs)
    buffers = op.buffer_shapes(inputs)
    got_params = {k: tuple(v.shape) for k, v in module.named_parameters()}
    got_buffers = {k: tuple(v.shape) for k, v in module.named_buffers()}
    assert got_params == params
    assert got_buffers == buffers
    state = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert state == {**params, **buffers}
    ir_count = sum(math.prod(s) for s in params.values())
    assert sum(p.numel() for p in module.parameters()) == ir_count

    module.eval()
    torch.manual_seed(0)
    xs = [batch_of(t, op) for t in inputs]
    with torch.no_grad():
        y = module(*xs)
    assert tuple(y.shape) == (BATCH, *out.shape), f"torch {tuple(y.shape)}, IR {out.shape}"
    assert y.dtype == (torch.int64 if out.dtype == "int64" else torch.float32)
