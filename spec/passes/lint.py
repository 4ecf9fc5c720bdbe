"""Lint: valid specs that are probably not what their author meant. Warnings only."""

from __future__ import annotations

from .. import codes
from ..diagnostics import Diagnostic, warning
from ..ir import Graph, TensorType
from ..source import Span


def lint(graph: Graph) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for node in graph.nodes:
        if node.op == "linear":
            x = graph.value_type(node.inputs[0])
            if x.rank >= 3:
                found.append(warning(
                    codes.LINEAR_ON_MAP,
                    f"`linear` acts on the last axis of {x}, giving {node.output}",
                    node.span, f"input {x}",
                    help="put `flatten` before it to connect every feature",
                ))
        elif node.op == "layernorm" and node.attrs.get("dims") is None:
            x = graph.value_type(node.inputs[0])
            if x.rank == 3:
                found.append(_layernorm_axes(node.span, x))
    return found


def _layernorm_axes(span: Span, x: TensorType) -> Diagnostic:
    """`layernorm` with `dims` left out on [C, H, W]: all C·H·W values, not LayerNorm2d."""
    c, h, w = x.shape
    return warning(
        codes.LAYERNORM_AXES,
        f"`layernorm` without `dims` on {x} normalises all {c}·{h}·{w} = {c * h * w} values "
        "of each sample together",
        span, f"input {x}",
        notes=[f"chosen: every feature (dims=all), γ and β of shape {list(x.shape)}",
               f"not each position's {c} channel values alone (ConvNeXt's LayerNorm2d)"],
        help="say `layernorm(dims=all)` to mean every feature, `layernorm(dims=channels)` "
             f"to normalise each position's {c} channel values (LayerNorm2d), or `layernorm(1)` "
             "for the last axis only",
    )
