"""nnspec: a declarative spec-to-model compiler and verification suite for neural networks.

    import nnspec
    model = nnspec.load("examples/lenet5.nn")
    print(model.summary().total_params)   # 61706
"""

from nnspec.api import Model, load, load_recipe
from nnspec.spec import Diagnostic, DiagnosticError, Graph


def train(*args, **kwargs):  # noqa: ANN002, ANN003 - the signature is nnspec.training.train's
    """Train a spec's model by its recipe; see :func:`nnspec.training.train`."""
    from nnspec.training import train as run

    return run(*args, **kwargs)


def export(*args, **kwargs):  # noqa: ANN002, ANN003 - the signature is nnspec.exporting.export's
    """Write a spec's model with trained weights as ONNX; see :func:`nnspec.exporting.export`."""
    from nnspec.exporting import export as run

    return run(*args, **kwargs)


def search(*args, **kwargs):  # noqa: ANN002, ANN003 - the signature is nnspec.searching.search's
    """Run a spec's `search` block; see :func:`nnspec.searching.search`."""
    from nnspec.searching import search as run

    return run(*args, **kwargs)


__version__ = "0.1.0"
__all__ = ["Diagnostic", "DiagnosticError", "Graph", "Model", "__version__", "export", "load",
           "load_recipe", "search", "train"]
