"""IR -> torch.nn.Module whose module tree and state_dict keys are the spec's names."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnspec.spec.ir import Graph
from nnspec.spec.ops import TorchCall, op_of

from . import torch_modules


def instantiate(call: TorchCall) -> nn.Module:
    """Build the module a TorchCall describes."""
    if call.cls.startswith("nn."):
        cls = getattr(nn, call.cls[3:])
    else:
        cls = getattr(torch_modules, call.cls)
    return cls(**call.kwargs)


def torch_calls(graph: Graph) -> list[TorchCall]:
    """Each node's TorchCall, in graph order."""
    types = {i.name: i.type for i in graph.inputs}
    calls = []
    for node in graph.nodes:
        op = op_of(node.op, node.attrs)
        calls.append(op.torch_call([types[name] for name in node.inputs]))
        types[node.name] = node.output
    return calls


def install(root: nn.Module, path: str, module: nn.Module) -> None:
    """Place ``module`` at the dotted ``path``, creating plain containers on the way."""
    *parents, leaf = path.split(".")
    owner = root
    for part in parents:
        child = owner._modules.get(part)
        if child is None:
            child = nn.Module()
            owner.add_module(part, child)
        owner = child
    owner.add_module(leaf, module)


class GraphModule(nn.Module):
    """A compiled spec model: runs its nodes in topological order.

    ``forward`` takes the model inputs positionally, in declaration order, each with a
    leading batch axis, and returns the output tensor (a tuple for several outputs).
    """

    def __init__(self, graph: Graph):
        super().__init__()
        self.model_name = graph.name
        self.input_names = tuple(i.name for i in graph.inputs)
        self.output_names = tuple(o.name for o in graph.outputs)
        slots = {name: i for i, name in enumerate(self.input_names)}
        steps: list[tuple[str, tuple[int, ...], int]] = []
        for node, call in zip(graph.nodes, torch_calls(graph), strict=True):
            install(self, node.name, instantiate(call))
            steps.append((node.name, tuple(slots[v] for v in node.inputs), len(slots)))
            slots[node.name] = len(slots)
        for node in graph.nodes:  # weight tying: the layer reads the owner's parameter
            for key, owner in node.tied.items():
                owner_module, _, attr = owner.rpartition(".")
                self.get_submodule(node.name).tie(key, self.get_submodule(owner_module), attr)
        self._steps = [(self.get_submodule(name), ins, out) for name, ins, out in steps]
        self._step_names = [name for name, _, _ in steps]
        self._outputs = tuple(slots[o.value] for o in graph.outputs)
        self._slot_count = len(slots)

    def forward(self, *inputs: torch.Tensor) -> Any:
        if len(inputs) != len(self.input_names):
            raise TypeError(f"{self.model_name} takes {len(self.input_names)} inputs "
                            f"({', '.join(self.input_names)}), got {len(inputs)}")
        values: list[Any] = list(inputs) + [None] * (self._slot_count - len(inputs))
        for module, ins, out in self._steps:
            values[out] = module(*(values[i] for i in ins))
        if len(self._outputs) == 1:
            return values[self._outputs[0]]
        return tuple(values[i] for i in self._outputs)


def build_module(graph: Graph) -> GraphModule:
    return GraphModule(graph)


def initial_weights(graph: Graph, seed: int = 0) -> dict[str, torch.Tensor]:
    """torch's default initialisation of the model, under ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return dict(build_module(graph).state_dict())


def expected_state(graph: Graph) -> dict[str, torch.Tensor]:
    """A freshly built module's state_dict (names and shapes; on the meta device: no memory)."""
    with torch.device("meta"):
        return dict(build_module(graph).state_dict())
