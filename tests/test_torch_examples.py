"""Every example in examples/ compiled to torch: the GraphModule and the standalone source.

The GraphModule must produce the IR's shape at every named node, hold the IR's parameters
per layer and in total, and have the spec's names as state_dict keys. The standalone file
written by torch_source must import only torch, load the GraphModule's state_dict strictly
and compute the same outputs.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

import nnspec

torch = pytest.importorskip("torch")
torch_build = pytest.importorskip("nnspec.compiler.torch_build")
torch_source = pytest.importorskip("nnspec.compiler.torch_source")

EXAMPLES = Path(__file__).parent.parent / "examples"
NAMES = sorted(p.name for p in EXAMPLES.glob("*.nn"))  # not examples/blocks/
# the slowest forward passes on a 2-core CPU: unet_valid at 572×572 (~4 s each way) and
# xception at 299×299 (~3 s), compiled here at their published (default) sizes
SLOW = {"unet_valid.nn", "xception.nn"}
BIG = {"alexnet.nn", "vgg16.nn", "resnet50.nn", "unet_valid.nn", "xception.nn"}


def batch_size(name: str) -> int:
    return 1 if name in BIG else 2


class Compiled:
    """One example, compiled and run once, with each node's output shape recorded."""

    def __init__(self, name: str):
        self.name = name
        self.graph = nnspec.load(EXAMPLES / name).graph
        self.module = torch_build.build_module(self.graph).eval()
        self.shapes: dict[str, tuple[int, ...]] = {}
        hooks = [
            self.module.get_submodule(node.name).register_forward_hook(self._hook(node.name))
            for node in self.graph.nodes
        ]
        torch.manual_seed(0)
        batch = batch_size(name)
        self.inputs = tuple(
            torch.zeros(batch, *i.type.shape, dtype=torch.int64)
            if i.type.dtype == "int64" else torch.randn(batch, *i.type.shape)
            for i in self.graph.inputs
        )
        with torch.no_grad():
            self.output = self.module(*self.inputs)
        for hook in hooks:
            hook.remove()

    def _hook(self, name: str):
        def record(module, args, output) -> None:
            self.shapes[name] = tuple(output.shape)
        return record


@pytest.fixture(
    scope="module",
    params=[pytest.param(n, id=n.removesuffix(".nn"), marks=[pytest.mark.slow] if n in SLOW else [])
            for n in NAMES],
)
def compiled(request) -> Compiled:
    return Compiled(request.param)


def test_examples_found():
    assert len(NAMES) >= 10 and "lenet5.nn" in NAMES


def test_shape_at_every_node(compiled: Compiled):
    batch = batch_size(compiled.name)
    expected = {n.name: (batch, *n.output.shape) for n in compiled.graph.nodes}
    assert compiled.shapes == expected
    (out,) = compiled.graph.outputs
    assert tuple(compiled.output.shape) == (batch, *out.type.shape)


def test_parameters_per_layer_and_total(compiled: Compiled):
    module, graph = compiled.module, compiled.graph
    per_layer = {
        n.name: sum(p.numel() for p in module.get_submodule(n.name).parameters())
        for n in graph.nodes
    }
    assert per_layer == {n.name: n.param_count for n in graph.nodes}
    total = sum(p.numel() for p in module.parameters())
    assert total == sum(n.param_count for n in graph.nodes) == graph.param_count


def test_state_dict_keys_are_spec_names(compiled: Compiled):
    expected = {
        f"{n.name}.{key}": shape
        for n in compiled.graph.nodes for key, shape in {**n.params, **n.buffers}.items()
    }
    state = {k: tuple(v.shape) for k, v in compiled.module.state_dict().items()}
    assert state == expected


def test_standalone_source_matches(compiled: Compiled, tmp_path: Path):
    graph = compiled.graph
    text = torch_source.torch_source(graph)
    imports = re.findall(r"^\s*(?:from\s+(\S+)\s+import|import\s+(\S+))", text, re.M)
    modules = {a or b for a, b in imports}
    assert not any("nnspec" in m for m in modules), modules
    assert {m.split(".")[0] for m in modules} <= {"torch", "__future__"}, modules

    path = tmp_path / f"{Path(compiled.name).stem}_model.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    standalone = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(standalone)
    model = getattr(standalone, graph.name)().eval()
    model.load_state_dict(compiled.module.state_dict(), strict=True)
    assert sum(p.numel() for p in model.parameters()) == graph.param_count
    with torch.no_grad():
        output = model(*compiled.inputs)
    torch.testing.assert_close(output, compiled.output)
