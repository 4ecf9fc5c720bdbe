"""``nnspec verify FILE``: the checks of one compiled model.

- ``gradient``: autograd vs central finite differences over the whole model in float64
  (train mode; dropout reseeded so every evaluation sees the same mask): the full Jacobian
  for small models, k random directions vᵀJu per tensor for large ones. Inputs are
  continuous random values (no max-pool ties, which flat regions of real images make),
  redrawn until no ReLU-type input lies within KINK_MARGIN of 0, and a kink met inside a step is
  retried and counted, not reported (see finite_diff.py). A failure names the parameter,
  the spec line of its op, the worst element and both values.
- ``structure``: the built module's output shape at every named node and its parameter
  count per layer and in total, against the IR.
- ``equivalence``: every named layer's value from the numpy reference interpreter (float64)
  vs torch and onnxruntime (float32, eval): the first layer that diverges, and by how much.
- ``overfit``: the course's "start with a small sample": the recipe's optimizer, loss and
  learning rate, with regularisation, augmentation and dropout off, on one small batch
  must reach 100% training accuracy (or, for regression, a loss below 1% of its initial
  value) within a step budget.
- ``init``: per-layer activation mean and std over a batch at initialisation, relative to
  the input's std: below 1e-2 is vanishing and above 1e2 exploding (warnings); a
  non-finite or constant-zero layer fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nnspec.compiler.torch_build import GraphModule, build_module
from nnspec.spec.ir import Graph, Node
from nnspec.spec.ops import REGISTRY
from nnspec.spec.recipe.ir import CLASSIFICATION_LOSSES, Recipe

from .compare import compare
from .finite_diff import GradientChecker, Leaf
from .interpreter import interpret
from .results import CheckResult, Report
from .tolerances import tolerance

CHECKS = ("structure", "gradient", "equivalence", "overfit", "init")
FULL_JACOBIAN_LIMIT = 2_000  # parameters and outputs up to which the full Jacobian is checked
KINKED = ("relu", "leaky_relu", "prelu", "elu")  # ops with a kink at 0
KINK_MARGIN = 1e-4  # a ReLU-type input closer to 0 than this (× its scale) is redrawn
VANISHING, EXPLODING = 1e-2, 1e2  # activation std relative to the input's
# a regression batch is memorised when its loss falls below this × the larger of its initial
# loss and the loss of predicting the batch's mean (trained weights start low: the mean's
# loss keeps the bar where a fresh model's would be)
MEMORISED = 1e-2


@dataclass
class Options:
    checks: tuple[str, ...] = CHECKS
    gradient_mode: str = "auto"  # auto, full, directional
    directions: int = 2
    batch: int = 2
    seed: int = 0
    overfit_samples: int = 4
    overfit_steps: int = 500
    init_samples: int = 64


@dataclass
class Inputs:
    """Data for the checks: real samples of the recipe's data when there is one, else
    seeded normal inputs and random targets."""

    x: list[torch.Tensor]
    y: torch.Tensor | None
    source: str


def location(node: Node) -> str:
    span = node.span
    return f"{span.file}:{span.line}:{span.col}"


@dataclass
class ModelVerifier:
    graph: Graph
    recipe: Recipe | None = None
    weights: dict[str, torch.Tensor] | None = None
    data: Any = None  # a runtime.prepare.PreparedData, when the recipe's data could be read
    options: Options = field(default_factory=Options)
    log: Callable[[str], None] = lambda _line: None

    def __post_init__(self) -> None:
        self.owners = {f"{n.name}.{p}": n for n in self.graph.nodes for p in (*n.params, *n.buffers)}

    # -- building blocks ------------------------------------------------------------------
    def module(self) -> GraphModule:
        """The model as it is verified: the given weights, or the recipe's initialisation."""
        from nnspec.runtime.loop.init import initialise

        torch.manual_seed(self.recipe.seed if self.recipe else self.options.seed)
        module = build_module(self.graph)
        if self.weights is not None:
            module.load_state_dict(self.weights, strict=True)
        elif self.recipe is not None:
            initialise(module, self.graph, self.recipe.init.default, self.recipe.init.per_kind)
        return module

    def inputs(self, n: int, seed: int, real: bool = True) -> Inputs:
        if self.data is not None and real:
            x, y = self.data.train
            if len(x) >= n:
                order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
                return Inputs([x[order]], y[order], "the recipe's training data")
        gen = torch.Generator().manual_seed(seed)
        xs = []
        for spec in self.graph.inputs:
            if spec.type.dtype == "int64":
                high = min((int(node.attrs.get("num", 2)) for node in self.graph.nodes
                            if spec.name in node.inputs and node.op == "embedding"), default=2)
                xs.append(torch.randint(0, high, (n, *spec.type.shape), generator=gen))
            else:
                xs.append(torch.randn((n, *spec.type.shape), generator=gen))
        return Inputs(xs, None, "seeded normal inputs")

    def result(self, check: str, subject: str, ok: bool | str, detail: str = "", *,
               error: float | None = None, bound: float | None = None,
               node: Node | None = None, data: dict | None = None) -> CheckResult:
        status = ok if isinstance(ok, str) else ("pass" if ok else "fail")
        return CheckResult(check, subject, status, error, bound, detail,
                           location(node) if node is not None else None, data or {})

    def run(self) -> Report:
        report = Report(self.graph.name)
        # a layer that votes among stored samples (knn) is a step function of its input, has
        # no weights to fit and is all zeros until `solver knn` fills it: nothing to check
        stored = next((n for n in self.graph.nodes if not REGISTRY[n.op].differentiable), None)
        for check in self.options.checks:
            self.log(f"verify: {check}")
            if stored is not None and check in ("gradient", "overfit", "init"):
                report.add(self.result(check, "model", "skip", f"`{stored.name}` ({stored.op}) "
                                       "votes among stored samples: piecewise constant, no "
                                       "weights, empty before `solver knn`", node=stored))
                continue
            try:
                report.extend(getattr(self, f"check_{check}")())
            except Exception as exc:  # a broken lowering must not hide the other checks
                report.add(self.result(check, "model", False,
                                       f"the check could not run: {type(exc).__name__}: {exc}"))
        return report

    # -- (b) structure --------------------------------------------------------------------
    def check_structure(self) -> list[CheckResult]:
        module = self.module().eval()
        batch = self.options.batch
        shapes: dict[str, tuple[int, ...]] = {}
        hooks = [module.get_submodule(node.name).register_forward_hook(
            lambda _m, _a, out, name=node.name: shapes.__setitem__(name, tuple(out.shape)))
            for node in self.graph.nodes]
        crash = None
        try:
            with torch.no_grad():
                module(*self.inputs(batch, self.options.seed).x)
        except Exception as exc:  # a wrong shape upstream: report the shapes seen so far
            crash = f"{type(exc).__name__}: {exc}"
        finally:
            for hook in hooks:
                hook.remove()
        results = []
        wrong = [(n, shapes.get(n.name)) for n in self.graph.nodes
                 if shapes.get(n.name) != (batch, *n.output.shape)]
        for node, got in wrong:
            if got is None and crash is not None:
                results.append(self.result(
                    "structure", f"{node.name} shape", False,
                    f"the forward stopped here: {crash}", node=node))
                break  # the nodes after it never ran
            results.append(self.result(
                "structure", f"{node.name} shape", False,
                f"torch gives {list(got) if got else 'nothing'}, the IR "
                f"{[batch, *node.output.shape]}", node=node))
        if not wrong:
            results.append(self.result("structure", "shapes", True,
                                       f"{len(self.graph.nodes)} nodes match the IR"))
        miscounted = []
        for node in self.graph.nodes:
            got = sum(p.numel() for p in module.get_submodule(node.name).parameters())
            if got != node.param_count:
                miscounted.append(node)
                results.append(self.result(
                    "structure", f"{node.name} parameters", False,
                    f"torch holds {got:,}, the IR {node.param_count:,}", node=node,
                    error=float(abs(got - node.param_count))))
        total = sum(p.numel() for p in module.parameters())
        if total != self.graph.param_count:
            results.append(self.result("structure", "parameters", False,
                                       f"torch holds {total:,}, the IR {self.graph.param_count:,}",
                                       error=float(abs(total - self.graph.param_count))))
        elif not miscounted:
            results.append(self.result("structure", "parameters", True,
                                       f"{total:,} in total, per layer as the IR"))
        return results

    # -- (a) gradient ---------------------------------------------------------------------
    def _kink_margin(self, module: nn.Module, xs: list[torch.Tensor]) -> float:
        """The smallest |input| of any ReLU-type node, relative to that input's scale."""
        margins: list[float] = []

        def record(_node: Node, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            x = args[0].detach()
            scale = float(x.abs().max()) or 1.0
            margins.append(float(x.abs().min()) / scale)

        _observe(module, xs, [n for n in self.graph.nodes if n.op in KINKED], record)
        return min(margins, default=math.inf)

    def check_gradient(self) -> list[CheckResult]:
        tol = tolerance("gradient")
        module = self.module().double().train()
        batch = max(self.options.batch, 2)  # batchnorm in train mode needs two samples
        best: tuple[float, list[torch.Tensor]] | None = None
        for attempt in range(8):
            # continuous random inputs: real images have flat regions, whose equal values
            # tie in max-pools; gradients do not depend on the data's distribution
            draw = self.inputs(batch, self.options.seed + 1000 + attempt, real=False).x
            xs = [x.double() if x.is_floating_point() else x for x in draw]
            margin = self._kink_margin(module, xs)
            if best is None or margin > best[0]:
                best = (margin, xs)
            if margin >= KINK_MARGIN:
                break
        assert best is not None
        margin, xs = best
        leaves = [Leaf(f"input {spec.name}", x.clone().requires_grad_())
                  for spec, x in zip(self.graph.inputs, xs, strict=True) if x.is_floating_point()]
        inputs = [leaf.tensor for leaf in leaves] if len(leaves) == len(xs) else None
        if inputs is None:  # integer inputs (ids) are not leaves
            it = iter(leaf.tensor for leaf in leaves)
            inputs = [next(it) if x.is_floating_point() else x for x in xs]
        for name, param in module.named_parameters():
            node = self.owners.get(name)
            leaves.append(Leaf(name, param, location(node) if node else None))
        seed = self.options.seed

        def forward() -> torch.Tensor:
            torch.default_generator.manual_seed(seed)  # the same dropout masks every time
            out = module(*inputs)
            return out if isinstance(out, torch.Tensor) else torch.cat([o.reshape(-1) for o in out])

        checker = GradientChecker(forward, leaves, tol, seed=seed)
        n_params = sum(leaf.tensor.numel() for leaf in leaves)
        mode = self.options.gradient_mode
        if mode == "auto":
            small = n_params <= FULL_JACOBIAN_LIMIT and checker.y0.size <= 64
            mode = "full" if small else "directional"
        findings = (checker.full() if mode == "full"
                    else checker.directional(self.options.directions))
        results = []
        for f in findings:
            node = self.owners.get(f.leaf.name)
            detail = f.describe()
            if f.kinks:
                detail += f"; {f.kinks} step(s) met a kink and were skipped"
            if f.notes:
                detail += "; " + "; ".join(f.notes)
            ok = f.ok
            if f.checked == 0 and f.kinks:  # compared nothing: not a pass
                ok = False
                detail = (f"{f.leaf.name}: nothing compared, every one of {f.kinks} steps met a "
                          "kink (the loss is not smooth at these inputs: e.g. batchnorm over a "
                          "1×1 map, variance ≈ 0); check a larger input or batch")
            results.append(self.result(
                "gradient", f.leaf.name, ok, detail, error=f.error, bound=f.bound or tol.bound,
                node=node, data={"mode": f.mode, "checked": f.checked, "kinks": f.kinks,
                                 "autograd": f.autograd, "numeric": f.numeric,
                                 "where": f.where.strip(), "kink_margin": margin}))
        return results

    # -- (c) equivalence ------------------------------------------------------------------
    def check_equivalence(self) -> list[CheckResult]:
        module = self.module().eval()
        xs = self.inputs(self.options.batch, self.options.seed + 7).x
        state = {k: v.detach() for k, v in module.state_dict().items()}
        torch_values: dict[str, np.ndarray] = {}
        _observe(module, xs, self.graph.nodes, lambda node, _args, out: torch_values.__setitem__(
            node.name, out.detach().numpy().copy()))
        arrays = [x.numpy() for x in xs]
        reference = interpret(self.graph, {k: v.numpy() for k, v in state.items()}, arrays)
        onnx_values = self._onnx_values(state, arrays)
        tol = tolerance("equivalence")
        results = []
        for backend, values in (("torch", torch_values), ("onnxruntime", onnx_values)):
            results.append(self._first_divergence(backend, values, reference, tol))
        return results

    def _onnx_values(self, state: dict[str, torch.Tensor], arrays: list[np.ndarray]
                     ) -> dict[str, np.ndarray]:
        """Every node's value from onnxruntime: the model with each node's value as an output.
        A node whose value has no name of its own (an identity) is skipped."""
        import onnxruntime as ort
        from onnx import helper

        from nnspec.compiler.onnx_build import _DTYPES, build_onnx

        model = build_onnx(self.graph, state, check=False)
        produced = {o for n in model.graph.node for o in n.output}
        existing = {o.name for o in model.graph.output}
        wanted = [n for n in self.graph.nodes if n.name in produced and n.name not in existing]
        for node in wanted:
            model.graph.output.append(helper.make_tensor_value_info(
                node.name, _DTYPES[node.output.dtype], None))
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in model.graph.output]
        feeds = {spec.name: a for spec, a in zip(self.graph.inputs, arrays, strict=True)}
        outputs = dict(zip(names, session.run(names, feeds), strict=True))
        values = {n.name: outputs[n.name] for n in wanted}
        for out in self.graph.outputs:  # the outputs keep their own (output) names
            values.setdefault(out.value, outputs[out.name])
        return values

    def _first_divergence(self, backend: str, values: dict[str, np.ndarray],
                          reference: dict[str, np.ndarray], tol) -> CheckResult:
        worst: tuple[float, Node] | None = None
        compared = 0
        for node in self.graph.nodes:
            if node.name not in values:
                continue
            compared += 1
            ref = reference[node.name]
            scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
            c = compare(values[node.name] / scale, ref / scale, tol)
            if not c.ok:
                return self.result(
                    "equivalence", f"{backend} vs numpy", False,
                    f"first divergence at `{node.name}` ({node.op}): "
                    f"{c.describe(node.name)} (values scaled by 1/{scale:.3g})",
                    error=c.max_error, bound=tol.bound, node=node,
                    data={"layer": node.name, "compared": compared})
            if worst is None or c.max_error > worst[0]:
                worst = (c.max_error, node)
        err, node = worst if worst else (0.0, None)
        where = f", largest at `{node.name}`" if node is not None else ""
        return self.result("equivalence", f"{backend} vs numpy", True,
                           f"{compared} layers agree; worst scaled error {err:.3g}{where}",
                           error=err, bound=tol.bound, data={"compared": compared})

    # -- (d) overfit one batch ------------------------------------------------------------
    def _loss_and_targets(self, out: torch.Tensor, data: Inputs) -> tuple[str, torch.Tensor]:
        """The recipe's loss and the batch's targets, or a loss that fits the output."""
        if self.recipe is not None and data.y is not None:
            return self.recipe.loss, data.y
        gen = torch.Generator().manual_seed(self.options.seed + 3)
        last = next((n for n in self.graph.nodes if n.name == self.graph.outputs[0].value), None)
        if out.dim() in (2, 4) and out.shape[1] >= 2:  # class scores, or per pixel [N, C, H, W]
            labels = torch.randint(0, out.shape[1], (out.shape[0], *out.shape[2:]), generator=gen)
            if last is not None and last.op == "log_softmax":
                return "nll", labels
            if last is None or last.op != "softmax":
                return "cross_entropy", labels
        inputs = [x for x in data.x if x.is_floating_point()]
        if inputs and tuple(inputs[0].shape) == tuple(out.shape):
            return "mse", inputs[0]  # the output has the input's shape: reconstruct it
        return "mse", torch.randn(out.shape, generator=gen)

    def check_overfit(self) -> list[CheckResult]:
        """Memorise one small batch. A learning rate that diverges on it (the recipe's was
        chosen for the whole training set, whose curvature a few samples can exceed many
        times) is divided by 10, up to three times, and the report says so."""
        opts = self.options
        data = self.inputs(opts.overfit_samples, opts.seed + 11)
        if self.recipe is not None:
            kind, lr, hp = (self.recipe.optimizer.kind, self.recipe.optimizer.lr,
                            self.recipe.optimizer.hyperparameters())
        else:
            kind, lr, hp = "adam", 1e-3, {}
        for reduction in range(4):
            outcome = self._memorise(data, kind, lr / 10**reduction, hp)
            if outcome["status"] != "diverged":
                break
        how = f"{kind}(lr={outcome['lr']:g})"
        if reduction:
            how += f", the recipe's lr {lr:g} ÷ {10**reduction} (it diverged on this batch)"
        what = (f"{opts.overfit_samples} samples of {data.source}, {outcome['loss']}, {how}, "
                f"regularisation off")
        initial, final, step = outcome["initial"], outcome["final"], outcome["steps"]
        if outcome["status"] == "diverged":
            detail = f"the loss diverged ({final:.4g}) at step {step} even with {how}"
        elif outcome["accuracy"] is not None:
            # floored: 99.99% must not print as 100% when the batch is not memorised
            shown = math.floor(outcome["accuracy"] * 1e4) / 1e2
            detail = (f"{shown:g}% training accuracy after {step} steps "
                      f"(loss {initial:.4g} -> {final:.4g}); {what}")
        else:
            detail = (f"loss {initial:.4g} -> {final:.4g} "
                      f"({final / initial if initial else 0:.2g} of the initial) "
                      f"after {step} steps; {what}")
        ok = outcome["status"] == "memorised"
        if outcome["status"] == "budget":
            detail += f"; not memorised within {opts.overfit_steps} steps"
        return [self.result("overfit", "one batch", ok, detail, error=final,
                            data={k: v for k, v in outcome.items() if k != "status"})]

    def _memorise(self, data: Inputs, kind: str, lr: float, hp: dict) -> dict[str, Any]:
        from nnspec.runtime.loop.objectives import LOSSES, predictions
        from nnspec.runtime.loop.optim import make_optimizer

        module = self.module().train()
        for m in module.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.eval()  # regularisation off: the batch must be memorised
        with torch.no_grad():
            first = module(*data.x)
        loss_name, target = self._loss_and_targets(first, data)
        optimizer = make_optimizer(module.parameters(), kind, lr, hp)
        loss_fn = LOSSES[loss_name]
        classify = loss_name in CLASSIFICATION_LOSSES and target.dtype == torch.int64
        baseline = 0.0
        if not classify and target.dim() > 0 and target.shape[0] > 1:
            baseline = float(loss_fn(target.float().mean(0, keepdim=True).expand_as(target), target))
        initial = math.nan
        status, accuracy, value, step = "budget", None, math.nan, 0
        for step in range(1, self.options.overfit_steps + 1):
            optimizer.zero_grad(set_to_none=True)
            out = module(*data.x)
            loss = loss_fn(out, target)
            value = float(loss.detach())
            if step == 1:
                initial = value
            if not math.isfinite(value) or value > 1e3 * max(initial, 1e-12):
                status = "diverged"
                break
            if classify:
                accuracy = float((predictions(out.detach(), loss_name) == target).float().mean())
                if accuracy == 1.0:
                    status = "memorised"
                    break
            elif value <= MEMORISED * max(initial, baseline):
                status = "memorised"
                break
            loss.backward()
            optimizer.step()
        return {"status": status, "lr": lr, "loss": loss_name, "initial": initial,
                "final": value, "steps": step, "accuracy": accuracy, "mean_predictor": baseline}

    # -- (e) initialisation statistics ----------------------------------------------------
    def check_init(self) -> list[CheckResult]:
        module = self.module().train()
        for m in module.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.eval()
        data = self.inputs(self.options.init_samples, self.options.seed + 5)
        stats: dict[str, tuple[float, float]] = {}

        def record(name: str):
            def hook(_m, _a, out) -> None:
                y = out.detach().double()
                stats[name] = (float(y.mean()), float(y.std()))
            return hook

        hooks = [module.get_submodule(n.name).register_forward_hook(record(n.name))
                 for n in self.graph.nodes if n.output.dtype == "float32"]
        try:
            with torch.no_grad():
                module(*data.x)
        finally:
            for hook in hooks:
                hook.remove()
        float_inputs = [x for x in data.x if x.is_floating_point()]
        in_std = float(torch.cat([x.reshape(-1).double() for x in float_inputs]).std()) \
            if float_inputs else 1.0
        layers = []
        flagged: list[tuple[str, Node, str]] = []
        dead: list[Node] = []
        for node in self.graph.nodes:
            if node.name not in stats:
                continue
            mean, std = stats[node.name]
            ratio = std / in_std if in_std else math.inf
            state = "ok"
            if not (math.isfinite(mean) and math.isfinite(std)) or std == 0.0:
                state = "dead" if std == 0.0 else "non-finite"
                dead.append(node)
            elif ratio < VANISHING:
                state = "vanishing"
            elif ratio > EXPLODING:
                state = "exploding"
            if state in ("vanishing", "exploding"):
                flagged.append((state, node, f"{ratio:.3g}"))
            layers.append({"layer": node.name, "op": node.op, "mean": mean, "std": std,
                           "ratio": ratio, "state": state, "weighted": bool(node.params)})
        scheme = "the given weights" if self.weights is not None else (
            f"init {self.recipe.init.default[0]}" if self.recipe and self.recipe.init.default
            else "torch's default init")
        last = layers[-1] if layers else None
        summary = (f"{len(layers)} layers over {len(data.x[0])} samples of {data.source} with "
                   f"{scheme}; output std {last['std']:.3g} = {last['ratio']:.3g}× the input's"
                   if last else "no float layers")
        data_out = {"layers": layers, "input_std": in_std}
        if dead:
            node = dead[0]
            return [self.result("init", "activations", False,
                                f"`{node.name}` ({node.op}) is constant zero or non-finite at "
                                f"initialisation; {summary}", node=node, data=data_out)]
        if flagged:
            state, node, ratio = flagged[0]
            kinds = sorted({s for s, _, _ in flagged})
            return [self.result("init", "activations", "warn",
                                f"{' and '.join(kinds)} signal: {len(flagged)} layers, first "
                                f"`{node.name}` at {ratio}× the input's std; {summary}",
                                node=node, data=data_out)]
        return [self.result("init", "activations", True, summary, data=data_out)]



def _observe(module: nn.Module, xs: list[torch.Tensor], nodes: Iterable[Node],
             see: Callable[[Node, tuple[torch.Tensor, ...], torch.Tensor], None]) -> None:
    """Run ``module(*xs)`` without gradients, calling ``see(node, inputs, output)`` as each
    of ``nodes`` runs (forward hooks, removed afterwards)."""
    hooks = [module.get_submodule(node.name).register_forward_hook(
        lambda _m, args, out, node=node: see(node, args, out)) for node in nodes]
    try:
        with torch.no_grad():
            module(*xs)
    finally:
        for hook in hooks:
            hook.remove()

__all__ = ["CHECKS", "ModelVerifier", "Options"]
