"""nnspec.spec: the language. Text -> AST -> elaborated IR, with located diagnostics."""

from .diagnostics import Diagnostic, DiagnosticError
from .elaborate import DEFAULT_MAX_PARAMS, elaborate
from .ir import Graph, Node, Program, TensorType
from .loader import Loaded, load_file, load_text

__all__ = [
    "DEFAULT_MAX_PARAMS",
    "Diagnostic",
    "DiagnosticError",
    "Graph",
    "Loaded",
    "Node",
    "Program",
    "TensorType",
    "elaborate",
    "load_file",
    "load_text",
]
