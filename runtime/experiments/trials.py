"""A search directory's record: its file names and one trained trial, as search.py writes
them and search_report.py reads them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from nnspec.spec.search.ir import Point

SEARCH_FILE, TRIALS_FILE, RESULTS_FILE = "search.json", "trials.jsonl", "results.csv"
BEST_SPEC, BEST_FILE, PLOT_FILE = "best.nn", "best.json", "search.png"


@dataclass
class Trial:
    """One point of the search, trained and scored."""

    id: int
    round: int
    point: Point
    objective: float | None  # None: it diverged, or its values do not make a valid recipe
    mean: dict[str, float] = field(default_factory=dict)  # validation metrics (over the folds)
    std: dict[str, float] = field(default_factory=dict)  # over the folds; empty without cv
    status: str = "ok"  # ok, diverged, failed, invalid
    reason: str | None = None
    epochs: int = 0
    seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "round": self.round, "point": self.point,
                "objective": self.objective, "mean": self.mean, "std": self.std,
                "status": self.status, "reason": self.reason, "epochs": self.epochs,
                "seconds": round(self.seconds, 3)}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Trial:
        return cls(**data)


def point_key(point: Point) -> str:
    return json.dumps(point, sort_keys=True)
