"""The numpy reference interpreter: a whole IR graph evaluated in float64 by its ops'
``reference`` methods, in eval mode. The third, independent implementation of every
model, against which torch and onnxruntime are compared layer by layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nnspec.spec.ir import Graph
from nnspec.spec.ops import op_of


def node_params(graph: Graph, weights: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """{node: {param: float64 array}} for the parameters and float buffers of every node."""
    out = {}
    for node in graph.nodes:
        params = {}
        for key, full in node.state_keys().items():
            array = np.asarray(weights[full])
            if np.issubdtype(array.dtype, np.floating):
                params[key] = array.astype(np.float64)
        out[node.name] = params
    return out


def interpret(graph: Graph, weights: Mapping[str, np.ndarray], inputs: Sequence[np.ndarray]
              ) -> dict[str, np.ndarray]:
    """Every value of the graph, by name: the inputs and each node's output (batch-leading).

    ``weights`` maps state_dict keys to arrays; ``inputs`` follow the graph's input order.
    """
    values: dict[str, np.ndarray] = {}
    for spec, array in zip(graph.inputs, inputs, strict=True):
        a = np.asarray(array)
        values[spec.name] = a if spec.type.dtype == "int64" else a.astype(np.float64)
    params = node_params(graph, weights)
    for node in graph.nodes:
        op = op_of(node.op, node.attrs)
        values[node.name] = np.asarray(op.reference([values[v] for v in node.inputs],
                                                    params[node.name]))
    return values


__all__ = ["interpret", "node_params"]
