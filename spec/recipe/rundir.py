"""Which weights file of a run directory is "the run's model" (no torch here: the spec stage
asks it too, for `init from("run/")`).

A run's reports (test.json, summary.md) describe the weights its training ended with:
``Trainer.finish`` restores the best epoch's when early stopping watched them, and keeps the
last epoch's otherwise (gradient descent run to its end, the course's convergence to the
normal equation). Exporting a run, predicting with it and starting from it all take those
same weights, so the exported model is the one whose accuracy was reported.
"""

from __future__ import annotations

import json
from pathlib import Path

BEST, LAST = "best.safetensors", "last.safetensors"
ENSEMBLE_FILE = "ensemble.json"  # an ensemble run: its members, under members/<k>/


def model_weights(run: str | Path) -> Path:
    """RUN/best.safetensors for a recipe with `early_stop`, else RUN/last.safetensors (also
    when recipe.json cannot tell: a directory without it, or a damaged one, gives best)."""
    run = Path(run)
    try:
        recipe = json.loads((run / "recipe.json").read_text(encoding="utf-8"))
        early = recipe.get("early_stop") is not None
    except (OSError, ValueError, AttributeError):
        return run / BEST
    return run / (BEST if early else LAST)


__all__ = ["BEST", "ENSEMBLE_FILE", "LAST", "model_weights"]
