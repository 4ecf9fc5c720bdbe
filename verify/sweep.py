"""The registry sweep: every op × its samples, through both backends and its numpy reference.

For one sample (attributes and input types, from the op class's ``samples``):

- ``shape``: the torch module maps a batch to ``infer``'s shape and dtype;
- ``params``: the module holds exactly the IR's parameters and buffers (names = state_dict
  keys, shapes), and the IR count = torch numel = the ONNX initializers' sizes;
- ``reference``: torch (float64, eval) = the op's float64 numpy ``reference``;
- ``gradient``: autograd = central finite differences (float64, train mode, dropout
  reseeded so both see the same mask), for the inputs and every parameter;
- ``onnx``: onnxruntime = torch (float32, eval), on the op exported alone;

and for each of its ``bad_samples``, ``diagnostic``: compiling the misuse from spec text
fails with the expected code. An op without samples, a reference or a lowering fails.

Weights are perturbed away from their initial values and batchnorm statistics made
non-trivial, so eval semantics and every parameter's layout are exercised.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from nnspec.spec.ir import Graph, GraphInput, GraphOutput, Node, TensorType
from nnspec.spec.ops import REGISTRY, BadSample, Op, Sample
from nnspec.spec.source import Span

from .compare import compare
from .finite_diff import GradientChecker, Leaf
from .results import CheckResult
from .tolerances import tolerance

BATCH = 2
MAX_ELEMENTS = 48  # per tensor in the gradient check (all of them when fewer)
KINK_MARGIN = 0.05  # sweep inputs satisfy |x| >= this: no ReLU-type kink within a step
SPAN = Span(file="<sweep>", start=0, end=0, line=1, col=1, end_line=1, end_col=1)


def op_classes() -> list[type[Op]]:
    """Every registered op class once (aliases share a class), by kind."""
    return sorted(set(REGISTRY.values()), key=lambda c: c.kind)


def where_defined(cls: type) -> str:
    """``conv.py:123``: the op class in its family file."""
    try:
        file = Path(inspect.getsourcefile(cls) or "?").name
        line = inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return cls.__name__
    return f"{file}:{line}"


def one_node_graph(op: Op, types: Iterable[TensorType]) -> Graph:
    """A model of one node ``layer`` on inputs x0, x1, ... with output ``y``."""
    types = list(types)
    inputs = tuple(GraphInput(name=f"x{i}", type=t, span=SPAN) for i, t in enumerate(types))
    out = op.infer(types)
    node = Node(name="layer", op=op.kind, attrs=op.attrs(), inputs=tuple(i.name for i in inputs),
                output=out, params=op.param_shapes(types), buffers=op.buffer_shapes(types),
                span=SPAN)
    return Graph(name="One", args={}, inputs=inputs, nodes=(node,),
                 outputs=(GraphOutput(name="y", value="layer", type=out),), span=SPAN)


def sample_inputs(op: Op, types: Iterable[TensorType], seed: int) -> list[np.ndarray]:
    """A batch per input: float64 normal values kept at least KINK_MARGIN away from 0, or
    int64 ids in [0, num) for an embedding, never its padding row (whose gradient is zero by
    definition, not by calculus)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for t in types:
        if t.dtype == "int64":
            num = getattr(op, "num", 10)
            padding = getattr(op, "padding_idx", None)
            allowed = [i for i in range(num) if padding is None or i != padding % num]
            arrays.append(rng.choice(allowed, (BATCH, *t.shape)))
        else:
            x = rng.standard_normal((BATCH, *t.shape))
            arrays.append(np.sign(x) * (np.abs(x) + KINK_MARGIN))
    return arrays


def perturb(module: Any, seed: int) -> None:
    """Move every weight away from its initial value; give batchnorm real statistics."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=gen, dtype=torch.float64).to(tensor.dtype)
            if name.endswith("running_var"):
                tensor.copy_(0.5 + noise.abs())
            elif name.endswith("running_mean"):
                tensor.copy_(noise)
            else:
                tensor.add_(0.3 * noise)


class SampleRun:
    """The checks of one sample of one op."""

    def __init__(self, cls: type[Op], index: int, sample: Sample, seed: int = 0):
        self.cls = cls
        self.sample = sample
        self.subject = f"{cls.kind}[{index}]"
        self.location = where_defined(cls)
        self.seed = seed + index
        self.results: list[CheckResult] = []

    def result(self, check: str, ok: bool, detail: str = "", error: float | None = None,
               bound: float | None = None, status: str | None = None) -> CheckResult:
        r = CheckResult(check=check, subject=self.subject,
                        status=status or ("pass" if ok else "fail"), error=error,
                        tolerance=bound, detail=detail, location=self.location,
                        data={"attrs": self.sample.attrs,
                              "inputs": [list(t.shape) for t in self.sample.inputs]})
        self.results.append(r)
        return r

    def run(self) -> list[CheckResult]:
        import warnings

        with warnings.catch_warnings():
            # torch's note that an even 'same' kernel pads a copy: expected, not a finding
            warnings.filterwarnings("ignore", "Using padding='same' with even kernel")
            return self._run()

    def _run(self) -> list[CheckResult]:
        import torch

        from nnspec.compiler.torch_build import instantiate

        types = list(self.sample.inputs)
        try:
            op = self.cls.model_validate(self.sample.attrs)
            out = op.infer(types)
        except Exception as exc:  # a sample the op itself rejects is a broken sample
            self.result("shape", False, f"the sample is rejected: {exc}")
            return self.results
        try:
            module = instantiate(op.torch_call(types))
        except NotImplementedError as exc:
            self.result("shape", False, str(exc))
            return self.results
        perturb(module, self.seed)
        arrays = sample_inputs(op, types, self.seed)
        self._guarded("params", self._structure, op, module, types)
        expected = self._guarded("shape", self._shape, module, arrays, out)
        self._guarded("reference", self._reference, op, module, arrays)
        self._guarded("gradient", self._gradient, module, arrays, types)
        if expected is not None:
            self._guarded("onnx", self._onnx, op, module, arrays, types, expected)
        else:
            self.result("onnx", False, "not compared: the torch module did not run")
        del torch
        return self.results

    def _guarded(self, check: str, run, *args):
        """Run one check; a lowering that raises fails that check, not the whole sweep."""
        try:
            return run(*args)
        except Exception as exc:
            self.result(check, False, f"raised {type(exc).__name__}: {exc}")
            return None

    # -- the checks -----------------------------------------------------------------------
    def _structure(self, op: Op, module: Any, types: list[TensorType]) -> None:
        params = op.param_shapes(types)
        buffers = op.buffer_shapes(types)
        got_params = {k: tuple(v.shape) for k, v in module.named_parameters()}
        got_buffers = {k: tuple(v.shape) for k, v in module.named_buffers()}
        problems = []
        if got_params != params:
            problems.append(f"parameters: IR {params}, torch {got_params}")
        if got_buffers != buffers:
            problems.append(f"buffers: IR {buffers}, torch {got_buffers}")
        ir_count = sum(math.prod(s) for s in params.values())
        torch_count = sum(p.numel() for p in module.parameters())
        if ir_count != torch_count:
            problems.append(f"count: IR {ir_count:,}, torch {torch_count:,}")
        self.result("params", not problems, "; ".join(problems) or
                    f"{ir_count:,} parameters, {len(buffers)} buffers",
                    error=float(abs(ir_count - torch_count)))

    def _shape(self, module: Any, arrays: list[np.ndarray], out: TensorType):
        import torch

        module.eval()
        xs = [torch.from_numpy(a).long() if a.dtype.kind == "i" else torch.from_numpy(a).float()
              for a in arrays]
        with torch.no_grad():
            y = module(*xs)
        want_dtype = torch.int64 if out.dtype == "int64" else torch.float32
        shape = tuple(y.shape)
        ok = shape == (BATCH, *out.shape) and y.dtype == want_dtype
        self.result("shape", ok, f"torch {list(shape)} {str(y.dtype).removeprefix('torch.')}, "
                    f"IR {[BATCH, *out.shape]} {out.dtype}")
        return y

    def _reference(self, op: Op, module: Any, arrays: list[np.ndarray]) -> None:
        import torch

        tol = tolerance("reference", op.kind)
        double = _double_copy(module).eval()
        xs = [torch.from_numpy(a) for a in arrays]
        with torch.no_grad():
            y = double(*xs).numpy()
        params = {k: v.numpy() for k, v in double.state_dict().items() if v.is_floating_point()}
        try:
            ref = op.reference([a.copy() for a in arrays], params)
        except NotImplementedError as exc:
            self.result("reference", False, str(exc))
            return
        c = compare(y, ref, tol)
        self.result("reference", c.ok, f"torch vs numpy: {c.describe('y')}", c.max_error,
                    tol.bound)

    def _gradient(self, module: Any, arrays: list[np.ndarray], types: list[TensorType]) -> None:
        import torch

        if not self.cls.differentiable:  # knn: a vote of the nearest samples, a step function
            self.result("gradient", True, "piecewise constant in its input (no gradient to "
                        "check)", status="skip")
            return
        tol = tolerance("gradient", self.cls.kind)
        double = _double_copy(module).train()
        xs = [torch.from_numpy(a.copy()) for a in arrays]
        leaves = [Leaf(f"x{i}", x.requires_grad_()) for i, x in enumerate(xs)
                  if x.is_floating_point()]
        leaves += [Leaf(name, p) for name, p in double.named_parameters()]
        if not leaves:
            self.result("gradient", True, "no float input or parameter", status="skip")
            return
        seed = self.seed

        def forward():
            # the same dropout mask at every evaluation (the CPU generator only: cheaper)
            torch.default_generator.manual_seed(seed)
            return double(*xs)

        if not self._differentiable(forward):
            self.result("gradient", True, "integer output", status="skip")
            return
        checker = GradientChecker(forward, leaves, tol, seed=seed)
        findings = checker.projected(limit=MAX_ELEMENTS)
        worst = max(findings, key=lambda f: (not f.ok, f.error / f.bound if f.bound else 0))
        kinks = sum(f.kinks for f in findings)
        checked = sum(f.checked for f in findings)
        detail = (f"{checked} elements of {len(leaves)} tensors; " if worst.ok else "") \
            + worst.describe() + (f"; {kinks} skipped at kinks" if kinks else "")
        self.result("gradient", all(f.ok for f in findings), detail, worst.error, tol.bound)

    @staticmethod
    def _differentiable(forward) -> bool:
        import torch

        with torch.no_grad():
            return forward().is_floating_point()

    def _onnx(self, op: Op, module: Any, arrays: list[np.ndarray], types: list[TensorType],
              expected: Any) -> None:
        import onnx
        import onnxruntime as ort

        from nnspec.compiler.onnx_build import BATCH as BATCH_DIM
        from nnspec.compiler.onnx_build import build_onnx

        tol = tolerance("onnx", op.kind)
        graph = one_node_graph(op, types)
        state = {f"layer.{k}": v for k, v in module.state_dict().items()}
        try:
            model = build_onnx(graph, state)
        except NotImplementedError as exc:
            self.result("onnx", False, str(exc))
            return
        float_buffers = {k: s for k, s in op.buffer_shapes(types).items()
                         if module.state_dict()[k].is_floating_point()}
        want = sum(math.prod(s) for s in (*op.param_shapes(types).values(),
                                          *float_buffers.values()))
        got = sum(math.prod(t.dims) for t in model.graph.initializer)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        dims = [d.dim_param or d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        feeds = {f"x{i}": (a if a.dtype.kind == "i" else a.astype(np.float32))
                 for i, a in enumerate(arrays)}
        y = session.run(None, feeds)[0]
        c = compare(y, expected.numpy(), tol)
        problems = [] if got == want else [f"initializers hold {got:,} values, the IR {want:,}"]
        if dims != [BATCH_DIM, *graph.outputs[0].type.shape]:
            problems.append(f"onnx shape inference gives {dims}, the IR "
                            f"{[BATCH_DIM, *graph.outputs[0].type.shape]}")
        if not c.ok:
            problems.append(f"onnxruntime vs torch: {c.describe('y')}")
        self.result("onnx", not problems,
                    "; ".join(problems) or f"onnxruntime vs torch: {c.describe('y')}",
                    c.max_error, tol.bound)


def _double_copy(module: Any) -> Any:
    import copy

    return copy.deepcopy(module).double()


def bad_sample_text(bad: BadSample, arity: int | None) -> str:
    """The spec a misuse is compiled from."""
    lines = ["model Misuse {"]
    lines += [f"    input x{i}: [{', '.join(map(str, shape))}]" for i, shape in enumerate(bad.inputs)]
    body = f"x0 -> {bad.call}" if arity == 1 else bad.call
    lines += [f"    {body} -> output", "}", ""]
    return "\n".join(lines)


def check_bad_sample(cls: type[Op], index: int, bad: BadSample) -> CheckResult:
    from nnspec.spec.diagnostics import DiagnosticError
    from nnspec.spec.loader import load_text
    from nnspec.spec.models import elaborate_model

    text = bad_sample_text(bad, cls.arity)
    subject = f"{cls.kind}!{index}"
    try:
        elaborate_model(load_text(text))
    except DiagnosticError as exc:
        codes = [d.code for d in exc.diagnostics if d.severity == "error"]
        ok = bool(codes) and codes[0] == bad.code
        detail = f"`{bad.call}` on {[list(s) for s in bad.inputs]}: " + (
            f"{bad.code} as expected" if ok else f"expected {bad.code}, got {', '.join(codes)}")
        return CheckResult("diagnostic", subject, "pass" if ok else "fail", detail=detail,
                           location=where_defined(cls))
    return CheckResult("diagnostic", subject, "fail", location=where_defined(cls),
                       detail=f"`{bad.call}` on {[list(s) for s in bad.inputs]} compiled "
                              f"without an error; expected {bad.code}")


def sweep_op(cls: type[Op], seed: int = 0) -> list[CheckResult]:
    """Every check of one op class."""
    results: list[CheckResult] = []
    if not cls.samples:
        results.append(CheckResult("samples", cls.kind, "fail", location=where_defined(cls),
                                   detail=f"`{cls.kind}` has no samples: add `samples` to its "
                                          f"class"))
    if cls.reference is Op.reference:
        results.append(CheckResult("reference", cls.kind, "fail", location=where_defined(cls),
                                   detail=f"`{cls.kind}` has no numpy reference"))
    for lowering in ("torch_call", "to_onnx"):
        if getattr(cls, lowering) is getattr(Op, lowering):
            results.append(CheckResult(lowering, cls.kind, "fail", location=where_defined(cls),
                                       detail=f"`{cls.kind}` has no {lowering} lowering"))
    for i, s in enumerate(cls.samples):
        results.extend(SampleRun(cls, i, s, seed).run())
    for i, bad in enumerate(cls.bad_samples):
        results.append(check_bad_sample(cls, i, bad))
    return results


def sweep(kinds: Iterable[str] | None = None, seed: int = 0) -> list[CheckResult]:
    """The sweep over ``kinds`` (every registered op by default)."""
    wanted = set(kinds) if kinds is not None else None
    results: list[CheckResult] = []
    for cls in op_classes():
        if wanted is None or cls.kind in wanted:
            results.extend(sweep_op(cls, seed))
    return results


__all__ = ["bad_sample_text", "one_node_graph", "op_classes", "sweep", "sweep_op"]
