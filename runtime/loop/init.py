"""Weight initialisation (course, lecture 7): zeros, constant, normal(std), uniform(a),
Xavier (variance 1/n averaged over fan-in and fan-out) and Kaiming (variance 2/fan_in).

Applied per layer to the weight of every op with one; biases are zeroed by every scheme but
`default` (torch's own initialisation, left untouched). Deterministic under torch's seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nnspec.spec.ir import Graph
from nnspec.spec.ops import REGISTRY


def init_tensor(weight: torch.Tensor, scheme: str, args: Mapping[str, Any]) -> None:
    """Fill one weight in place. `kaiming` assumes ReLU (gain √2); `xavier` is uniform."""
    with torch.no_grad():
        if scheme == "zeros":
            weight.zero_()
        elif scheme == "constant":
            weight.fill_(float(args.get("value", 0.0)))
        elif scheme == "normal":
            weight.normal_(0.0, float(args.get("std", 0.01)))
        elif scheme == "uniform":
            a = float(args.get("a", 0.05))
            weight.uniform_(-a, a)
        elif weight.dim() < 2:  # fan-in is undefined for a vector: small normal
            weight.normal_(0.0, 0.01)
        elif scheme in ("xavier", "xavier_uniform"):
            nn.init.xavier_uniform_(weight, gain=float(args.get("gain", 1.0)))
        elif scheme == "xavier_normal":
            nn.init.xavier_normal_(weight, gain=float(args.get("gain", 1.0)))
        elif scheme in ("kaiming", "kaiming_normal"):
            nn.init.kaiming_normal_(weight, nonlinearity=str(args.get("nonlinearity", "relu")))
        elif scheme == "kaiming_uniform":
            nn.init.kaiming_uniform_(weight, nonlinearity=str(args.get("nonlinearity", "relu")))
        else:
            raise ValueError(f"unknown init scheme {scheme!r}")


def initialise(
    module: nn.Module,
    graph: Graph,
    default: tuple[str, Mapping[str, Any]] | None,
    per_kind: Mapping[str, tuple[str, Mapping[str, Any]]] | None = None,
) -> dict[str, str]:
    """Initialise each node's parameters by its op kind; return {node: scheme} as applied.

    Weights are the parameters whose name ends in `weight` (or `weight_ih_l0`...). An op
    whose class sets `keeps_own_init` keeps its module's values under every scheme: norm
    layers their γ = 1, β = 0, which is what every scheme of the course assumes, and
    layer_scale its constant `init` (1e-6), which a fan-in scheme would overwrite.
    """
    applied: dict[str, str] = {}
    per_kind = per_kind or {}
    for node in graph.nodes:
        if not node.params or REGISTRY[node.op].keeps_own_init:  # the norms, layer_scale
            continue
        scheme, args = per_kind.get(node.op, default or ("default", {}))
        if scheme == "default":
            continue
        layer = module.get_submodule(node.name)
        for name, param in layer.named_parameters():
            if "weight" in name.rsplit(".", 1)[-1]:
                init_tensor(param, scheme, args)
            elif "bias" in name.rsplit(".", 1)[-1]:
                with torch.no_grad():
                    param.zero_()
        applied[node.name] = scheme
    return applied


def expected_std(scheme: str, fan_in: int, fan_out: int, args: Mapping[str, Any] | None = None) -> float:
    """The standard deviation a scheme targets, for tests and the init-statistics report."""
    args = args or {}
    if scheme in ("xavier", "xavier_uniform", "xavier_normal"):
        return float(args.get("gain", 1.0)) * math.sqrt(2.0 / (fan_in + fan_out))
    if scheme in ("kaiming", "kaiming_normal", "kaiming_uniform"):
        return math.sqrt(2.0 / fan_in)
    if scheme == "normal":
        return float(args.get("std", 0.01))
    if scheme == "uniform":
        return float(args.get("a", 0.05)) / math.sqrt(3.0)
    return 0.0
