"""The op contract: one class per op holds its arguments, shape rule, parameters and costs.

An op class is a frozen pydantic model of its attributes. Elaboration binds a spec's
arguments to it (positionally in ``positional`` order, or by keyword), validates them, and
asks the instance about one application to concrete input types:

- ``infer(inputs)`` -> output type, raising :class:`ShapeError` with the formula and numbers;
- ``param_shapes(inputs)`` / ``buffer_shapes(inputs)``: names -> shapes (counts derive from them);
- ``macs(inputs, output)``: multiply-accumulates per sample (one MAC = one multiply-add);
- ``receptive_step(inputs)``: (effective window, stride) per spatial axis, or GLOBAL;
- lowerings: ``torch_call(inputs)`` (a module) and ``to_onnx(g, ...)`` (ONNX nodes, opset 21);
- ``reference(inputs, params)``: the op in float64 numpy, written from its formula, against
  which the verification suite (verify/) checks both lowerings;
- ``samples`` and ``bad_samples``: the applications the suite runs (every branch of the
  lowerings) and the misuses whose diagnostic code it checks.

Register a class with :func:`register`; its ``kind`` is the name used in spec files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from ..ir import ReceptiveField, TensorType

if TYPE_CHECKING:
    import numpy as np


class OnnxGraph(Protocol):
    """What a lowering may ask of the ONNX graph it writes into: the contract between the
    op classes here and the builder in compiler/onnx_build.py, which satisfies it. Every
    name it returns is unique in the graph."""

    def fresh(self, base: str) -> str:
        """A new value name: ``base``, or ``base_2``, ``base_3``... when taken."""
        ...

    def initializer(self, name: str, array: np.ndarray) -> str:
        """A weight under exactly ``name`` (the spec's ``<node>.<param>``)."""
        ...

    def constant(self, array: Any, dtype: Any = None) -> str:
        """A ``Constant`` node (shapes, axes, scales: not a weight)."""
        ...

    def ints(self, values: Sequence[int]) -> str:
        """A 1-d int64 constant."""
        ...

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str] | None = None,
             **attrs: Any) -> str:
        """Append one node; its (first) output name. ``""`` skips an optional input."""
        ...

    def declare(self, name: str, dtype: str, shape: Sequence[int]) -> str:
        """State the type of value ``name`` ([batch, *shape]) where onnx cannot infer it."""
        ...

    def reshape(self, x: str, shape: Sequence[int]) -> str:
        """Reshape to ``shape``, 0 keeping an axis (the batch)."""
        ...


class ShapeError(Exception):
    """A shape rule failed. Elaboration adds the location and the input types.

    ``notes`` carry the formula instantiated with the numbers; ``help`` the fix; ``arg``
    names the argument to point at (the whole call when None).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        notes: Sequence[str] = (),
        help: str | None = None,
        arg: str | None = None,
        operand: int | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.notes = tuple(notes)
        self.help = help
        self.arg = arg
        self.operand = operand


@dataclass(frozen=True)
class WindowStep:
    """How one layer grows the receptive field: effective window and stride per spatial axis.

    A stride below 1 (upsampling by 2 has stride 1/2) shrinks the jump.
    """

    window: tuple[int, ...]
    stride: tuple[float, ...]


@dataclass(frozen=True)
class TorchCall:
    """How one node becomes a torch module: a class and its keyword arguments.

    ``cls`` is ``nn.<Name>`` for a torch.nn class, or the name of a class defined in
    :mod:`nnspec.compiler.torch_modules`. The one call both builds the module
    (compiler/torch_build.py) and is written into the standalone Python file
    (compiler/torch_source.py), so the two cannot drift apart. ``kwargs`` hold plain values
    (ints, floats, bools, strings, tuples) whose ``repr`` is valid Python.
    """

    cls: str
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Sample:
    """One application of an op that the verification sweep runs: attributes and input types.

    ``note`` says which branch of a lowering the sample reaches, when that is not obvious.
    """

    attrs: dict[str, Any]
    inputs: tuple[TensorType, ...]
    note: str = ""


@dataclass(frozen=True)
class BadSample:
    """A misuse that must fail with diagnostic ``code``, compiled from real spec text.

    ``call`` is the layer as written in a spec. A one-input op is applied as
    ``x0 -> {call}``; an op of several inputs names them itself (``concat(x0, x1)``,
    ``x0 + x1``). ``inputs`` are the input shapes (float32).
    """

    call: str
    inputs: tuple[tuple[int, ...], ...]
    code: str


def sample(attrs: dict[str, Any] | None = None, *shapes: tuple[int, ...], ids: bool = False,
           note: str = "") -> Sample:
    """``sample({"kernel": 2}, (3, 8, 8))``; ``ids=True`` makes the inputs int64 (embedding)."""
    dtype = "int64" if ids else "float32"
    return Sample(dict(attrs or {}), tuple(TensorType(shape=s, dtype=dtype) for s in shapes), note)


GLOBAL: Literal["global"] = "global"  # the op mixes every spatial position (global pool, flatten)


class Op(BaseModel):
    # defer_build: an op class builds its validator when a spec first uses it, not at import
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, defer_build=True)

    kind: ClassVar[str]
    family: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    positional: ClassVar[tuple[str, ...]] = ()
    arity: ClassVar[int | None] = 1  # number of tensor inputs; None: several, see below
    # with arity None: how many tensor inputs the op takes (max None: any number); the tensors
    # come as positional arguments (`concat(a, b)`), after the one piped in by `->` if any
    min_arity: ClassVar[int] = 2
    max_arity: ClassVar[int | None] = None
    spatial_rank: ClassVar[int | None] = None  # fixed number of spatial axes, if any
    shown_defaults: ClassVar[dict[str, str]] = {}  # how a signature shows a derived default
    samples: ClassVar[tuple[Sample, ...]] = ()  # what verify/ runs; every op needs one
    bad_samples: ClassVar[tuple[BadSample, ...]] = ()  # misuses and their diagnostic codes
    # False: the output is piecewise constant in the input (a vote), so the sweep's gradient
    # check has nothing to compare (autograd has no path, differences are 0 or a jump)
    differentiable: ClassVar[bool] = True
    # True: a recipe's `init` schemes leave the op's parameters as its module made them (the
    # norms' γ = 1, β = 0; layer_scale's constant), which is what those schemes assume
    keeps_own_init: ClassVar[bool] = False

    # -- the rules --------------------------------------------------------------------
    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        raise NotImplementedError

    def param_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        return {}

    def buffer_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        return {}

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        return 0

    def ties(self) -> dict[str, str]:
        """Weight tying: param -> the layer (module path) whose parameter of that name this
        one uses instead of its own (same shape; the elaborator checks and resolves it)."""
        return {}

    def receptive_step(self, inputs: Sequence[TensorType]) -> WindowStep | Literal["global"] | None:
        """None: the op keeps each position's receptive field (elementwise, channel-wise)."""
        return None

    # -- lowerings ------------------------------------------------------------------------
    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        """The torch module of this op (state_dict keys = ``param_shapes`` keys)."""
        raise NotImplementedError(f"`{self.kind}` has no torch lowering")

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """Emit this op's ONNX nodes (opset 21, eval semantics) through the builder ``g``.

        ``inputs`` are the value names of the operands, each with a leading batch axis;
        ``types`` their per-sample types; ``name`` the node's spec name (initializers are
        ``{name}.{param}``); ``params`` its parameters and float buffers as float32 arrays,
        by param name. Returns the name of the output value.
        """
        raise NotImplementedError(f"`{self.kind}` has no ONNX lowering")

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """The op in float64 numpy, in eval mode, written from the formula (not from torch).

        ``inputs`` have a leading batch axis (float64, or int64 ids); ``params`` hold the
        parameters and float buffers by param name (``weight``, ``running_mean``...), float64.
        Returns the output with its batch axis. verify/ compares both lowerings with it.
        """
        raise NotImplementedError(f"`{self.kind}` has no numpy reference")

    # -- helpers for the registry and the IR -----------------------------------------------
    def attrs(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def signature(cls) -> str:
        """`conv(channels, kernel, stride=1, ...)`: positional arguments first, in order."""
        names = list(cls.positional) + [n for n in cls.model_fields if n not in cls.positional]
        parts = []
        for name in names:
            field = cls.model_fields[name]
            if field.is_required():
                parts.append(name)
                continue
            default = field.default
            if name in cls.shown_defaults:
                shown = cls.shown_defaults[name]
            elif isinstance(default, bool) or default is None:
                shown = str(default).lower()
            else:
                shown = str(default)
            parts.append(f"{name}={shown}")
        return f"{cls.kind}({', '.join(parts)})"


def receptive_field(
    previous: Sequence[ReceptiveField | None], step: WindowStep | Literal["global"] | None
) -> ReceptiveField | None:
    """Apply one layer's window step to the receptive field of its inputs."""
    known = [rf for rf in previous if rf is not None]
    if not known or step == GLOBAL:
        return None
    size = max(rf.size for rf in known)
    jump = max(rf.jump for rf in known)
    if step is None:
        return ReceptiveField(size=size, jump=jump)
    # one number for all axes: the largest field, as summaries conventionally report it
    grow = max((w - 1) * jump for w in step.window)
    new_jump = jump * max(step.stride)
    return ReceptiveField(size=int(round(size + grow)), jump=new_jump)


REGISTRY: dict[str, type[Op]] = {}


def op_of(kind: str, attrs: dict[str, Any]) -> Op:
    """Rebuild an op from the IR's JSON-plain attributes (lists become tuples again)."""
    return REGISTRY[kind].model_validate(attrs, strict=False)


def register(cls: type[Op]) -> type[Op]:
    for name in (cls.kind, *cls.aliases):
        if name in REGISTRY:
            raise ValueError(f"op {name!r} registered twice")
        REGISTRY[name] = cls
    for name in cls.positional:
        if name not in cls.model_fields:
            raise ValueError(f"{cls.__name__}.positional names unknown field {name!r}")
    return cls
