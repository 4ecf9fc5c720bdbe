"""Pool family: output shapes (checked against PyTorch's formulas), errors, costs, fields."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from nnspec.spec import codes
from nnspec.spec.ir import TensorType
from nnspec.spec.ops import GLOBAL, REGISTRY, ShapeError, WindowStep


def op(kind: str, **attrs):
    return REGISTRY[kind].model_validate(attrs)


def infer(kind: str, shape: tuple[int, ...], **attrs) -> tuple[int, ...]:
    return op(kind, **attrs).infer([TensorType(shape=shape)]).shape


def error(kind: str, shape: tuple[int, ...], **attrs) -> ShapeError:
    with pytest.raises(ShapeError) as info:
        op(kind, **attrs).infer([TensorType(shape=shape)])
    return info.value


def torch_pool_size(n: int, k: int, s: int, p: int, d: int = 1, ceil: bool = False) -> int:
    """PyTorch's pooling_output_shape, written independently of arith.window_output."""
    num = n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)
    out = num // s + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


@pytest.mark.parametrize(
    ("kind", "shape", "attrs", "expected"),
    [
        ("maxpool", (6, 28, 28), {"kernel": 2}, (6, 14, 14)),  # LeNet: stride defaults to kernel
        ("maxpool", (16, 10, 10), {"kernel": 2, "stride": 2}, (16, 5, 5)),
        ("maxpool", (96, 55, 55), {"kernel": 3, "stride": 2}, (96, 27, 27)),  # AlexNet
        ("maxpool", (64, 112, 112), {"kernel": 3, "stride": 2, "padding": 1, "rounding": "floor"},
         (64, 56, 56)),  # ResNet stem
        ("maxpool", (64, 112, 112), {"kernel": 3, "stride": 2, "padding": 1, "rounding": "ceil"},
         (64, 57, 57)),
        ("maxpool", (64, 224, 224), {"kernel": 2}, (64, 112, 112)),  # VGG
        ("maxpool", (3, 13, 11), {"kernel": (3, 2), "stride": (2, 1), "padding": (1, 0)},
         (3, 7, 10)),
        ("maxpool", (4, 9, 9), {"kernel": 3, "stride": 1, "dilation": 2}, (4, 5, 5)),
        ("maxpool", (8, 100), {"kernel": 4}, (8, 25)),  # 1-d
        ("avgpool", (6, 28, 28), {"kernel": 2}, (6, 14, 14)),
        ("avgpool", (256, 8, 8), {"kernel": 8}, (256, 1, 1)),
        ("avgpool", (3, 10, 10), {"kernel": 3, "stride": 1, "padding": 1}, (3, 10, 10)),
        ("avgpool", (8, 7), {"kernel": 2, "rounding": "floor"}, (8, 3)),
        ("avgpool", (8, 7), {"kernel": 2, "rounding": "ceil"}, (8, 4)),
        ("global_avgpool", (512, 7, 7), {}, (512, 1, 1)),
        ("global_maxpool", (512, 7, 7), {}, (512, 1, 1)),
        ("global_avgpool", (64, 50), {}, (64, 1)),
        ("adaptive_avgpool", (512, 13, 13), {"size": 6}, (512, 6, 6)),  # torchvision AlexNet
        ("adaptive_avgpool", (512, 14, 10), {"size": (7, 5)}, (512, 7, 5)),
        ("adaptive_avgpool", (32, 9), {"size": 4}, (32, 4)),
    ],
)
def test_output_shape(kind, shape, attrs, expected):
    assert infer(kind, shape, **attrs) == expected


@pytest.mark.parametrize("n", range(5, 30))
@pytest.mark.parametrize(("k", "s", "p"), [(2, 2, 0), (2, 2, 1), (3, 2, 1), (3, 3, 0), (3, 3, 1), (5, 3, 2), (4, 3, 1)])
def test_rounding_matches_pytorch_formula(n, k, s, p):
    for rounding, ceil in (("floor", False), ("ceil", True)):
        got = infer("maxpool", (1, n), kernel=k, stride=s, padding=p, rounding=rounding)
        assert got == (1, torch_pool_size(n, k, s, p, ceil=ceil))


def test_exact_is_the_default_and_points_to_the_roundings():
    e = error("maxpool", (64, 112, 112), kernel=3, stride=2, padding=1)
    assert e.code == codes.NOT_INTEGER
    assert "maxpool" in e.message and "height" in e.message
    assert "(112 + 2 - 3) / 2 + 1 = 56.50" in e.notes[0]
    assert "rounding floor" in e.help and "56" in e.help
    assert "rounding=ceil" in e.help and "57" in e.help
    e = error("avgpool", (8, 7), kernel=2)
    assert e.code == codes.NOT_INTEGER and e.message.startswith("avgpool")


@pytest.mark.parametrize("kind", ["maxpool", "avgpool"])
def test_padding_at_most_half_the_kernel(kind):
    e = error(kind, (3, 32, 32), kernel=3, stride=1, padding=2)
    assert e.code == codes.BAD_ARG and e.arg == "padding"
    assert "(2)" in e.message and "(3)" in e.message
    assert infer(kind, (3, 32, 32), kernel=4, stride=1, padding=2, rounding="floor") == (3, 33, 33)


def test_argument_errors():
    e = error("maxpool", (3, 8, 8), kernel=(2, 2, 2))
    assert e.code == codes.ARGUMENT_SHAPE and e.arg == "kernel"
    assert error("maxpool", (3, 8, 8), kernel=0).arg == "kernel"
    assert error("maxpool", (3, 8, 8), kernel=2, stride=0).arg == "stride"
    assert error("maxpool", (3, 8, 8), kernel=2, padding=-1).arg == "padding"
    assert error("adaptive_avgpool", (3, 8, 8), size=0).arg == "size"
    assert error("adaptive_avgpool", (3, 8, 8), size=(2, 2, 2)).code == codes.ARGUMENT_SHAPE
    with pytest.raises(ValidationError):
        op("avgpool", kernel=2, dilation=2)  # dilation is maxpool's only
    with pytest.raises(ValidationError):
        op("maxpool", kernel=2, count_include_pad=False)
    with pytest.raises(ValidationError):
        op("maxpool", kernel=2, rounding="round")


@pytest.mark.parametrize("kind", ["maxpool", "avgpool", "global_avgpool", "adaptive_avgpool"])
def test_rank(kind):
    attrs = {"size": 2} if kind == "adaptive_avgpool" else {} if "global" in kind else {"kernel": 2}
    e = error(kind, (100,), **attrs)
    assert e.code == codes.RANK and "got rank 1" in e.message


def test_window_larger_than_input():
    e = error("maxpool", (3, 2, 2), kernel=3)
    assert e.code == codes.NONPOSITIVE


def test_macs():
    x = TensorType(shape=(6, 28, 28))
    avg = op("avgpool", kernel=2)
    assert avg.macs([x], avg.infer([x])) == 4 * 6 * 14 * 14
    mx = op("maxpool", kernel=2)
    assert mx.macs([x], mx.infer([x])) == 0
    g = op("global_avgpool")
    assert g.macs([x], g.infer([x])) == 6 * 28 * 28
    assert op("global_maxpool").macs([x], TensorType(shape=(6, 1, 1))) == 0
    a = op("adaptive_avgpool", size=1)
    assert a.macs([x], a.infer([x])) == x.numel  # as global_avgpool
    a = op("adaptive_avgpool", size=14)
    assert a.macs([x], a.infer([x])) == 4 * 6 * 14 * 14  # as avgpool(2)
    a = op("adaptive_avgpool", size=(2, 3))  # windows 14+14 rows, 10+10+10 columns
    y = TensorType(shape=(1, 28, 29))  # columns: [0,10), [9,20), [19,29): 10+11+10
    assert a.macs([y], a.infer([y])) == (14 + 14) * (10 + 11 + 10)


def test_param_shapes_are_empty():
    x = [TensorType(shape=(3, 8, 8))]
    for kind, attrs in [("maxpool", {"kernel": 2}), ("avgpool", {"kernel": 2}),
                        ("global_avgpool", {}), ("adaptive_avgpool", {"size": 4})]:
        assert op(kind, **attrs).param_shapes(x) == {}
        assert op(kind, **attrs).buffer_shapes(x) == {}


def test_receptive_steps():
    x = [TensorType(shape=(3, 32, 32))]
    assert op("maxpool", kernel=3, stride=2, padding=1).receptive_step(x) == WindowStep(
        window=(3, 3), stride=(2, 2)
    )
    assert op("maxpool", kernel=3, dilation=2, stride=1).receptive_step(x) == WindowStep(
        window=(5, 5), stride=(1, 1)
    )
    assert op("avgpool", kernel=2).receptive_step(x) == WindowStep(window=(2, 2), stride=(2, 2))
    assert op("global_avgpool").receptive_step(x) == GLOBAL
    assert op("global_maxpool").receptive_step(x) == GLOBAL
    assert op("adaptive_avgpool", size=1).receptive_step(x) == GLOBAL
    assert op("adaptive_avgpool", size=32).receptive_step(x) is None
    assert op("adaptive_avgpool", size=16).receptive_step(x) == WindowStep(
        window=(2, 2), stride=(2.0, 2.0)
    )


def test_signature_and_positional():
    assert REGISTRY["maxpool"].positional == ("kernel",)
    assert REGISTRY["adaptive_avgpool"].positional == ("size",)
    assert REGISTRY["maxpool"].signature() == (
        "maxpool(kernel, stride=kernel, padding=0, rounding=exact, dilation=1)"
    )
    assert "count_include_pad=true" in REGISTRY["avgpool"].signature()


@pytest.mark.parametrize(
    ("kind", "shape", "attrs"),
    [
        ("maxpool", (2, 112, 112), {"kernel": 3, "stride": 2, "padding": 1, "rounding": "ceil"}),
        ("maxpool", (2, 55, 55), {"kernel": 3, "stride": 2}),
        ("maxpool", (2, 17, 12), {"kernel": (3, 2), "stride": (2, 3), "padding": (1, 1),
                                  "dilation": (1, 2), "rounding": "ceil"}),
        ("maxpool", (2, 31), {"kernel": 4, "stride": 3, "padding": 2, "rounding": "floor"}),
        ("avgpool", (2, 13, 13), {"kernel": 2, "rounding": "ceil"}),
        ("avgpool", (2, 9, 9), {"kernel": 3, "stride": 2, "padding": 1}),
        ("adaptive_avgpool", (2, 13, 11), {"size": (6, 4)}),
        ("global_avgpool", (2, 7, 5), {}),
        ("global_maxpool", (2, 9), {}),
    ],
)
def test_against_torch(kind, shape, attrs):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    n = len(shape) - 1
    a = dict(attrs)
    ceil = a.pop("rounding", "exact") == "ceil"
    if kind == "maxpool":
        module = (nn.MaxPool1d, nn.MaxPool2d)[n - 1](
            a["kernel"], a.get("stride"), a.get("padding", 0), a.get("dilation", 1), ceil_mode=ceil
        )
    elif kind == "avgpool":
        module = (nn.AvgPool1d, nn.AvgPool2d)[n - 1](
            a["kernel"], a.get("stride"), a.get("padding", 0), ceil_mode=ceil
        )
    elif kind == "adaptive_avgpool":
        module = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)[n - 1](a["size"])
    else:
        pool = nn.AdaptiveAvgPool1d if "avg" in kind else nn.AdaptiveMaxPool1d
        if n == 2:
            pool = nn.AdaptiveAvgPool2d if "avg" in kind else nn.AdaptiveMaxPool2d
        module = pool(1)
    got = tuple(module(torch.zeros(1, *shape)).shape[1:])
    assert infer(kind, shape, **attrs) == got
    assert math.prod(got) > 0
