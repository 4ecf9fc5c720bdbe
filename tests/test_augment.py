"""Batch augmentation: determinism under a generator, what each transform really does."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from nnspec.runtime.data.augment import (  # noqa: E402
    Brightness,
    Contrast,
    Flip,
    Normalize,
    Pipeline,
    RandomCrop,
    build_augmentations,
    generator_for,
)
from nnspec.runtime.data.sources import DataError  # noqa: E402

SPECS = [
    ("flip", {"direction": "horizontal"}),
    ("random_crop", (8,), {"padding": 2}),
    ("brightness", {"delta": 0.2}),
    ("contrast", {"delta": 0.3}),
    ("normalize", {"mean": 0.5, "std": 0.25}),
]


def batch(b: int = 16, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(123))


def test_pipeline_is_deterministic_given_the_generator():
    pipeline, x = build_augmentations(SPECS), batch()
    a = pipeline.train(x, generator_for(0, 3))
    b = pipeline.train(x, generator_for(0, 3))
    assert torch.equal(a, b) and a.shape == x.shape
    assert not torch.equal(a, pipeline.train(x, generator_for(0, 4)))  # another epoch
    assert not torch.equal(a, pipeline.train(x, generator_for(1, 3)))  # another seed
    # eval draws nothing and is fixed: centre crop of the padded image (= identity here)
    assert torch.equal(pipeline.eval(x), (x - 0.5) / 0.25)
    assert pipeline.sample_shape((3, 8, 8)) == (3, 8, 8) and len(pipeline) == 5


def test_flip_really_flips():
    x = batch()
    always = Flip("horizontal", p=1.0).train(x, generator_for(0))
    assert torch.equal(always, x.flip(-1))
    assert torch.equal(always[0, 0, 0], x[0, 0, 0].flip(0))
    assert torch.equal(Flip("vertical", p=1.0).train(x, generator_for(0)), x.flip(-2))
    assert torch.equal(Flip(p=0.0).train(x, generator_for(0)), x)
    some = Flip(p=0.5).train(batch(b=200), generator_for(0))
    flipped = [torch.equal(s, o.flip(-1)) for s, o in zip(some, batch(b=200))]
    assert 60 < sum(flipped) < 140  # each sample decides on its own
    assert torch.equal(Flip().eval(x), x)


def test_random_crop_with_padding():
    x = batch(b=64, c=2, h=6, w=6) + 1  # no zeros inside the images
    crop = RandomCrop(6, padding=2)
    out = crop.train(x, generator_for(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for sample, source in zip(out, padded):  # every output is some 6×6 window of the padding
        matches = [(t, u) for t in range(5) for u in range(5)
                   if torch.equal(sample, source[:, t: t + 6, u: u + 6])]
        assert matches
        offsets.add(matches[0])
    assert len(offsets) > 5  # the offset is drawn per sample
    assert torch.equal(crop.eval(x), x)  # evaluation: the fixed centre crop


def test_centre_crop_at_evaluation():
    x = torch.arange(2 * 1 * 7 * 9, dtype=torch.float32).view(2, 1, 7, 9)
    crop = RandomCrop((4, 5))
    assert torch.equal(crop.eval(x), x[:, :, 1:5, 2:7])
    assert crop.train(x, generator_for(0)).shape == (2, 1, 4, 5)
    assert crop.sample_shape((1, 7, 9)) == (1, 4, 5)
    with pytest.raises(ValueError, match="cannot crop 10×10"):
        RandomCrop(10, padding=1).train(x, generator_for(0))
    with pytest.raises(ValueError, match="images"):
        crop.train(x[0], generator_for(0))


def test_sample_shape_checks_the_data_before_training():
    pipeline = build_augmentations(SPECS[:2] + [("normalize", {"mean": [0, 0], "std": [1, 1]})])
    assert pipeline.sample_shape((2, 12, 12)) == (2, 8, 8)
    with pytest.raises(ValueError, match=r"image samples \[C, H, W\], the data's are \[64\]"):
        pipeline.sample_shape((64,))
    with pytest.raises(ValueError, match="cannot crop 8×8 from 3×3"):
        pipeline.sample_shape((2, 3, 3))
    with pytest.raises(ValueError, match="2 channels"):
        pipeline.sample_shape((3, 8, 8))


def test_brightness_range():
    x = torch.zeros(500, 1, 2, 2)
    out = Brightness(0.2).train(x, generator_for(0))
    offsets = out[:, 0, 0, 0]
    assert torch.all(out == offsets.view(-1, 1, 1, 1))  # one offset per sample
    assert offsets.min() >= -0.2 and offsets.max() <= 0.2
    assert offsets.min() < -0.15 and offsets.max() > 0.15  # the whole range is used
    assert torch.equal(Brightness(0.2).eval(x), x)


def test_contrast_range_keeps_the_mean():
    x = batch(b=300)
    out = Contrast(0.5).train(x, generator_for(0))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3), keepdim=True), mean)
    factor = (out - mean).flatten(1).norm(dim=1) / (x - mean).flatten(1).norm(dim=1)
    assert factor.min() >= 0.5 - 1e-5 and factor.max() <= 1.5 + 1e-5
    assert factor.min() < 0.6 and factor.max() > 1.4
    assert torch.equal(Contrast(0.5).eval(x), x)


def test_normalize_per_channel():
    x = batch(c=3)
    norm = Normalize([0.1, 0.2, 0.3], [1.0, 2.0, 4.0])
    want = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor(
        [1.0, 2.0, 4.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(norm.eval(x), want)
    torch.testing.assert_close(norm.train(x, generator_for(0)), want)
    with pytest.raises(ValueError, match="3 channels"):
        norm.eval(batch(c=1))
    with pytest.raises(ValueError, match="> 0"):
        Normalize(0.0, 0.0)


def test_generator_draws_do_not_depend_on_the_device_of_x():
    x = batch()
    g1, g2 = generator_for(5, 1), generator_for(5, 1)
    pipeline = Pipeline([Flip(), Brightness(0.1)])
    assert torch.equal(pipeline.train(x, g1), pipeline.train(x.double(), g2).float())


def test_build_errors_suggest():
    with pytest.raises(DataError) as info:
        build_augmentations([("flp", {})])
    assert info.value.help == "did you mean `flip`?"
    with pytest.raises(DataError) as info:
        build_augmentations([("random_crop", {"sise": 8})])
    assert info.value.help == "did you mean `size`?"
    for bad in [("flip", {"direction": "diagonal"}), ("contrast", {"delta": 1.5}),
                ("brightness", {"delta": -1}), ("random_crop", {"size": 0}),
                ("random_crop", {"size": 8, "padding": -1}), ("flip", {"p": 2}),
                ("random_crop", {})]:
        with pytest.raises(DataError) as info:
            build_augmentations([bad])
        assert info.value.location == f"augment {bad[0]}"
    assert len(build_augmentations([("flip", ("vertical",), {})])) == 1
