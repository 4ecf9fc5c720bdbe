"""Torch lowering: every op × its samples builds a module that agrees with the IR.

For each sample (an op class's ``samples``) the module built from ``op.torch_call(inputs)``
must hold exactly the IR's parameters and buffers (names and shapes, so the state_dict keys
are the spec's), the same number of parameters, and map a batch of 2 to ``infer``'s shape.
An op registered without a sample, or without a torch lowering, fails. (The numerical
checks of every sample are verify/sweep.py's, run by test_sweep.py.)
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

from nnspec.spec.ir import TensorType
from nnspec.spec.ops import REGISTRY, Op

torch = pytest.importorskip("torch")
torch_build = pytest.importorskip("nnspec.compiler.torch_build")

BATCH = 2
ROOT_EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


OPS = sorted({cls for cls in REGISTRY.values()}, key=lambda c: c.kind)


def cases():
    for cls in OPS:
        if not cls.samples:
            yield pytest.param(cls.kind, None, None, id=f"{cls.kind}-no-sample")
        for i, s in enumerate(cls.samples):
            yield pytest.param(cls.kind, s.attrs, list(s.inputs), id=f"{cls.kind}-{i}")


def batch_of(t: TensorType, op: Op) -> torch.Tensor:
    if t.dtype == "int64":
        high = getattr(op, "num", 10)  # embedding ids must lie in [0, num)
        return torch.randint(0, high, (BATCH, *t.shape))
    return torch.randn(BATCH, *t.shape)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(("kind", "attrs", "inputs"), list(cases()))
def test_lowering_agrees_with_ir(kind: str, attrs, inputs):
    if attrs is None:
        pytest.fail(f"`{kind}` has no sample: add `samples` to its op class")
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


@pytest.mark.parametrize("path", sorted((ROOT_EXAMPLES).glob("*.nn")), ids=lambda p: p.stem)
def test_the_ir_knows_the_state_dict_of_every_example(path):
    """`Graph.state_shapes()` is what export checks weights against without torch: it must be
    the compiled module's state_dict exactly (names, shapes and order)."""
    from nnspec.api import load

    graph = load(path).graph
    with torch.device("meta"):
        state = torch_build.build_module(graph).state_dict()
    assert list(graph.state_shapes().items()) == [(k, tuple(v.shape)) for k, v in state.items()]
