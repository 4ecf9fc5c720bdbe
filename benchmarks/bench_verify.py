"""Whole-model gradient check of LeNet-5: nnspec's checker against torch.autograd.gradcheck.

    python benchmarks/bench_verify.py [--repeats 5] [--threads 1] [--skip-full] [--no-ablation]

Four checks of the same float64 LeNet-5 (examples/lenet5.nn: 61,706 parameters, plus the
2,048 input elements of a batch of 2; train mode, which changes nothing here: no dropout, no
batchnorm), on the same weights and the same input, in this process:

1. nnspec directional: `GradientChecker.directional()` (2 random directions per tensor,
   vᵀJu), what `nnspec verify` runs for this model;
2. nnspec full: `GradientChecker.full()`, the whole Jacobian: one backward per output
   element, one central difference (two forwards) per parameter or input element;
3. `torch.autograd.gradcheck(fast_mode=True)`: one random vᵀJu per input tensor;
4. `torch.autograd.gradcheck()` (slow mode): the whole Jacobian, numerically and by backward.

gradcheck sees the parameters as inputs through `torch.func.functional_call`. Its public
call answers pass/fail only, so the errors of rows 3 and 4 come from a second run of the
same internal steps (`_get_numerical_jacobian` and `_check_analytical_jacobian_attributes`
for slow mode; `_make_vectors`, `_get_numerical_vJu` and `_get_analytical_vJu_backward_mode`
for fast mode, whose random vectors come from a fresh default-seeded generator, so they are
the ones the timed call drew). The nnspec checker records every comparison it makes (a
subclass that wraps `_compare`). Errors are computed the same way for all four.

An ablation row runs gradcheck's slow mode once more with the module's own parameters as
its inputs (perturbed in place), without functional_call. Full runs take a few minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch.func import functional_call

import nnspec
from nnspec.verify.finite_diff import STEP, GradientChecker, Leaf
from nnspec.verify.model import KINKED, ModelVerifier, Options
from nnspec.verify.tolerances import tolerance

SPEC = Path(__file__).parent.parent / "examples" / "lenet5.nn"
BATCH = 2
SEED = 0
# torch.autograd.gradcheck is the function; its module holds the machinery
GC = sys.modules["torch.autograd.gradcheck"]


@dataclass
class Outcome:
    method: str
    seconds: float  # best of the timed runs
    runs: list[float]
    forwards: int  # model forwards during one timed run
    verdict: str
    compared: int = 0  # scalar autograd-vs-FD comparisons
    max_abs: float = float("nan")  # max |autograd - fd|
    max_rel: float = float("nan")  # max |autograd - fd| / |fd| over |fd| >= floor
    worst_bound: float = float("nan")  # max |autograd - fd| / (nnspec's bound)
    note: str = ""


class Recording(GradientChecker):
    """nnspec's checker, keeping every (autograd, finite difference) pair it compares."""

    def __init__(self, *args, **kwargs):
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        super().__init__(*args, **kwargs)

    def _compare(self, leaf, direction, auto, v):
        numeric, ok, skipped = super()._compare(leaf, direction, auto, v)
        self.pairs.append((np.array(auto, dtype=np.float64).reshape(-1),
                           np.array(numeric, dtype=np.float64).reshape(-1)))
        return numeric, ok, skipped


class Setup:
    """The model and input exactly as `ModelVerifier.check_gradient` builds them."""

    def __init__(self) -> None:
        self.graph = nnspec.load(SPEC).graph
        assert not any(n.op in KINKED for n in self.graph.nodes)  # so the first input draw is kept
        verifier = ModelVerifier(self.graph, options=Options(checks=("gradient",), batch=BATCH,
                                                             seed=SEED))
        self.module = verifier.module().double().train()
        self.x = verifier.inputs(BATCH, SEED + 1000, real=False).x[0].double()
        self.names = [name for name, _ in self.module.named_parameters()]
        self.n_params = sum(p.numel() for p in self.module.parameters())
        self.forwards = 0
        self.module.register_forward_pre_hook(lambda *_: self._count())
        self.tol = tolerance("gradient")
        with torch.no_grad():
            y = self.module(self.x)
        self.scale = max(1.0, float(y.abs().max()))  # GradientChecker's output scale
        self.floor = self.tol.atol * self.scale  # below this an |fd| is noise-level

    def _count(self) -> None:
        self.forwards += 1

    # -- nnspec ---------------------------------------------------------------------------
    def checker(self) -> Recording:
        x = self.x.clone().requires_grad_()
        leaves = [Leaf("input x", x)] + [Leaf(n, p) for n, p in self.module.named_parameters()]

        def forward() -> torch.Tensor:
            torch.default_generator.manual_seed(SEED)  # as check_gradient: fixed dropout masks
            return self.module(x)

        return Recording(forward, leaves, self.tol, seed=SEED, step=STEP)

    # -- gradcheck ------------------------------------------------------------------------
    def function(self, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, dict(zip(self.names, params, strict=True)), (x,))

    def gradcheck_inputs(self) -> tuple[torch.Tensor, ...]:
        return (self.x.clone().requires_grad_(),
                *[p.detach().clone().requires_grad_() for p in self.module.parameters()])

    # -- errors ---------------------------------------------------------------------------
    def errors(self, auto: np.ndarray, numeric: np.ndarray) -> tuple[float, float, float]:
        diff = np.abs(auto - numeric)
        big = np.abs(numeric) >= self.floor
        rel = float(np.max(diff[big] / np.abs(numeric[big]))) if big.any() else float("nan")
        bound = self.tol.atol * self.scale + self.tol.rtol * np.abs(numeric)
        return float(diff.max()), rel, float(np.max(diff / bound))


def timed(setup: Setup, run, repeats: int):
    """Best of ``repeats`` runs of ``run()``; the forwards of one run; the last result."""
    times, result, forwards = [], None, 0
    for _ in range(repeats):
        setup.forwards = 0
        began = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - began)
        forwards = setup.forwards
    return min(times), times, forwards, result


def nnspec_check(setup: Setup, mode: str, repeats: int) -> Outcome:
    def run():
        checker = setup.checker()  # its construction runs the first forward: timed too
        findings = checker.full() if mode == "full" else checker.directional()
        return checker, findings

    best, times, forwards, (checker, findings) = timed(setup, run, repeats)
    auto = np.concatenate([a for a, _ in checker.pairs])
    numeric = np.concatenate([n for _, n in checker.pairs])
    failed = [f.leaf.name for f in findings if not f.ok]
    kinks = sum(f.kinks for f in findings)
    verdict = "pass" if not failed else f"FAIL ({', '.join(failed)})"
    return Outcome(f"nnspec {mode}", best, times, forwards, verdict, auto.size,
                   *setup.errors(auto, numeric),
                   note=f"{len(findings)} tensors, {kinks} kinks skipped")


def verifier_directional(setup: Setup, repeats: int) -> float:
    """End to end through `ModelVerifier.check_gradient` (module build and input draw
    included), for comparison with the bare checker."""
    verifier = ModelVerifier(setup.graph, options=Options(checks=("gradient",), batch=BATCH,
                                                          seed=SEED, gradient_mode="directional"))
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        results = verifier.check_gradient()
        times.append(time.perf_counter() - began)
    assert all(r.status == "pass" for r in results), [r.detail for r in results if r.failed]
    return min(times)


def gradcheck_check(setup: Setup, fast: bool, repeats: int, in_place: bool = False) -> Outcome:
    """``in_place``: an ablation. The module's own parameters are the inputs and the function
    ignores them (gradcheck perturbs each input's ``.data`` in place and restores it, so the
    module sees the perturbation): no functional_call."""
    if in_place:
        inputs = (setup.x.clone().requires_grad_(), *setup.module.parameters())

        def function(x: torch.Tensor, *_params: torch.Tensor) -> torch.Tensor:
            return setup.module(x)
    else:
        inputs = setup.gradcheck_inputs()
        function = setup.function

    def run():
        return torch.autograd.gradcheck(function, inputs, eps=STEP, fast_mode=fast,
                                        raise_exception=False)

    best, times, forwards, passed = timed(setup, run, repeats)
    # the errors: the same internal steps again, keeping their values
    out = function(*inputs)
    if fast:
        index, tensors = GC._get_inp_tensors(inputs)
        all_v, all_u, all_u_dense = GC._make_vectors(tensors, (out,), use_forward_ad=False)
        numerical = GC._get_numerical_vJu(function, inputs, index, out, all_u, all_v,
                                          STEP, False)  # [input][output]
        analytical = GC._get_analytical_vJu_backward_mode(inputs, (out,), 0.0, False, all_v,
                                                          all_u_dense)  # [output][input]
        auto = np.array([float(analytical[0][i]) for i in range(len(tensors))])
        numeric = np.array([float(numerical[i][0]) for i in range(len(tensors))])
    else:
        numerical = GC._get_numerical_jacobian(function, inputs, (out,), eps=STEP)
        analytical = GC._check_analytical_jacobian_attributes(inputs, out, 0.0, False)
        auto = np.concatenate([a.detach().reshape(-1).numpy() for a in analytical])
        numeric = np.concatenate([n[0].detach().reshape(-1).numpy() for n in numerical])
    name = "gradcheck fast_mode" if fast else "gradcheck (slow mode)"
    if in_place:
        name += ", in place"
    return Outcome(name, best, times, forwards, "pass" if passed else "FAIL", auto.size,
                   *setup.errors(auto, numeric),
                   note="atol 1e-5, rtol 1e-3 (gradcheck's defaults), eps 1e-6")


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                     if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or platform.machine()
    return (f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), load average "
            f"{os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M %Z')}")


def forward_ms(setup: Setup, n: int = 200) -> dict[str, float]:
    """Milliseconds per forward: the module under no_grad (nnspec's finite differences), and
    with the autograd graph recorded, directly and through functional_call (gradcheck's
    finite differences run with grad mode on and inputs that require grad)."""
    x = setup.x.clone().requires_grad_()
    params = [p.detach().clone().requires_grad_() for p in setup.module.parameters()]
    cases = {"module, no_grad": (torch.no_grad, lambda: setup.module(setup.x)),
             "module, graph recorded": (torch.enable_grad, lambda: setup.module(x)),
             "functional_call, graph recorded": (torch.enable_grad,
                                                 lambda: setup.function(x, *params))}
    out = {}
    for name, (mode, fn) in cases.items():
        with mode():
            for _ in range(10):
                fn()
            began = time.perf_counter()
            for _ in range(n):
                fn()
        out[name] = (time.perf_counter() - began) / n * 1e3
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs of the two cheap checks (best reported)")
    parser.add_argument("--full-repeats", type=int, default=1,
                        help="timed runs of the two full-Jacobian checks")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: see benchmarks/README.md)")
    parser.add_argument("--skip-full", action="store_true",
                        help="leave out the full-Jacobian checks")
    parser.add_argument("--no-ablation", action="store_true",
                        help="leave out gradcheck (slow mode) on the module's own parameters")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=None if sys.stdout.isatty() else 120)
    setup = Setup()
    elements = setup.n_params + setup.x.numel()
    console.print(f"LeNet-5 float64, batch {BATCH}: {setup.n_params:,} parameters + "
                  f"{setup.x.numel():,} input elements = {elements:,}")
    for threads in sorted({args.threads, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        times = ", ".join(f"{k} {v:.3f}" for k, v in forward_ms(setup).items())
        console.print(f"one forward, ms, {threads} thread(s): {times}")
    torch.set_num_threads(args.threads)
    outcomes = [nnspec_check(setup, "directional", args.repeats),
                gradcheck_check(setup, True, args.repeats)]
    end_to_end = verifier_directional(setup, args.repeats)
    if not args.skip_full:
        runs = [lambda: nnspec_check(setup, "full", args.full_repeats),
                lambda: gradcheck_check(setup, False, args.full_repeats)]
        if not args.no_ablation:
            runs.append(lambda: gradcheck_check(setup, False, args.full_repeats, in_place=True))
        for run in runs:
            outcomes.append(run())
            console.print(f"{outcomes[-1].method}: {outcomes[-1].seconds:.1f} s")
    table = Table(title=f"Gradient check of LeNet-5 ({elements:,} elements, float64)")
    for column in ("method", "wall s", "forwards", "verdict", "compared", "max |Δ|",
                   "max rel", "worst Δ/bound"):
        table.add_column(column, justify="left" if column in ("method", "verdict") else "right")
    for o in outcomes:
        table.add_row(o.method, f"{o.seconds:.3f}", f"{o.forwards:,}", o.verdict,
                      f"{o.compared:,}", f"{o.max_abs:.2e}", f"{o.max_rel:.2e}",
                      f"{o.worst_bound:.3f}")
    console.print(table)
    for o in outcomes:
        console.print(f"{o.method}: runs {[round(t, 3) for t in o.runs]} s; {o.note}")
    console.print(f"nnspec directional end to end (ModelVerifier.check_gradient, module "
                  f"build and input draw included): {end_to_end:.3f} s")
    console.print(f"max rel = max |Δ|/|fd| over values with |fd| >= {setup.floor:.0e} "
                  f"(nnspec's atol x output scale {setup.scale:.3g}); worst Δ/bound = max "
                  f"|Δ| / (atol·scale + rtol·|fd|) with nnspec's gradient tolerance "
                  f"(rtol {setup.tol.rtol:g}, atol {setup.tol.atol:g}): <= 1 passes")
    console.print(f"machine: {machine()}")


if __name__ == "__main__":
    main()
