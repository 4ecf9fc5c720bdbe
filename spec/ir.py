"""The IR: plain, frozen pydantic data that every backend reads and that round-trips JSON.

Shapes exclude the batch dimension, which is symbolic and written nowhere: a model input
declared ``[1, 28, 28]`` takes tensors of shape ``[B, 1, 28, 28]`` for any batch size B.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .source import Span

DType = Literal["float32", "int64"]
Rounding = Literal["exact", "floor", "ceil"]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class TensorType(BaseModel):
    """A tensor per sample: its shape without the batch axis, and its element type."""

    model_config = _FROZEN

    shape: tuple[int, ...]
    dtype: DType = "float32"

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def __str__(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"[{dims}]" if self.dtype == "float32" else f"int[{dims}]"


class ReceptiveField(BaseModel):
    """Receptive field along the spatial axes, in input pixels (Araujo et al. 2019).

    For a window of effective size k' = d(k-1)+1 and stride s:
    ``size_out = size_in + (k' - 1) * jump_in`` and ``jump_out = jump_in * s``.
    ``jump`` can be fractional after upsampling, hence a float.
    """

    model_config = _FROZEN

    size: int
    jump: float


class Node(BaseModel):
    """One layer: an op applied to named values, producing the value named ``name``."""

    model_config = _FROZEN

    name: str  # module path, e.g. "residual_2.main.conv_1" (state_dict prefix)
    op: str  # registry name
    attrs: dict[str, Any]  # validated attribute values, JSON-plain
    inputs: tuple[str, ...]
    output: TensorType
    params: dict[str, tuple[int, ...]] = Field(default_factory=dict)
    buffers: dict[str, tuple[int, ...]] = Field(default_factory=dict)
    macs: int = 0
    receptive_field: ReceptiveField | None = None  # None: no spatial axes left
    span: Span
    # weight tying: a parameter this node uses but another owns, param -> "<owner>.<param>";
    # not in ``params`` (counted once, saved once, one ONNX initializer)
    tied: dict[str, str] = Field(default_factory=dict)

    @property
    def param_count(self) -> int:
        return sum(math.prod(s) for s in self.params.values())

    @property
    def buffer_count(self) -> int:
        return sum(math.prod(s) for s in self.buffers.values())

    def state_keys(self) -> dict[str, str]:
        """Each tensor the op reads (its parameters, buffers and tied parameters) -> the
        weights-file key holding it."""
        own = {key: f"{self.name}.{key}" for key in (*self.params, *self.buffers)}
        return {**own, **self.tied}


class GraphInput(BaseModel):
    model_config = _FROZEN

    name: str
    type: TensorType
    span: Span


class GraphOutput(BaseModel):
    model_config = _FROZEN

    name: str  # the output's public name (ONNX output, dict key)
    value: str  # the value it exposes: an input name or a node name
    type: TensorType


class Graph(BaseModel):
    """A model with its arguments resolved: inputs, nodes in topological order, outputs."""

    model_config = _FROZEN

    name: str
    args: dict[str, Any]
    inputs: tuple[GraphInput, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[GraphOutput, ...]
    span: Span

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def value_type(self, name: str) -> TensorType:
        for i in self.inputs:
            if i.name == name:
                return i.type
        return self.node(name).output

    @property
    def param_count(self) -> int:
        return sum(n.param_count for n in self.nodes)

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """The compiled module's state_dict as the IR knows it: every parameter and buffer,
        ``<node>.<name>`` to its shape, in module order (what a weights file must hold)."""
        return {f"{node.name}.{key}": tuple(shape) for node in self.nodes
                for key, shape in (*node.params.items(), *node.buffers.items())}

    @property
    def buffer_count(self) -> int:
        return sum(n.buffer_count for n in self.nodes)

    @property
    def macs(self) -> int:
        return sum(n.macs for n in self.nodes)


class SourceInfo(BaseModel):
    model_config = _FROZEN

    file: str
    sha256: str


class Program(BaseModel):
    """Everything one spec file compiles to: its models (and, later, recipes)."""

    model_config = _FROZEN

    version: int = 1
    sources: tuple[SourceInfo, ...]
    models: dict[str, Graph]
