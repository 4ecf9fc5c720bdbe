"""nnspec: a declarative spec-to-model compiler and verification suite for neural networks.

    import nnspec
    model = nnspec.load("examples/lenet5.nn")
    print(model.summary().total_params)   # 61706
"""

from nnspec.api import Model, load
from nnspec.spec import Diagnostic, DiagnosticError, Graph

__version__ = "0.1.0"
__all__ = ["Diagnostic", "DiagnosticError", "Graph", "Model", "__version__", "load"]
