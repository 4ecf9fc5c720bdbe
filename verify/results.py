"""What a check found: one :class:`CheckResult` per subject, collected in a :class:`Report`.

Every check of the suite (the op sweep, the analytic gradients, and the model checks of
``nnspec verify``) reports through these two types, so the CLI renders one table and
``--json`` writes one schema whatever ran.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["pass", "fail", "warn", "skip"]


@dataclass
class CheckResult:
    """The outcome of one check on one subject.

    ``check`` is the check's name (``forward``, ``gradient``, ``onnx``...), ``subject`` what
    it looked at (``conv[2]``, ``conv_1.weight``, ``softmax + cross-entropy``). ``error``
    is the worst error measured and ``tolerance`` the bound it was held to; ``detail``
    says where the worst element is and both values; ``location`` is ``file:line:col`` of
    the spec line responsible, when there is one.
    """

    check: str
    subject: str
    status: Status
    error: float | None = None
    tolerance: float | None = None
    detail: str = ""
    location: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("error", "tolerance"):  # JSON has no inf or nan
            value = out[key]
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = str(value)
        return out


@dataclass
class Report:
    """All results of one run of the suite, in the order the checks ran."""

    subject: str
    results: list[CheckResult] = field(default_factory=list)

    def add(self, result: CheckResult) -> CheckResult:
        self.results.append(result)
        return result

    def extend(self, results: list[CheckResult]) -> None:
        self.results.extend(results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.failed]

    @property
    def ok(self) -> bool:
        return not self.failures

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "fail": 0, "warn": 0, "skip": 0}
        for r in self.results:
            out[r.status] += 1
        return out

    def to_json(self) -> str:
        return json.dumps({"subject": self.subject, "ok": self.ok, "counts": self.counts(),
                           "results": [r.to_json() for r in self.results]}, indent=2)
