"""Every tolerance of the verification suite, in one table.

A comparison passes when ``|a - b| <= atol + rtol·|b|`` elementwise (numpy's ``allclose``
rule, b the trusted side). The defaults are set by the arithmetic each check runs in:

- ``reference``: torch in float64 vs the numpy reference in float64. Both are exact
  formulas evaluated in double precision, so only summation order differs (~1e-15
  relative per operation, growing with reduction length).
- ``gradient``: autograd vs central finite differences in float64. The central difference
  has truncation error O(h²·f''') and rounding error O(ε·|f|/h); h = 1e-6 balances them
  near 1e-10 for the functions here, so 1e-6 leaves three orders of headroom.
- ``onnx``: onnxruntime vs torch, both float32, eval mode: different kernels accumulate in
  different orders, ~1e-7 relative per sum of a few hundred terms.
- ``analytic``: a formula from the course in numpy float64 vs autograd in float64.
- ``equivalence``: the numpy interpreter (float64) vs torch and onnxruntime (float32) on a
  whole model, layer by layer: float32 rounding compounds over depth.

An entry for one op kind overrides the default, and must say why it is looser.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    reason: str = ""

    @property
    def bound(self) -> float:
        """One number for reports: the larger of the two."""
        return max(self.rtol, self.atol)


DEFAULTS: dict[str, Tolerance] = {
    "reference": Tolerance(rtol=1e-9, atol=1e-10),
    "gradient": Tolerance(rtol=1e-6, atol=1e-8),
    "onnx": Tolerance(rtol=1e-5, atol=1e-5),
    "analytic": Tolerance(rtol=1e-9, atol=1e-10),
    "equivalence": Tolerance(rtol=1e-4, atol=1e-4),
}

# (check, op kind) -> a looser tolerance, with the reason it is needed
LOOSENED: dict[tuple[str, str], Tolerance] = {}


def tolerance(check: str, kind: str | None = None) -> Tolerance:
    if kind is not None and (check, kind) in LOOSENED:
        return LOOSENED[(check, kind)]
    return DEFAULTS[check]
