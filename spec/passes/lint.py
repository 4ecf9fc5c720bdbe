"""Lint: valid specs that are probably not what their author meant. Warnings only."""

from __future__ import annotations

from .. import codes
from ..diagnostics import Diagnostic, warning
from ..ir import Graph


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
    return found
