"""Dev-only check of the torchvision example specs against torchvision's own modules.

Not a test and not imported by the tests; torchvision is not a dependency. Run it by hand:

    .venv/bin/python tests/torchvision_layouts.py TORCHVISION_SRC [example.nn ...]

TORCHVISION_SRC is a folder holding torchvision's sources (the folder that contains the
``torchvision`` package, or the package folder itself). Only the model files and
``ops/misc.py`` / ``ops/stochastic_depth.py`` are used: they are copied into a throw-away
package in a temporary folder, beside light stubs for what they import and we cannot or
need not import (``_log_api_usage_once``, the transforms presets, the weights' download),
and the model is built by torchvision's builder at its default arguments (no weights).

For each example (all of them when none is named) it prints:

1. the parameter count of both sides;
2. whether the state_dict tensors (parameters and buffers) have the same shapes in the
   same order, the first mismatch otherwise;
   (ConvNeXt's layer scales are moved behind their blocks' layers first: see
   ``torchvision_order``);
3. with torchvision's (seeded random) weights copied into the spec's compiled module by
   order, and batchnorm statistics made non-trivial, the largest absolute difference of the
   eval-mode outputs on one random input.

Exit status 0 when every layout matched and every output agreed within 1e-4 of the output's
scale, 1 otherwise.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
from pathlib import Path

import torch

import nnspec
from nnspec.compiler.torch_build import build_module

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# example file -> (torchvision module under models/, builder)
TARGETS: dict[str, tuple[str, str]] = {
    "squeezenet1_0.nn": ("squeezenet", "squeezenet1_0"),
    "densenet121.nn": ("densenet", "densenet121"),
    "mobilenet_v2.nn": ("mobilenetv2", "mobilenet_v2"),
    "mobilenet_v3_small.nn": ("mobilenetv3", "mobilenet_v3_small"),
    "efficientnet_b0.nn": ("efficientnet", "efficientnet_b0"),
    "shufflenet_v2.nn": ("shufflenetv2", "shufflenet_v2_x1_0"),
    "convnext_tiny.nn": ("convnext", "convnext_tiny"),
}
TOLERANCE = 1e-4

STUBS = {
    "__init__.py": "",
    "utils.py": '''
import collections.abc
from itertools import repeat


def _log_api_usage_once(obj):
    return None


def _make_ntuple(x, n):
    if isinstance(x, collections.abc.Iterable):
        return tuple(x)
    return tuple(repeat(x, n))
''',
    "_utils.py": '''
def sequence_to_str(seq, separate_last=""):
    return ", ".join(f"'{item}'" for item in seq)
''',
    "_internally_replaced_utils.py": '''
def load_state_dict_from_url(*args, **kwargs):
    raise RuntimeError("no downloads in the layout check")
''',
    "transforms/__init__.py": "",
    "transforms/_presets.py": '''
import enum


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


class ImageClassification:
    def __init__(self, *args, **kwargs):
        pass
''',
    "models/__init__.py": "",
    "ops/__init__.py": "from .misc import *  # noqa\nfrom .stochastic_depth import StochasticDepth\n",
}


def stub_package(source: Path, root: Path) -> None:
    """torchvision's model files and ops under root/torchvision, with the stubs beside."""
    package = source / "torchvision" if (source / "torchvision").is_dir() else source
    target = root / "torchvision"
    for relative, text in STUBS.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    copied = ["models/_api.py", "models/_meta.py", "models/_utils.py", "ops/misc.py",
              "ops/stochastic_depth.py"]
    copied += [f"models/{module}.py" for module, _ in TARGETS.values()]
    for relative in copied:
        shutil.copy(package / relative, target / relative)


def torchvision_model(module: str, builder: str) -> torch.nn.Module:
    return getattr(importlib.import_module(f"torchvision.models.{module}"), builder)()


def perturb(module: torch.nn.Module) -> None:
    """Batchnorm statistics and affine values away from 0 / 1, so eval mode is exercised."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
                sub.running_mean.uniform_(-0.2, 0.2)
                sub.running_var.uniform_(0.5, 1.5)
                sub.weight.uniform_(0.8, 1.2)
                sub.bias.uniform_(-0.1, 0.1)
            elif isinstance(sub, torch.nn.LayerNorm) or type(sub).__name__ == "LayerNorm2d":
                sub.weight.uniform_(0.8, 1.2)
                sub.bias.uniform_(-0.1, 0.1)
            elif type(sub).__name__ == "CNBlock":  # layer scale 1e-6 would hide the blocks
                sub.layer_scale.uniform_(0.5, 1.5)


def torchvision_order(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's state_dict in the spec's order: the one known difference is ConvNeXt's
    CNBlock, which registers its own `layer_scale` before its children, so torchvision
    lists it first in the block; the spec applies it, and lists it, after the block's layers.
    Each `P.layer_scale` is moved behind the last tensor under `P.`."""
    keys = list(state)
    for key in [k for k in keys if k.endswith(".layer_scale")]:
        prefix = key.removesuffix("layer_scale")
        keys.remove(key)
        last = max(i for i, k in enumerate(keys) if k.startswith(prefix))
        keys.insert(last + 1, key)
    return {k: state[k] for k in keys}


def compare(name: str, module: str, builder: str) -> bool:
    print(f"== {name} (torchvision.models.{builder})")
    torch.manual_seed(0)
    reference = torchvision_model(module, builder).eval()
    perturb(reference)
    graph = nnspec.load(EXAMPLES / name).graph
    spec = build_module(graph).eval()
    counts = [sum(p.numel() for p in m.parameters()) for m in (reference, spec)]
    print(f"   parameters: torchvision {counts[0]:,}, spec {counts[1]:,}")
    theirs, ours = torchvision_order(reference.state_dict()), spec.state_dict()
    shapes = [[tuple(t.shape) for t in s.values()] for s in (theirs, ours)]
    ok = counts[0] == counts[1]
    if shapes[0] != shapes[1]:
        first = next((i for i, (a, b) in enumerate(zip(*shapes)) if a != b),
                     min(map(len, shapes)))
        keys = [list(theirs), list(ours)]
        where = [k[first] if first < len(k) else "(end)" for k in keys]
        print(f"   layout: differs at tensor {first}: torchvision {where[0]} "
              f"{shapes[0][first] if first < len(shapes[0]) else ''}, spec {where[1]} "
              f"{shapes[1][first] if first < len(shapes[1]) else ''} "
              f"({len(shapes[0])} vs {len(shapes[1])} tensors)")
        return False
    print(f"   layout: {len(shapes[0])} state tensors, same shapes in the same order")
    spec.load_state_dict(dict(zip(ours, theirs.values())), strict=True)
    torch.manual_seed(1)
    x = torch.randn(1, *graph.inputs[0].type.shape)
    with torch.no_grad():
        want, got = reference(x), spec(x)
    diff = float((want - got).abs().max())
    peak = float(want.abs().max())
    scale = max(1.0, peak)
    print(f"   outputs: max |torchvision - spec| = {diff:.3g} (max |output| {peak:.3g})")
    return ok and diff <= TOLERANCE * scale


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    source, names = Path(argv[0]), argv[1:] or list(TARGETS)
    with tempfile.TemporaryDirectory() as tmp:
        stub_package(source, Path(tmp))
        sys.path.insert(0, tmp)
        results = [compare(name, *TARGETS[name]) for name in names
                   if (EXAMPLES / name).is_file() or print(f"== {name}: not written yet")]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
