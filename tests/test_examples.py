"""The example specs in examples/: each elaborates cleanly, with the published parameter counts
of the architectures it reproduces, the documented output shapes and stable module names; two
of them are cross-checked against modules built by hand with torch."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import nnspec

EXAMPLES = Path(__file__).parent.parent / "examples"

# file -> (model, parameters, output shape). Counts marked "published" are the reference
# implementations' own (torchvision, Keras, LeCun et al.); the others are pinned from the
# spec files' headers, which document how they arise.
EXPECTED: dict[str, tuple[str, int, tuple[int, ...]]] = {
    "logreg.nn": ("LogReg", 31, (1,)),
    "mlp_digits.nn": ("DigitsMLP", 17_226, (10,)),
    "lenet5.nn": ("LeNet5", 61_706, (10,)),  # published
    "alexnet.nn": ("AlexNet", 61_100_840, (1000,)),  # published (torchvision)
    "vgg16.nn": ("VGG16", 138_357_544, (1000,)),  # published (torchvision)
    "resnet18.nn": ("ResNet18", 11_689_512, (1000,)),  # published (torchvision)
    "resnet50.nn": ("ResNet50", 25_557_032, (1000,)),  # published (torchvision)
    "inception.nn": ("GoogLeNet", 6_624_904, (1000,)),  # published (torchvision)
    "xception.nn": ("Xception", 22_855_952, (1000,)),  # published (Keras, trainable)
    "fcn.nn": ("FCN8s", 7_135_935, (21, 224, 224)),
    "unet.nn": ("UNet", 31_037_698, (2, 128, 128)),  # milesial/Pytorch-UNet, 3 in, 2 out
    "unet_valid.nn": ("UNet", 31_030_658, (2, 388, 388)),
    "autoencoder.nn": ("DigitsAutoencoder", 9_113, (1, 8, 8)),
    "lstm_classifier.nn": ("DigitsLSTM", 19_594, (10,)),
    "linreg.nn": ("LinReg", 11, (1,)),
    "digits_cnn.nn": ("DigitsCNN", 30_762, (10,)),
    "knn_digits.nn": ("KNNDigits", 0, (10,)),  # buffers: 1,437 · (64 + 10)
    "squeezenet1_0.nn": ("SqueezeNet1_0", 1_248_424, (1000,)),  # published (torchvision)
    "densenet121.nn": ("DenseNet121", 7_978_856, (1000,)),  # published (torchvision)
    "mobilenet_v2.nn": ("MobileNetV2", 3_504_872, (1000,)),  # published (torchvision)
    "mobilenet_v3_small.nn": ("MobileNetV3Small", 2_542_856, (1000,)),  # published (torchvision)
    "efficientnet_b0.nn": ("EfficientNetB0", 5_288_548, (1000,)),  # published (torchvision)
    "shufflenet_v2.nn": ("ShuffleNetV2", 2_278_604, (1000,)),  # published (torchvision)
    "convnext_tiny.nn": ("ConvNeXtTiny", 28_589_128, (1000,)),  # published (torchvision)
    "char_lstm.nn": ("CharLSTM", 102_586, (64, 122)),  # next-character logits per position
    "vit_b_16.nn": ("ViT_B_16", 86_567_656, (1000,)),  # published (torchvision)
    "vit_tiny_digits.nn": ("ViTTinyDigits", 136_138, (10,)),
    "gpt_char.nn": ("GptChar", 213_248, (64, 142)),  # next-character logits per position
}


def example_files() -> list[str]:
    """Every spec in examples/ except the shared block libraries under examples/blocks/."""
    return sorted(p.name for p in EXAMPLES.glob("*.nn"))


def load(name: str, **kwargs) -> nnspec.Model:
    return nnspec.load(EXAMPLES / name, **kwargs)


@pytest.fixture(scope="module")
def models() -> dict[str, nnspec.Model]:
    return {name: load(name) for name in EXPECTED}


def test_every_example_is_covered():
    assert example_files() == sorted(EXPECTED), "add new examples to EXPECTED"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_elaborates_without_warnings(name, models):
    model = models[name]
    assert model.name == EXPECTED[name][0]
    assert model.warnings == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_parameter_count(name, models):
    summary = models[name].summary()
    assert summary.total_params == EXPECTED[name][1]
    assert sum(row.params for row in summary.layers) == summary.total_params


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_output_shape(name, models):
    graph = models[name].graph
    assert len(graph.outputs) == 1
    assert graph.outputs[0].type.shape == EXPECTED[name][2]


@pytest.mark.parametrize(
    ("name", "model", "params"),
    [
        ("lenet5.nn", "LeNet5", 61_706),
        ("alexnet.nn", "AlexNet", 61_100_840),
        ("vgg16.nn", "VGG16", 138_357_544),
        ("resnet18.nn", "ResNet18", 11_689_512),
        ("resnet50.nn", "ResNet50", 25_557_032),
    ],
)
def test_published_counts(name, model, params):
    assert load(name, model=model).summary().total_params == params


def test_gpt_char_at_gpt2_small_sizes_counts_gpt2s_parameters():
    """GPT-2 small (Radford et al. 2019): 124,439,808 parameters, the head tied to wte."""
    sizes = {"vocab": 50257, "context": 1024, "dim": 768, "layers": 12, "heads": 12, "mlp": 3072}
    graph = load("gpt_char.nn", args=sizes).graph
    assert graph.param_count == 124_439_808
    head = next(n for n in graph.nodes if n.name == "lm_head")
    assert head.params == {} and head.tied == {"weight": "wte.weight"}
    assert graph.outputs[0].type.shape == (1024, 50257)
    attention = next(n for n in graph.nodes if n.op == "attention")
    assert attention.params == {"in_proj_weight": (2304, 768), "in_proj_bias": (2304,),
                                "out_proj.weight": (768, 768), "out_proj.bias": (768,)}


def test_output_shapes_match_inputs_for_dense_prediction(models):
    """Segmentation and reconstruction keep the input's spatial size (unet_valid trims it)."""
    for name in ("fcn.nn", "unet.nn", "autoencoder.nn"):
        graph = models[name].graph
        assert graph.outputs[0].type.shape[1:] == graph.inputs[0].type.shape[1:], name
    assert models["autoencoder.nn"].graph.outputs[0].type.shape == (1, 8, 8)


def test_unet_valid_shapes_and_counts(models):
    graph = models["unet_valid.nn"].graph
    assert graph.inputs[0].type.shape == (1, 572, 572)
    assert graph.outputs[0].type.shape == (2, 388, 388)
    # the often-quoted 31,030,593 is the same network with one output channel
    assert load("unet_valid.nn", args={"classes": 1}).summary().total_params == 31_030_593
    crops = {n.name: n.output.shape for n in graph.nodes if n.op == "center_crop"}
    assert crops == {
        "up4.center_crop_1": (512, 56, 56),
        "up3.center_crop_1": (256, 104, 104),
        "up2.center_crop_1": (128, 200, 200),
        "up1.center_crop_1": (64, 392, 392),
    }


def test_model_arguments_documented_in_headers():
    assert load("inception.nn", args={"k5": 5}).summary().total_params == 7_005_832
    assert load("xception.nn", args={"middle": 4}).summary().total_params == 16_400_048
    assert load("unet.nn", args={"base": 32}).summary().total_params == 7_763_074


def test_intermediate_shapes(models):
    """Shapes documented in the examples' comments, at the stage boundaries."""
    shapes = {
        "alexnet.nn": {"features.maxpool_3": (256, 6, 6), "features.conv_1": (64, 55, 55)},
        "vgg16.nn": {"stage_5.maxpool_1": (512, 7, 7), "flatten_1": (25088,)},
        "resnet18.nn": {"stem.maxpool_1": (64, 56, 56), "layer4.basic_block_2.relu_1": (512, 7, 7)},
        "resnet50.nn": {"layer1.bottleneck_3.relu_1": (256, 56, 56),
                        "layer4.bottleneck_3.relu_1": (2048, 7, 7)},
        "inception.nn": {"inception3a.concat_1": (256, 28, 28),
                         "inception5b.concat_1": (1024, 7, 7)},
        "xception.nn": {"entry1.add_1": (128, 74, 74), "middle_flow.middle_8.add_1": (728, 19, 19),
                        "exit.add_1": (1024, 10, 10)},
        "unet.nn": {"up1.concat_1": (1024, 16, 16)},
        "lstm_classifier.nn": {"lstm_1": (64,)},
    }
    for name, expected in shapes.items():
        graph = models[name].graph
        for node, shape in expected.items():
            assert graph.node(node).output.shape == shape, (name, node)


def test_module_names_are_stable(models):
    resnet18 = {row.name: row for row in models["resnet18.nn"].summary().layers}
    # the second residual block of the first stage; its first conv
    assert resnet18["layer1.basic_block_2.main.conv_1"].op == "conv"
    assert resnet18["layer1.basic_block_2.main.conv_1"].params == 64 * 64 * 9
    # a downsampling shortcut only where the stride or the width changes
    assert "layer1.basic_block_1.shortcut.conv_1" not in resnet18
    assert resnet18["layer2.basic_block_1.shortcut.conv_1"].params == 64 * 128
    assert "layer2.basic_block_2.shortcut.conv_1" not in resnet18
    assert resnet18["fc"].params == 512 * 1000 + 1000
    shortcuts = [n for n in resnet18 if ".shortcut.conv" in n]
    assert shortcuts == [f"layer{i}.basic_block_1.shortcut.conv_1" for i in (2, 3, 4)]

    resnet50 = {row.name for row in models["resnet50.nn"].summary().layers}
    # layer1's first block widens 64 -> 256: a 1x1 projection without stride
    assert "layer1.bottleneck_1.shortcut.conv_1" in resnet50
    assert "layer3.bottleneck_6.main.conv_3" in resnet50

    lenet = [row.name for row in models["lenet5.nn"].summary().layers if row.params]
    assert lenet == ["c1", "c3", "f5", "f6", "f7"]

    unet = {row.name for row in models["unet_valid.nn"].summary().layers}
    assert {"enc1.double_conv_1.conv_1", "bottom.conv_2", "up1.up.upconv_1", "head"} <= unet


def test_course_example_conv_layer():
    """A 3x32x32 input, conv(10, 5, stride=1, padding=2): [10, 32, 32], (5·5·3 + 1)·10 = 760."""
    model = nnspec.load(text="""
model CourseConv {
    input x: [3, 32, 32]
    x -> conv(10, 5, stride=1, padding=2) -> output
}
""")
    assert model.warnings == []
    assert model.graph.outputs[0].type.shape == (10, 32, 32)
    summary = model.summary()
    assert summary.total_params == 760
    (row,) = summary.layers
    assert (row.name, row.op, row.output_shape, row.params) == ("conv_1", "conv", (10, 32, 32), 760)


# == cross-check against torch modules built by hand ==================================


def spec_shapes(model: nnspec.Model, table: str = "params") -> list[tuple[str, tuple[int, ...]]]:
    """(parameter kind, shape) in graph order: the order torch registers a module's tensors."""
    return [(key.rsplit(".", 1)[-1], tuple(shape))
            for node in model.graph.nodes for key, shape in getattr(node, table).items()]


def torch_shapes(module, buffers: bool = False) -> list[tuple[str, tuple[int, ...]]]:
    named = module.named_buffers() if buffers else module.named_parameters()
    return [(name.rsplit(".", 1)[-1], tuple(t.shape)) for name, t in named]


def test_lenet5_matches_torch():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    reference = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10),
    )
    model = load("lenet5.nn")
    assert spec_shapes(model) == torch_shapes(reference)
    assert sum(p.numel() for p in reference.parameters()) == model.summary().total_params
    out = reference(torch.zeros(2, 1, 32, 32))
    assert tuple(out.shape[1:]) == model.graph.outputs[0].type.shape


def test_resnet18_matches_torch():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class BasicBlock(nn.Module):  # torchvision.models.resnet.BasicBlock
        def __init__(self, c_in: int, c: int, stride: int = 1):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)
            self.downsample = None
            if stride != 1 or c_in != c:
                self.downsample = nn.Sequential(nn.Conv2d(c_in, c, 1, stride, bias=False),
                                                nn.BatchNorm2d(c))

        def forward(self, x):
            out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]
    c_in = 64
    for c, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(c_in, c, stride), BasicBlock(c, c)]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    reference = nn.Sequential(*layers)

    model = load("resnet18.nn")
    assert spec_shapes(model) == torch_shapes(reference)
    assert spec_shapes(model, "buffers") == torch_shapes(reference, buffers=True)
    assert sum(p.numel() for p in reference.parameters()) == 11_689_512
    summary = model.summary()
    assert summary.buffers == sum(math.prod(b.shape) for b in reference.buffers())
    # the output shape of every conv, including the floored stride-2 sizes
    seen: list[tuple[int, ...]] = []
    for module in reference.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:])))
    reference.eval()
    with torch.no_grad():
        out = reference(torch.zeros(1, 3, 224, 224))
    assert seen == [n.output.shape for n in model.graph.nodes if n.op == "conv"]
    assert tuple(out.shape[1:]) == model.graph.outputs[0].type.shape
