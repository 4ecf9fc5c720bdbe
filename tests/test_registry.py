"""The registry as a whole: every op the course needs exists and keeps the op contract."""

from __future__ import annotations

import pytest

from nnspec.spec.ops import REGISTRY, Op

COURSE_OPS = """
linear conv conv1d conv2d separable_conv upconv upsample maxpool avgpool global_avgpool
global_maxpool adaptive_avgpool flatten reshape center_crop pad concat add identity batchnorm
layernorm instancenorm groupnorm dropout dropout2d relu leaky_relu prelu sigmoid tanh softmax
log_softmax maxout gelu elu embedding rnn lstm gru
""".split()

OPS = sorted({cls for cls in REGISTRY.values()}, key=lambda c: c.kind)


def test_every_course_op_is_registered():
    missing = [name for name in COURSE_OPS if name not in REGISTRY]
    assert missing == []


@pytest.mark.parametrize("op", OPS, ids=lambda c: c.kind)
def test_docstring_is_a_contract(op: type[Op]):
    doc = op.__doc__ or ""
    assert doc.strip(), f"{op.kind} has no docstring"
    assert "Shape:" in doc, f"{op.kind}: docstring lacks a `Shape:` line"
    assert "Params:" in doc, f"{op.kind}: docstring lacks a `Params:` line"
    assert "MACs" in doc, f"{op.kind}: docstring lacks its MAC convention"


@pytest.mark.parametrize("op", OPS, ids=lambda c: c.kind)
def test_signature_and_positional_arguments(op: type[Op]):
    assert op.kind == op.kind.lower() and op.kind.isidentifier()
    assert all(name in op.model_fields for name in op.positional)
    required = [n for n, f in op.model_fields.items() if f.is_required()]
    # a required argument can always be given positionally, in declaration order
    assert required == [n for n in op.positional if n in required]
    assert op.signature().startswith(f"{op.kind}(")
    assert op.model_config.get("frozen") and op.model_config.get("extra") == "forbid"


def test_aliases_resolve_to_their_op():
    for name, cls in REGISTRY.items():
        assert name == cls.kind or name in cls.aliases
