"""The op registry: every layer a spec can name, one class per op, grouped by family."""

from . import (
    activation,  # noqa: F401
    arithmetic,  # noqa: F401
    attention,  # noqa: F401
    axes,  # noqa: F401
    conv,  # noqa: F401  (importing a family registers its ops)
    linear,  # noqa: F401
    neighbors,  # noqa: F401
    norm,  # noqa: F401
    pool,  # noqa: F401
    recurrent,  # noqa: F401
    regularization,  # noqa: F401
    scale,  # noqa: F401
    shape,  # noqa: F401
    tokens,  # noqa: F401
)
from .base import (
    GLOBAL,
    REGISTRY,
    BadSample,
    Op,
    Sample,
    ShapeError,
    TorchCall,
    WindowStep,
    op_of,
    receptive_field,
    register,
    sample,
)

__all__ = [
    "GLOBAL",
    "REGISTRY",
    "BadSample",
    "Op",
    "Sample",
    "ShapeError",
    "TorchCall",
    "WindowStep",
    "op_of",
    "receptive_field",
    "register",
    "sample",
]
