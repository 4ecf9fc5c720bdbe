"""Shape family: output shapes, errors with their numbers, costs and receptive steps."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nnspec.spec import codes
from nnspec.spec.ir import TensorType
from nnspec.spec.ops import GLOBAL, REGISTRY, ShapeError, WindowStep


def op(kind: str, **attrs):
    return REGISTRY[kind].model_validate(attrs)


def types(*shapes: tuple[int, ...]) -> list[TensorType]:
    return [TensorType(shape=s) for s in shapes]


def infer(kind: str, *shapes: tuple[int, ...], **attrs) -> tuple[int, ...]:
    return op(kind, **attrs).infer(types(*shapes)).shape


def error(kind: str, *shapes: tuple[int, ...], **attrs) -> ShapeError:
    with pytest.raises(ShapeError) as info:
        op(kind, **attrs).infer(types(*shapes))
    return info.value


@pytest.mark.parametrize(
    ("kind", "shapes", "attrs", "expected"),
    [
        ("flatten", [(16, 5, 5)], {}, (400,)),  # LeNet
        ("flatten", [(256, 6, 6)], {}, (9216,)),  # AlexNet
        ("flatten", [(16, 5, 5)], {"start": 1}, (16, 25)),
        ("flatten", [(16, 5, 5)], {"start": -2}, (16, 25)),
        ("flatten", [(16, 5, 5)], {"start": 2}, (16, 5, 5)),
        ("flatten", [(10,)], {}, (10,)),
        ("reshape", [(16, 5, 5)], {"shape": (400,)}, (400,)),
        ("reshape", [(16, 5, 5)], {"shape": (-1, 25)}, (16, 25)),
        ("reshape", [(400,)], {"shape": (16, -1, 5)}, (16, 5, 5)),
        ("reshape", [(3, 4)], {"shape": -1}, (12,)),
        ("center_crop", [(64, 64, 64)], {"size": 56}, (64, 56, 56)),  # U-Net skip
        ("center_crop", [(8, 10, 12)], {"size": (7, 12)}, (8, 7, 12)),
        ("center_crop", [(8, 30)], {"size": 21}, (8, 21)),
        ("pad", [(3, 28, 28)], {"padding": 2}, (3, 32, 32)),
        ("pad", [(3, 28, 28)], {"padding": (1, 2)}, (3, 30, 32)),
        ("pad", [(3, 28, 28)], {"padding": (0, 1, 2, 3)}, (3, 29, 33)),
        ("pad", [(3, 10)], {"padding": (1, 4)}, (3, 15)),  # 1-d: a (before, after) pair
        ("pad", [(3, 10)], {"padding": (3,), "mode": "reflect"}, (3, 16)),
        ("pad", [(3, 4, 4)], {"padding": 9, "mode": "replicate"}, (3, 22, 22)),
        ("upsample", [(64, 14, 14)], {"scale": 2}, (64, 28, 28)),
        ("upsample", [(64, 7, 9)], {"scale": (2, 3), "mode": "bilinear"}, (64, 14, 27)),
        ("upsample", [(64, 7, 7)], {"scale": 1.5}, (64, 10, 10)),
        ("upsample", [(64, 10, 10)], {"scale": 0.5, "mode": "bicubic"}, (64, 5, 5)),
        ("upsample", [(4, 11)], {"scale": 2, "mode": "linear", "align_corners": True}, (4, 22)),
        ("concat", [(64, 28, 28), (32, 28, 28)], {}, (96, 28, 28)),
        ("concat", [(8, 5, 5), (8, 5, 5), (16, 5, 5)], {}, (32, 5, 5)),
        ("concat", [(8, 5, 5), (8, 5, 7)], {"axis": 2}, (8, 5, 12)),
        ("concat", [(8, 5, 5), (8, 5, 7)], {"axis": -1}, (8, 5, 12)),
        ("concat", [(100,), (28,)], {}, (128,)),
        ("add", [(64, 56, 56), (64, 56, 56)], {}, (64, 56, 56)),
        ("add", [(10,), (10,), (10,)], {}, (10,)),
        ("identity", [(3, 32, 32)], {}, (3, 32, 32)),
    ],
)
def test_output_shape(kind, shapes, attrs, expected):
    assert infer(kind, *shapes, **attrs) == expected


def test_dtype_passes_through():
    ids = TensorType(shape=(12, 5), dtype="int64")
    for kind, attrs in [("flatten", {}), ("reshape", {"shape": (60,)}), ("identity", {})]:
        assert op(kind, **attrs).infer([ids]).dtype == "int64"
    assert op("concat").infer([ids, ids]).dtype == "int64"
    assert op("add").infer([ids, ids]).dtype == "int64"
    assert op("pad", padding=1).infer([ids]).dtype == "int64"
    with pytest.raises(ShapeError) as info:
        op("add").infer([TensorType(shape=(12, 5)), ids])
    assert info.value.code == codes.DTYPE and info.value.operand == 1
    with pytest.raises(ShapeError) as info:
        op("concat").infer([ids, TensorType(shape=(12, 5))])
    assert info.value.code == codes.DTYPE and info.value.operand == 1


def test_flatten_start_out_of_range():
    e = error("flatten", (16, 5, 5), start=3)
    assert e.code == codes.ARGUMENT_SHAPE and e.arg == "start" and "rank 3" in e.message


def test_reshape_errors_carry_the_numbers():
    e = error("reshape", (16, 5, 5), shape=(10, 50))
    assert e.code == codes.RESHAPE and e.arg == "shape"
    assert e.message == "reshape changes the number of elements: [16, 5, 5] has 400, [10, 50] has 500"
    assert e.notes[0] == "10·50 = 500 ≠ 400"
    e = error("reshape", (16, 5, 5), shape=(-1, 3))
    assert e.code == codes.RESHAPE and "400" in e.message and "3" in e.message
    assert error("reshape", (4,), shape=(-1, -1)).code == codes.BAD_ARG
    assert error("reshape", (4,), shape=(0, 4)).arg == "shape"
    assert error("reshape", (4,), shape=()).code == codes.BAD_ARG


def test_center_crop_errors_and_offsets():
    e = error("center_crop", (64, 52, 52), size=56)
    assert e.code == codes.CROP and e.arg == "size"
    assert "56" in e.message and "52" in e.message and "height" in e.message
    assert error("center_crop", (64, 52, 52), size=(3, 3, 3)).code == codes.ARGUMENT_SHAPE
    assert error("center_crop", (64, 52), size=0).code == codes.BAD_ARG
    crop = op("center_crop", size=(5, 4))
    assert crop.crop_pairs(TensorType(shape=(1, 8, 8))) == ((1, 2), (2, 2))  # extra at bottom
    assert crop.crop_pairs(TensorType(shape=(1, 6, 7))) == ((0, 1), (1, 2))


def test_pad_errors():
    e = error("pad", (3, 8, 8), padding=(1, 2, 3))
    assert e.code == codes.ARGUMENT_SHAPE and e.arg == "padding" and "3 entries" in e.message
    e = error("pad", (3, 8, 8), padding=-1)
    assert e.code == codes.CROP and e.arg == "padding"
    e = error("pad", (3, 8, 4), padding=4, mode="reflect")
    assert e.code == codes.CROP and e.arg == "padding"
    assert "(4)" in e.message and "width" in e.message
    assert infer("pad", (3, 8, 4), padding=3, mode="reflect") == (3, 14, 10)
    e = error("pad", (3, 8, 8), padding=1, mode="replicate", value=1.0)
    assert e.code == codes.BAD_ARG and e.arg == "value"
    assert op("pad", padding=1, value=1).value == 1.0  # an int value is accepted as a float
    pairs = op("pad", padding=(0, 1, 2, 3)).padding_pairs(TensorType(shape=(3, 8, 8)))
    assert pairs == ((0, 1), (2, 3))
    with pytest.raises(ValidationError):
        op("pad", padding=1, mode="circular")


def test_upsample_errors():
    e = error("upsample", (3, 16), scale=2, mode="bilinear")
    assert e.code == codes.RANK and e.arg == "mode" and "rank 2" in e.message
    assert "mode=linear" in e.help
    e = error("upsample", (3, 16, 16), scale=2, mode="linear")
    assert e.code == codes.RANK and "mode=bilinear" in e.help
    e = error("upsample", (3, 16, 16), scale=2, align_corners=True)
    assert e.code == codes.BAD_ARG and e.arg == "align_corners"
    e = error("upsample", (3, 16, 16), scale=(2, 2, 2))
    assert e.code == codes.ARGUMENT_SHAPE and e.arg == "scale"
    assert error("upsample", (3, 16, 16), scale=0).code == codes.BAD_ARG
    assert error("upsample", (3, 16, 16), scale=-1.5).arg == "scale"
    e = error("upsample", (3, 3, 16), scale=0.25)
    assert e.code == codes.NONPOSITIVE and "floor(3·0.25) = 0" in e.notes[0]
    e = error("upsample", (3, 16, 16, 16), scale=2)
    assert e.code == codes.RANK
    with pytest.raises(ValidationError):
        op("upsample", scale=2, mode="trilinear")


def test_concat_mismatch_names_the_operand_axis_and_sizes():
    e = error("concat", (64, 56, 56), (64, 56, 56), (128, 64, 64))
    assert e.code == codes.CONCAT_MISMATCH and e.operand == 2
    assert e.message == "concat inputs differ along height: input 0 has 56, input 2 has 64"
    assert "center_crop(56)" in e.help
    e = error("concat", (64, 52, 60), (32, 56, 56))
    assert "center_crop((52, 56))" in e.help
    e = error("concat", (64, 56, 56), (32, 56, 56), axis=2)
    assert e.message == "concat inputs differ along channels: input 0 has 64, input 1 has 32"
    assert "center_crop" not in e.help and "`conv(64, 1)`" in e.help
    e = error("concat", (64, 56, 56), (64, 28, 56), axis=2)
    assert "height" in e.message and "crop or pad the height" in e.help
    e = error("concat", (64, 56, 56), (3136,))
    assert e.code == codes.CONCAT_MISMATCH and e.operand == 1 and "rank" in e.message
    e = error("concat", (64, 56, 56), (64, 56, 56), axis=3)
    assert e.code == codes.ARGUMENT_SHAPE and e.arg == "axis"


def test_add_mismatch_suggests_a_projection():
    e = error("add", (64, 56, 56), (128, 28, 28))
    assert e.code == codes.ADD_MISMATCH and e.operand == 1
    assert "[64, 56, 56]" in e.message and "[128, 28, 28]" in e.message
    assert "`conv(128, 2, stride=2)` turns [64, 56, 56] into [128, 28, 28]" in e.help
    e = error("add", (64, 8, 8), (64, 8, 8), (32, 8, 8))
    assert e.operand == 2 and "`conv(64, 1)`" in e.help
    e = error("add", (64, 8, 8), (64, 3, 3))
    assert "integer factor" in e.help
    e = error("add", (10,), (12,))
    assert e.code == codes.ADD_MISMATCH and "[10]" in e.message and "[12]" in e.message


def test_macs():
    x = TensorType(shape=(64, 14, 14))
    for mode, taps in [("nearest", 0), ("bilinear", 4), ("bicubic", 16)]:
        up = op("upsample", scale=2, mode=mode)
        assert up.macs([x], up.infer([x])) == taps * 64 * 28 * 28
    for kind, ins in [("add", [x, x]), ("concat", [x, x]), ("flatten", [x]), ("identity", [x])]:
        o = op(kind)
        assert o.macs(ins, o.infer(ins)) == 0
        assert o.param_shapes(ins) == {} and o.buffer_shapes(ins) == {}


def test_receptive_steps():
    x = types((16, 5, 5))
    assert op("flatten").receptive_step(x) == GLOBAL
    assert op("flatten", start=1).receptive_step(x) == GLOBAL
    assert op("flatten", start=2).receptive_step(x) is None
    assert op("reshape", shape=(400,)).receptive_step(x) == GLOBAL
    assert op("reshape", shape=(16, 5, 5)).receptive_step(x) is None
    assert op("upsample", scale=2).receptive_step(x) == WindowStep(window=(1, 1), stride=(0.5, 0.5))
    assert op("center_crop", size=3).receptive_step(x) is None
    assert op("pad", padding=1).receptive_step(x) is None
    assert op("add").receptive_step(x + x) is None
    assert op("concat").receptive_step(x + x) is None
    assert op("identity").receptive_step(x) is None


def test_registry_metadata():
    assert REGISTRY["concat"].arity is None and REGISTRY["add"].arity is None
    assert REGISTRY["identity"].arity == 1
    assert REGISTRY["reshape"].positional == ("shape",)
    assert REGISTRY["pad"].positional == ("padding",)
    assert REGISTRY["upsample"].signature() == (
        "upsample(scale, mode=nearest, align_corners=false)"
    )
    with pytest.raises(ValidationError):
        op("flatten", start=True)  # strict: a bool is not an axis


@pytest.mark.parametrize(
    ("kind", "shape", "attrs"),
    [
        ("upsample", (2, 7, 7), {"scale": 1.5, "mode": "bilinear"}),
        ("upsample", (2, 9, 10), {"scale": (0.7, 1.3)}),
        ("upsample", (2, 11), {"scale": 2.5, "mode": "linear", "align_corners": True}),
        ("upsample", (2, 6, 6), {"scale": 3, "mode": "bicubic"}),
        ("pad", (2, 5, 6), {"padding": (1, 2, 3, 4), "mode": "reflect"}),
        ("pad", (2, 5), {"padding": 7, "mode": "replicate"}),
        ("flatten", (2, 3, 4), {"start": 1}),
    ],
)
def test_against_torch(kind, shape, attrs):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    x = torch.zeros(1, *shape)
    o = op(kind, **attrs)
    if kind == "upsample":
        scale = attrs["scale"]
        mode = attrs.get("mode", "nearest")
        corners = attrs.get("align_corners") if mode != "nearest" else None
        y = functional.interpolate(x, scale_factor=scale, mode=mode, align_corners=corners)
    elif kind == "pad":
        pairs = o.padding_pairs(TensorType(shape=shape))
        flat = [p for pair in reversed(pairs) for p in pair]  # torch: last axis first
        y = functional.pad(x, flat, mode=attrs.get("mode", "constant"))
    else:
        y = torch.flatten(x, attrs["start"] + 1)
    assert o.infer([TensorType(shape=shape)]).shape == tuple(y.shape[1:])
