"""Autograd against central finite differences, in float64, aware of kinks.

The central difference of f along a direction u with step h,

    D(h) = (f(θ + h·u) - f(θ - h·u)) / 2h = ∇f·u + O(h²·f''')

is compared with autograd's ∇f·u. Three ways to choose what is compared:

- ``full``: the full Jacobian J = ∂y/∂θ, one autograd backward per output element and one
  FD column (two forwards) per parameter element; for small models;
- ``projected``: the gradient of L = vᵀy for a fixed random v, per element (one backward,
  two forwards per element); for one op at a time;
- ``directional``: vᵀJu for k random unit directions u per tensor (two forwards each); for
  large models. A failing tensor is then localised element by element.

Kinks (ReLU at 0, the switch of a max between two inputs) make f non-differentiable. The
step's second difference measures exactly what a kink inside [θ - h·u, θ + h·u] does to D:
for one kink with slopes a, b at distance d from θ, D - a = (b - a)(h - d)/2h and
(f(θ+hu) + f(θ-hu) - 2f(θ))/h = (b - a)(h - d)/h, i.e. twice the error. A mismatch within
3/4 of the second difference's magnitude (summed as |v|·|second| when outputs are projected,
so kinks in different outputs cannot cancel) is retried with a step 100× smaller (a kink
must then lie within h/100 of θ) and then skipped and counted, never reported as a wrong
gradient; a wrong gradient leaves the second difference at the curvature's O(h). The callers
also keep inputs away from kinks (|x| bounded away from 0 for the op sweep; inputs redrawn
for whole models when a ReLU input lies too close to 0).

Rounding sets a floor under every bound: ε·|y| per output, amplified by 1/h in a quotient
(see ROUNDING_SAFETY).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .tolerances import Tolerance

STEP = 1e-6
# The forward's own rounding (ε·|y| per output, grown by depth and reduction length) is
# amplified by 1/h in a difference quotient; projected on v it adds up like a random walk
# over the outputs: ε·‖v ⊙ y‖₂ / h. The safety factor covers the growth (measured on the
# FCN example, 2·21·224·224 outputs: the quotient's noise was 0.2 of ε·‖v ⊙ y‖₂ / h).
ROUNDING_SAFETY = 16.0


@dataclass
class Leaf:
    """A float64 tensor the output depends on: a parameter or a model input."""

    name: str
    tensor: torch.Tensor
    location: str | None = None


@dataclass
class GradientFinding:
    """The comparison for one leaf: the worst element (or direction) and its two values."""

    leaf: Leaf
    ok: bool
    error: float  # the worst |autograd - fd| over the checked elements or directions
    bound: float  # its tolerance: atol·scale + rtol·|fd| at that element
    autograd: float
    numeric: float
    where: str  # "[2, 0, 1, 1]", "[2, 0, 1, 1] of output [0, 3]" or "direction 1"
    checked: int  # elements or directions compared
    kinks: int = 0  # comparisons skipped because a kink lay inside the step
    mode: str = ""
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        text = (f"{self.leaf.name}{self.where}: autograd {self.autograd:.9g} vs finite "
                f"difference {self.numeric:.9g} (|Δ| = {self.error:.3g}, bound {self.bound:.3g})")
        return text


Forward = Callable[[], torch.Tensor]


def _index_text(index: tuple[int, ...]) -> str:
    return f"[{', '.join(map(str, index))}]"


def _elements(leaf: Leaf, limit: int | None, rng: np.random.Generator,
              priority: np.ndarray | None = None) -> list[int]:
    """Which flat elements to check: all, or ``limit`` of them (the largest |priority| first,
    then a seeded random choice, always including the first and last)."""
    n = leaf.tensor.numel()
    if limit is None or n <= limit:
        return list(range(n))
    chosen: list[int] = [0, n - 1]
    if priority is not None:
        chosen += [int(i) for i in np.argsort(-np.abs(priority))[: limit // 2]]
    rest = rng.permutation(n)
    for i in rest:
        if len(set(chosen)) >= limit:
            break
        chosen.append(int(i))
    return sorted(set(chosen))


class GradientChecker:
    """Compares autograd with finite differences for ``forward`` over ``leaves``.

    ``forward`` recomputes the output from the leaves' current values (it must be
    deterministic: reseed any dropout inside it). Leaves are perturbed in place and
    restored.
    """

    def __init__(self, forward: Forward, leaves: list[Leaf], tol: Tolerance, *, seed: int = 0,
                 step: float = STEP):
        self.forward = forward
        self.leaves = leaves
        self.tol = tol
        self.step = step
        self.rng = np.random.default_rng(seed)
        with torch.enable_grad():
            out = forward()
        self.output = out
        self.y0 = out.detach().reshape(-1).numpy().astype(np.float64)
        self.noise = 0.0  # rounding floor of a projected quotient, × 1/h (see _project)
        self.scale = max(1.0, float(np.max(np.abs(self.y0))) if self.y0.size else 1.0)

    # -- evaluation helpers ---------------------------------------------------------------
    def _eval(self) -> np.ndarray:
        with torch.no_grad():
            return self.forward().reshape(-1).numpy().astype(np.float64)

    def _shifted(self, leaf: Leaf, direction: torch.Tensor | tuple[int, float], h: float
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Outputs at θ + h·u and θ - h·u; ``direction`` is a tensor u or (flat index, 1)."""
        t = leaf.tensor
        with torch.no_grad():
            if isinstance(direction, tuple):
                flat = t.view(-1)
                i = direction[0]
                original = flat[i].item()
                flat[i] = original + h
                plus = self._eval()
                flat[i] = original - h
                minus = self._eval()
                flat[i] = original
            else:
                original = t.clone()
                t.add_(direction, alpha=h)
                plus = self._eval()
                t.copy_(original)
                t.add_(direction, alpha=-h)
                minus = self._eval()
                t.copy_(original)
        return plus, minus

    def _numeric(self, leaf: Leaf, direction, v: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray, float]:
        """(D(h), second difference, h used): per output, or projected on v when given."""
        h = self.step
        plus, minus = self._shifted(leaf, direction, h)
        d = (plus - minus) / (2 * h)
        second = (plus + minus - 2 * self.y0) / h
        if v is not None:
            # |v|·|second|, not v·second: kinks in different outputs must not cancel
            return np.array([v @ d]), np.array([np.abs(v) @ np.abs(second)]), h
        return d, second, h

    def _bound(self, numeric: np.ndarray) -> np.ndarray:
        return (self.tol.atol * self.scale + self.noise / self.step
                + self.tol.rtol * np.abs(numeric))

    def _project(self, v: np.ndarray) -> None:
        """From now on compare projections on v: their rounding noise sets a floor."""
        eps = np.finfo(np.float64).eps
        self.noise = ROUNDING_SAFETY * eps * float(np.linalg.norm(v * self.y0))

    def _kink(self, auto: np.ndarray, numeric: np.ndarray, second: np.ndarray) -> bool:
        """Do kinks inside the step explain the mismatch? Kinks move the quotient by at most
        half the (absolute) second difference, a wrong gradient by far more."""
        mismatch = np.abs(auto - numeric)
        return bool(np.all(mismatch <= 0.75 * np.abs(second) + self._bound(numeric)))

    def _compare(self, leaf: Leaf, direction, auto: np.ndarray, v: np.ndarray | None
                 ) -> tuple[np.ndarray, bool, bool]:
        """FD for one element/direction; retries a kink with a smaller step.

        Returns (numeric, ok, skipped_for_kink)."""
        numeric, second, h = self._numeric(leaf, direction, v)
        ok = bool(np.all(np.abs(auto - numeric) <= self._bound(numeric)))
        if ok:
            return numeric, True, False
        if not self._kink(auto, numeric, second):
            return numeric, False, False
        saved = self.step
        self.step = h / 100
        try:
            numeric2, second2, _ = self._numeric(leaf, direction, v)
        finally:
            self.step = saved
        if bool(np.all(np.abs(auto - numeric2) <= self._bound(numeric2))):
            return numeric2, True, False
        if self._kink(auto, numeric2, second2):
            return numeric2, True, True
        return numeric2, False, False

    # -- the three modes ------------------------------------------------------------------
    def _random_projection(self) -> tuple[np.ndarray, tuple[torch.Tensor | None, ...]]:
        """A random output projection v (its rounding floor set) and autograd's Jᵀv per leaf."""
        v = self.rng.standard_normal(self.y0.size)
        self._project(v)
        grads = torch.autograd.grad(self.output.reshape(-1), [leaf.tensor for leaf in self.leaves],
                                    grad_outputs=torch.from_numpy(v).to(self.output.dtype),
                                    allow_unused=True)
        return v, grads

    def projected(self, limit: int | None = None) -> list[GradientFinding]:
        """Per element, the gradient of L = vᵀy (v fixed, random)."""
        v, grads = self._random_projection()
        findings = []
        for leaf, grad in zip(self.leaves, grads, strict=True):
            g = (np.zeros(leaf.tensor.numel()) if grad is None
                 else grad.reshape(-1).numpy().astype(np.float64))
            findings.append(self._elementwise(leaf, g, v, limit))
        return findings

    def _elementwise(self, leaf: Leaf, g: np.ndarray, v: np.ndarray, limit: int | None
                     ) -> GradientFinding:
        worst = None
        kinks = 0
        elements = _elements(leaf, limit, self.rng, priority=g)
        for i in elements:
            numeric, ok, skipped = self._compare(leaf, (i, 1.0), np.array([g[i]]), v)
            kinks += skipped
            if skipped:
                continue
            err = abs(g[i] - numeric[0])
            bound = float(self._bound(numeric)[0])
            ratio = err / bound
            if worst is None or ratio > worst[0]:
                worst = (ratio, i, g[i], float(numeric[0]), err, bound, ok)
        shape = tuple(leaf.tensor.shape)
        if worst is None:
            return GradientFinding(leaf, True, 0.0, 0.0, 0.0, 0.0, "", 0, kinks, "projected")
        _, i, auto, num, err, bound, ok = worst
        index = tuple(int(k) for k in np.unravel_index(i, shape)) if shape else ()
        return GradientFinding(leaf, ok and err <= bound, err, bound, float(auto), num,
                               _index_text(index) if index else "", len(elements), kinks,
                               "projected")

    def full(self, limit: int | None = None) -> list[GradientFinding]:
        """The full Jacobian: every output element against every (or ``limit``) element."""
        flat_out = self.output.reshape(-1)
        tensors = [leaf.tensor for leaf in self.leaves]
        rows: list[list[np.ndarray]] = [[] for _ in self.leaves]
        for o in range(flat_out.numel()):
            grads = torch.autograd.grad(flat_out[o], tensors, retain_graph=True, allow_unused=True)
            for k, grad in enumerate(grads):
                rows[k].append(np.zeros(tensors[k].numel()) if grad is None
                               else grad.reshape(-1).numpy().astype(np.float64))
        findings = []
        out_shape = tuple(self.output.shape)
        for leaf, row in zip(self.leaves, rows, strict=True):
            jac = np.stack(row)  # [outputs, elements]
            worst = None
            kinks = 0
            elements = _elements(leaf, limit, self.rng, priority=np.abs(jac).max(axis=0))
            for i in elements:
                numeric, ok, skipped = self._compare(leaf, (i, 1.0), jac[:, i], None)
                kinks += skipped
                if skipped:
                    continue
                bound = self._bound(numeric)
                ratio = np.abs(jac[:, i] - numeric) / bound
                o = int(np.argmax(ratio))
                if worst is None or ratio[o] > worst[0]:
                    worst = (ratio[o], i, o, jac[o, i], float(numeric[o]),
                             abs(jac[o, i] - numeric[o]), float(bound[o]), ok)
            if worst is None:
                findings.append(GradientFinding(leaf, True, 0.0, 0.0, 0.0, 0.0, "", 0, kinks,
                                                "full"))
                continue
            _, i, o, auto, num, err, bound, ok = worst
            shape = tuple(leaf.tensor.shape)
            index = tuple(int(k) for k in np.unravel_index(i, shape)) if shape else ()
            out_index = tuple(int(k) for k in np.unravel_index(o, out_shape))
            where = f"{_index_text(index) if index else ''} of output {_index_text(out_index)}"
            findings.append(GradientFinding(leaf, ok and err <= bound, err, bound, float(auto),
                                            num, where, len(elements), kinks, "full"))
        return findings

    def directional(self, directions: int = 2, localise: int = 32) -> list[GradientFinding]:
        """vᵀJu for ``directions`` random unit u per leaf; a failing leaf is localised to its
        worst element among ``localise`` candidates (largest |gradient| first)."""
        v, grads = self._random_projection()
        findings = []
        for leaf, grad in zip(self.leaves, grads, strict=True):
            g = torch.zeros_like(leaf.tensor) if grad is None else grad
            worst = None
            kinks = 0
            tries = 0
            checked = 0
            while checked < directions and tries < directions + 4:
                tries += 1
                u = torch.from_numpy(self.rng.standard_normal(tuple(leaf.tensor.shape))).to(
                    leaf.tensor.dtype)
                u /= max(float(u.norm()), 1e-300)
                auto = float((g * u).sum())
                numeric, ok, skipped = self._compare(leaf, u, np.array([auto]), v)
                if skipped:
                    kinks += 1
                    continue
                checked += 1
                err = abs(auto - numeric[0])
                bound = float(self._bound(numeric)[0])
                if worst is None or err / bound > worst[0]:
                    worst = (err / bound, checked, auto, float(numeric[0]), err, bound, ok)
            if worst is None:
                findings.append(GradientFinding(leaf, True, 0.0, 0.0, 0.0, 0.0, "", 0, kinks,
                                                "directional"))
                continue
            _, k, auto, num, err, bound, ok = worst
            finding = GradientFinding(leaf, ok, err, bound, auto, num, f" (direction {k})",
                                      checked, kinks, "directional")
            if not ok:
                local = self._elementwise(leaf, g.reshape(-1).numpy().astype(np.float64), v,
                                          localise)
                if not local.ok:
                    local.mode = "directional"
                    local.notes.append(f"direction {k}: autograd {auto:.9g} vs finite "
                                       f"difference {num:.9g}")
                    finding = local
            findings.append(finding)
        return findings


__all__ = ["STEP", "GradientChecker", "GradientFinding", "Leaf"]
