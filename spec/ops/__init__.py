"""The op registry: every layer a spec can name, one class per op, grouped by family."""

from . import conv  # noqa: F401  (importing a family registers its ops)
from .base import REGISTRY, GLOBAL, Op, ShapeError, WindowStep, receptive_field, register

__all__ = ["REGISTRY", "GLOBAL", "Op", "ShapeError", "WindowStep", "receptive_field", "register"]
