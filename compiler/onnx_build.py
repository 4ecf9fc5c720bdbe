"""IR + weights -> an ONNX ModelProto, emitted directly (no tracing, no torch.onnx.export).

Each op writes its own nodes (``Op.to_onnx`` in its family file) through :class:`OnnxGraph`,
a small builder that hands out unique names; this module is the plumbing around it:
inputs and outputs with the spec's names and a symbolic batch dimension ``batch``, the
weights as initializers named ``<node>.<param>`` (the state_dict keys), batchnorm folding,
metadata, and ``onnx.checker.check_model(full_check=True)``.

Opset 21 is pinned (see docs/onnx.md for what each op relies on). Eval semantics: dropout
is the identity, batchnorm uses its running statistics. Constants the lowerings need
(shapes, axes, permutations) are ``Constant`` nodes, never initializers, so the
initializers are exactly the parameters and the float buffers (``num_batches_tracked`` is
training-only and not exported).

onnx is imported inside the functions: ``nnspec check`` never imports it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nnspec.spec.ir import Graph, Node
from nnspec.spec.ops import op_of

if TYPE_CHECKING:
    import onnx

OPSET = 21
BATCH = "batch"  # the symbolic batch dimension of every input and output
FOLDABLE = {"conv": "", "conv1d": "", "conv2d": "", "separable_conv": "pointwise."}  # -> prefix
_DTYPES = {"float32": 1, "int64": 7}  # onnx.TensorProto.FLOAT, INT64


class OnnxGraph:
    """Collects the nodes and initializers of one graph; every name it hands out is unique.

    ``scope`` is the spec node being lowered: generated value and node names start with it.
    """

    def __init__(self) -> None:
        import onnx

        self.model = onnx.ModelProto()
        # the initializers, in order, as contiguous little-endian arrays: materialised into
        # the proto (OnnxFile.model) or streamed to a file without a copy (OnnxFile.write)
        self.weights: dict[str, np.ndarray] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.value_info: list[onnx.ValueInfoProto] = []
        self.values: set[str] = set()
        self._node_names: set[str] = set()
        self.scope = ""
        self.aliases: dict[str, str] = {}  # a tied parameter -> the initializer that holds it

    def fresh(self, base: str) -> str:
        """``base`` if no value has that name yet, else ``base_2``, ``base_3``..."""
        candidate, k = base, 2
        while candidate in self.values:
            candidate, k = f"{base}_{k}", k + 1
        self.values.add(candidate)
        return candidate

    def _name(self, op_type: str) -> str:
        base = f"{self.scope}/{op_type}" if self.scope else op_type
        candidate, k = base, 2
        while candidate in self._node_names:
            candidate, k = f"{base}_{k}", k + 1
        self._node_names.add(candidate)
        return candidate

    def initializer(self, name: str, array: np.ndarray) -> str:
        """A weight, under exactly ``name`` (the spec's ``<node>.<param>``)."""
        if name in self.aliases:  # weight tying: one initializer, read by both layers
            return self.aliases[name]
        if name in self.values:
            raise ValueError(f"initializer `{name}` defined twice")
        self.values.add(name)
        array = np.asarray(array)
        self.weights[name] = np.ascontiguousarray(array, array.dtype.newbyteorder("<"))
        return name

    def constant(self, array: Any, dtype: Any = None) -> str:
        """A ``Constant`` node holding ``array`` (shapes, axes, scales: not a weight)."""
        from onnx import helper, numpy_helper

        value = np.asarray(array, dtype=dtype)
        name = self.fresh(f"{self.scope}/const" if self.scope else "const")
        tensor = numpy_helper.from_array(value, name)
        self.nodes.append(helper.make_node("Constant", [], [name], name=self._name("Constant"),
                                           value=tensor))
        return name

    def ints(self, values: Sequence[int]) -> str:
        """A 1-d int64 constant (shapes, axes, pads, permutations)."""
        return self.constant(np.array(list(values), dtype=np.int64))

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str] | None = None,
             **attrs: Any) -> str:
        """Append one node; return its (first) output name. ``""`` skips an optional input."""
        from onnx import helper

        if outputs is None:
            outputs = [self.fresh(f"{self.scope}/{op_type}" if self.scope else op_type)]
        else:
            for name in outputs:
                if name and name not in self.values:
                    self.values.add(name)
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs),
                                           name=self._name(op_type), **attrs))
        return outputs[0]

    def declare(self, name: str, dtype: str, shape: Sequence[int]) -> str:
        """State the type of value ``name``: [batch, *shape]. Only for an op onnx cannot infer
        (GroupNormalization-21 has no shape-inference function in onnx 1.23, onnx#7157)."""
        self.value_info.append(_value_info(name, dtype, shape))
        return name

    def reshape(self, x: str, shape: Sequence[int]) -> str:
        """Reshape to ``shape``, where 0 keeps that axis (the batch axis, unknown here)."""
        return self.node("Reshape", [x, self.ints(shape)])

    def rename(self, old: str, new: str, since: int) -> str:
        """Rename value ``old`` to ``new`` in the nodes appended since index ``since``."""
        if new in self.values:
            return old
        self.values.add(new)
        for node in self.nodes[since:]:
            for seq in (node.input, node.output):
                for i, name in enumerate(seq):
                    if name == old:
                        seq[i] = new
        for info in self.value_info:
            if info.name == old:
                info.name = new
        return new


def as_numpy(weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A torch state_dict, safetensors tensors or numpy arrays -> numpy arrays."""
    arrays = {}
    for key, value in weights.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        arrays[key] = np.asarray(value)
    return arrays


def load_safetensors(path: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(path)


def fold_plan(graph: Graph) -> dict[str, str]:
    """{batchnorm node: conv node} for each batchnorm fed by a conv that nothing else uses."""
    uses: dict[str, int] = {}
    for node in graph.nodes:
        for name in node.inputs:
            uses[name] = uses.get(name, 0) + 1
    for out in graph.outputs:
        uses[out.value] = uses.get(out.value, 0) + 1
    producers = {n.name: n for n in graph.nodes}
    plan = {}
    for node in graph.nodes:
        source = producers.get(node.inputs[0]) if node.op == "batchnorm" else None
        if source is not None and source.op in FOLDABLE and uses[source.name] == 1:
            plan[node.name] = source.name
    return plan


def folded(conv: Node, conv_params: dict[str, np.ndarray], bn: Node,
           bn_params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The conv's weight and bias with the batchnorm's eval affine map folded in:
    s = γ / √(σ² + ε); W' = s·W (per output channel), b' = s·(b - μ) + β."""
    prefix = FOLDABLE[conv.op]
    w = conv_params[f"{prefix}weight"].astype(np.float64)
    channels = w.shape[0]
    gamma = bn_params.get("weight", np.ones(channels)).astype(np.float64)
    beta = bn_params.get("bias", np.zeros(channels)).astype(np.float64)
    mean = bn_params["running_mean"].astype(np.float64)
    var = bn_params["running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + float(bn.attrs.get("eps", 1e-5)))
    bias = conv_params.get(f"{prefix}bias", np.zeros(channels)).astype(np.float64)
    out = dict(conv_params)
    out[f"{prefix}weight"] = (w * scale.reshape(-1, *[1] * (w.ndim - 1))).astype(np.float32)
    out[f"{prefix}bias"] = ((bias - mean) * scale + beta).astype(np.float32)
    return out


def node_params(node: Node, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The node's parameters and float buffers by name, as float32 (ids stay integers)."""
    params = {}
    shapes = {**node.params, **node.buffers}
    for key, full in node.state_keys().items():
        shape = shapes.get(key)
        if full not in weights:
            raise ValueError(f"the weights have no `{full}`")
        array = np.asarray(weights[full])
        if shape is not None and tuple(array.shape) != tuple(shape):
            raise ValueError(f"`{full}` has shape {list(array.shape)}, the spec needs {list(shape)}")
        if not np.issubdtype(array.dtype, np.floating):
            continue  # num_batches_tracked: training-only, not exported
        params[key] = array.astype(np.float32, copy=False)
    return params


def output_kind(graph: Graph, task: str | None = None) -> str:
    """What the (first) output holds: probabilities, log_probabilities, logits or values."""
    producers = {n.name: n for n in graph.nodes}
    last = producers.get(graph.outputs[0].value)
    # knn's vote fractions are probabilities already (they sum to 1): no softmax on top
    if last is not None and last.op in ("softmax", "sigmoid", "knn"):
        return "probabilities" if task != "regression" else "values"
    if last is not None and last.op == "log_softmax":
        return "log_probabilities"
    out = graph.outputs[0].type
    if task == "classification" or (task is None and out.rank == 1 and out.shape[0] >= 2):
        return "logits"
    return "values"


# how an ensemble turns one member's output into what it averages: class probabilities for a
# classifier (softmax over the class axis 1, a sigmoid for one logit, exp of log-probabilities),
# a regression's values as they are; the torch side (runtime/experiments/ensemble.py) reads the same names
TO_PROBABILITIES = {"softmax": ("Softmax", {"axis": 1}), "sigmoid": ("Sigmoid", {}),
                    "exp": ("Exp", {})}


def member_transform(graph: Graph, task: str | None) -> str | None:
    """The key of TO_PROBABILITIES for one member's output, or None: averaged as it is."""
    kind = output_kind(graph, task)
    if kind == "logits":
        return "sigmoid" if graph.outputs[0].type.shape[0] == 1 else "softmax"
    return "exp" if kind == "log_probabilities" else None


def _value_info(name: str, dtype: str, shape: Sequence[int]) -> onnx.ValueInfoProto:
    from onnx import helper

    return helper.make_tensor_value_info(name, _DTYPES[dtype], [BATCH, *shape])


def build_onnx(graph: Graph, weights: Mapping[str, Any], *, fold_bn: bool = False,
               metadata: Mapping[str, Any] | None = None, check: bool = True) -> onnx.ModelProto:
    """The ONNX model of ``graph`` with ``weights`` as one ModelProto (see onnx_file)."""
    return onnx_file(graph, weights, fold_bn=fold_bn, metadata=metadata).model(check=check)


def onnx_file(graph: Graph, weights: Mapping[str, Any], *, fold_bn: bool = False,
              metadata: Mapping[str, Any] | None = None) -> OnnxFile:
    """The ONNX model of ``graph`` with ``weights`` (``<node>.<param>`` -> array).

    ``metadata`` entries become ``metadata_props`` (non-strings as JSON); ``output_kind`` is
    added from the graph when absent. ``fold_bn`` folds each batchnorm into the conv that
    feeds it (when that conv feeds nothing else). Raises ValueError for missing weights or
    wrong shapes; the model passes ``onnx.checker.check_model(full_check=True)``.
    """
    arrays = as_numpy(weights)
    g = OnnxGraph()
    g.values.update(o.name for o in graph.outputs)  # reserved: the outputs keep the spec's names
    values, plan = _lower(g, graph, arrays, fold_bn=fold_bn)
    for out in graph.outputs:
        g.node("Identity", [values[out.value]], [out.name])
    props = {"folded_batchnorm": sorted(plan)} if fold_bn else {}
    return OnnxFile(_model(g, graph, {**(metadata or {}), **props}), g.weights)


def build_ensemble_onnx(graph: Graph, members: Sequence[Mapping[str, Any]], *,
                        task: str | None, fold_bn: bool = False,
                        metadata: Mapping[str, Any] | None = None,
                        check: bool = True) -> onnx.ModelProto:
    """The ONNX model of an ensemble as one ModelProto (see ensemble_onnx_file)."""
    return ensemble_onnx_file(graph, members, task=task, fold_bn=fold_bn,
                              metadata=metadata).model(check=check)


def ensemble_onnx_file(graph: Graph, members: Sequence[Mapping[str, Any]], *,
                       task: str | None, fold_bn: bool = False,
                       metadata: Mapping[str, Any] | None = None) -> OnnxFile:
    """One ONNX graph of an ensemble: every member's nodes on the shared input, their
    initializers prefixed ``member_k.``, each member's (first) output turned into class
    probabilities (``member_transform``), and their ``Mean`` as the model's output.
    output_kind: probabilities for a classifier, values for a regression."""
    if len(graph.outputs) != 1:
        raise ValueError(f"an ensemble averages one output; `{graph.name}` has "
                         f"{len(graph.outputs)}")
    g = OnnxGraph()
    out = graph.outputs[0]
    g.values.add(out.name)
    transform = member_transform(graph, task)
    scores = []
    for k, weights in enumerate(members):
        values, _ = _lower(g, graph, as_numpy(weights), fold_bn=fold_bn, prefix=f"member_{k}.")
        score = values[out.value]
        if transform is not None:
            g.scope = f"member_{k}"
            op_type, attrs = TO_PROBABILITIES[transform]
            score = g.node(op_type, [score], **attrs)
        scores.append(score)
    g.scope = ""
    g.node("Mean", scores, [out.name])
    kind = "values" if output_kind(graph, task) == "values" else "probabilities"
    props = {"output_kind": kind, "ensemble_members": len(members)}
    return OnnxFile(_model(g, graph, {**(metadata or {}), **props}), g.weights)


def _lower(g: OnnxGraph, graph: Graph, arrays: Mapping[str, np.ndarray], *, fold_bn: bool,
           prefix: str = "") -> tuple[dict[str, str], dict[str, str]]:
    """Append ``graph``'s nodes to ``g``, fed by its inputs (under their own names): {spec
    value: ONNX value}, and the batchnorms folded. ``prefix`` goes before every node's name,
    so its initializers are ``<prefix><node>.<param>`` (an ensemble's members)."""
    values: dict[str, str] = {}
    for i in graph.inputs:
        g.values.add(i.name)
        values[i.name] = i.name
    plan = fold_plan(graph) if fold_bn else {}
    convs = {conv: bn for bn, conv in plan.items()}
    types = {i.name: i.type for i in graph.inputs}
    for node in graph.nodes:
        op = op_of(node.op, node.attrs)
        in_types = [types[name] for name in node.inputs]
        types[node.name] = node.output
        if node.name in plan:  # folded into its conv
            values[node.name] = values[plan[node.name]]
            continue
        params = node_params(node, arrays)
        if node.name in convs:
            bn = graph.node(convs[node.name])
            params = folded(node, params, bn, node_params(bn, arrays))
        name = prefix + node.name
        g.scope = name
        g.aliases.update({f"{name}.{key}": prefix + owner for key, owner in node.tied.items()})
        start = len(g.nodes)
        result = op.to_onnx(g, [values[v] for v in node.inputs], in_types, name, params)
        if len(g.nodes) > start and any(result in n.output for n in g.nodes[start:]):
            result = g.rename(result, name, start)  # the node's value keeps its spec name
        values[node.name] = result
    g.scope = ""
    return values, plan


def _version() -> str:
    """The installed nnspec's version (this stage does not import the package face)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nnspec")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _model(g: OnnxGraph, graph: Graph, metadata: Mapping[str, Any]) -> onnx.ModelProto:
    """The ModelProto around ``g``'s nodes: the spec's inputs and outputs, opset, metadata
    (everything but the initializers' data, which stays in ``g.weights``)."""
    from onnx import helper

    outputs = [_value_info(o.name, o.type.dtype, o.type.shape) for o in graph.outputs]
    inputs = [_value_info(i.name, i.type.dtype, i.type.shape) for i in graph.inputs]
    model = g.model
    model.graph.name = graph.name
    model.graph.node.extend(g.nodes)
    model.graph.input.extend(inputs)
    model.graph.output.extend(outputs)
    model.graph.value_info.extend(g.value_info)
    opsets = [helper.make_opsetid("", OPSET)]
    model.opset_import.extend(opsets)
    model.ir_version = helper.find_min_ir_version_for(opsets)
    model.producer_name = "nnspec"
    version = _version()
    props: dict[str, Any] = {"nnspec_version": version, "model": graph.name}
    props.update(metadata)
    props.setdefault("output_kind", output_kind(graph, props.get("task")))
    helper.set_model_props(model, {k: v if isinstance(v, str) else json.dumps(v)
                                   for k, v in props.items() if v is not None})
    model.producer_version = version
    return model


class OnnxFile:
    """A built model as its skeleton (a ModelProto with every node, input, output and
    metadata, no initializers) and its weights (name -> contiguous little-endian array).

    ``model()`` puts the weights into the proto (for onnxruntime sessions in memory);
    ``write(path)`` checks the skeleton and streams the file without copying a weight: the
    skeleton's bytes, then one ``graph { initializer { ... } }`` record per weight whose
    ``raw_data`` is written from the array's own memory. Protobuf merges repeated records
    of a message field (the wire format's rule), so any ONNX reader parses exactly the model
    that ``model()`` returns (tests/test_onnx_file.py). For ViT-B/16 (330 MiB) this takes
    the export from 1.5 s to 0.4 s: a full proto costs two copies of the weights (into the
    message, then into its serialisation) and a checker that parses all of them again.
    """

    def __init__(self, skeleton: onnx.ModelProto, weights: Mapping[str, np.ndarray]):
        self.skeleton = skeleton
        self.weights = dict(weights)

    def model(self, check: bool = True) -> onnx.ModelProto:
        """The whole ModelProto; with ``check``, it passes ``check_model(full_check=True)``."""
        import onnx

        model = onnx.ModelProto()
        model.CopyFrom(self.skeleton)
        for name, array in self.weights.items():
            tensor = model.graph.initializer.add()
            tensor.name = name
            tensor.data_type = _tensor_dtype(array)
            tensor.dims.extend(array.shape)
            tensor.raw_data = array.tobytes()
        if check:
            onnx.checker.check_model(model, full_check=True)
        return model

    def check(self) -> None:
        """``check_model(full_check=True)`` of the graph with every weight declared as a
        typed graph input instead of an initializer: the same node, type and shape checks
        without serialising the weights (their shapes and dtypes come from the arrays)."""
        import onnx
        from onnx import helper

        probe = onnx.ModelProto()
        probe.CopyFrom(self.skeleton)
        probe.graph.input.extend(helper.make_tensor_value_info(name, _tensor_dtype(array), array.shape)
                                 for name, array in self.weights.items())
        onnx.checker.check_model(probe, full_check=True)

    def write(self, path: str | os.PathLike[str], *, check: bool = True) -> None:
        """Write the .onnx file (after ``check()``); callers that must never leave half a
        file write through runtime.loop.checkpoint.atomic_write."""
        import onnx

        if check:
            self.check()
        with open(path, "wb") as f:
            f.write(self.skeleton.SerializeToString())
            for name, array in self.weights.items():
                head = onnx.TensorProto(name=name, data_type=_tensor_dtype(array), dims=array.shape)
                tensor = head.SerializeToString() + _RAW_DATA + _varint(array.nbytes)
                record = _INITIALIZER + _varint(len(tensor) + array.nbytes) + tensor
                f.write(_GRAPH + _varint(len(record) + array.nbytes) + record)
                f.write(memoryview(array).cast("B"))

    @property
    def weight_bytes(self) -> int:
        return sum(a.nbytes for a in self.weights.values())


def _tensor_dtype(array: np.ndarray) -> int:
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(array.dtype)


def _varint(n: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative integer."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(field: int) -> bytes:
    """The key of a length-delimited field (wire type 2)."""
    return _varint(field << 3 | 2)


# ModelProto.graph = 7, GraphProto.initializer = 5, TensorProto.raw_data = 9 (onnx.proto)
_GRAPH, _INITIALIZER, _RAW_DATA = _key(7), _key(5), _key(9)


__all__ = ["BATCH", "OPSET", "TO_PROBABILITIES", "OnnxGraph", "build_ensemble_onnx", "build_onnx",
           "OnnxFile", "ensemble_onnx_file", "fold_plan", "member_transform", "onnx_file",
           "output_kind"]
