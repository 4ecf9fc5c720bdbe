"""Summary of an elaborated graph: per layer shape, parameters, MACs, receptive field, memory.

Conventions (printed with the table): one MAC is one multiply-add; memory is per sample, in
bytes of the output activation (float32 = 4 bytes); the receptive field is in input pixels
along the largest spatial axis, and is absent once no spatial axis is left.

A field can also be unknown: a layer that rearranges spatial positions yet keeps a spatial
axis (a `reshape` of [8, 30, 30] to [8, 900], `flatten(start=1)`) has no window in input
pixels. Unknown stays unknown downstream, whatever other inputs of a layer know; the model's
total is unknown (null, like an absent field) once an output's field is unknown, rather than
the largest field known before it.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..ir import Graph, ReceptiveField, TensorType

BYTES = {"float32": 4, "int64": 8}


class LayerRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    op: str
    output_shape: tuple[int, ...]
    params: int
    buffers: int
    macs: int
    receptive_field: int | None
    memory: int  # bytes of the output activation per sample


class Summary(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    inputs: tuple[dict[str, Any], ...]
    outputs: tuple[dict[str, Any], ...]
    layers: tuple[LayerRow, ...]
    total_params: int
    trainable_params: int
    buffers: int
    total_macs: int
    receptive_field: int | None
    activation_memory: int  # bytes per sample, every layer output kept (training)
    parameter_memory: int  # bytes of parameters and buffers

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _tensor(name: str, t: TensorType) -> dict[str, Any]:
    return {"name": name, "shape": list(t.shape), "dtype": t.dtype}


def field_lost(known_input: bool, field: ReceptiveField | None, output: TensorType) -> bool:
    """Whether a layer makes a known receptive field unknown: an input had a field, the layer
    has none (it mixed or moved spatial positions), and a spatial axis longer than 1 is left.
    A global pool ([C, 1, 1]) or a flatten to one axis leaves none: the field is then absent
    and the total is the largest field before it, as summaries conventionally report."""
    return known_input and field is None and output.rank >= 2 and max(output.shape[1:]) > 1


def unknown_fields(graph: Graph) -> dict[str, str]:
    """The values whose receptive field is unknown, each with the layer that made it unknown."""
    known = {i.name for i in graph.inputs if i.type.rank >= 2 and i.type.dtype == "float32"}
    unknown: dict[str, str] = {}
    for node in graph.nodes:
        cause = next((unknown[v] for v in node.inputs if v in unknown), None)
        if cause is None and field_lost(any(v in known for v in node.inputs), node.receptive_field,
                                        node.output):
            cause = node.name
        if cause is not None:
            unknown[node.name] = cause
        elif node.receptive_field is not None:
            known.add(node.name)
    return unknown


def summarize(graph: Graph) -> Summary:
    rows = tuple(
        LayerRow(
            name=n.name,
            op=n.op,
            output_shape=n.output.shape,
            params=n.param_count,
            buffers=n.buffer_count,
            macs=n.macs,
            receptive_field=n.receptive_field.size if n.receptive_field else None,
            memory=n.output.numel * BYTES[n.output.dtype],
        )
        for n in graph.nodes
    )
    fields = [r.receptive_field for r in rows if r.receptive_field is not None]
    unknown = unknown_fields(graph)
    if any(o.value in unknown for o in graph.outputs):
        fields = []  # unknown at an output: not the largest field known before it
    params = sum(r.params for r in rows)
    buffers = sum(r.buffers for r in rows)
    return Summary(
        model=graph.name,
        inputs=tuple(_tensor(i.name, i.type) for i in graph.inputs),
        outputs=tuple(_tensor(o.name, o.type) for o in graph.outputs),
        layers=rows,
        total_params=params,
        trainable_params=params,
        buffers=buffers,
        total_macs=sum(r.macs for r in rows),
        receptive_field=max(fields) if fields else None,
        activation_memory=sum(r.memory for r in rows),
        parameter_memory=4 * (params + buffers),
    )


def human_count(n: int) -> str:
    """11689512 -> '11.69M'."""
    for unit, scale in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def human_bytes(n: int) -> str:
    if n <= 0:
        return "0 B"
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    k = min(int(math.log(n, 1024)), len(units) - 1)
    return f"{n / 1024**k:.1f} {units[k]}" if k else f"{n} B"
