"""The package's import graph, derived from the source with `ast`, and the rules it must keep.

Every import statement counts: at module level, inside functions (deferred imports) and
under ``if TYPE_CHECKING:``, since each states that one module knows another. Importing
``a.b.c`` also runs the packages ``a.b`` and ``a`` (their ``__init__``), so those are edges
too, except for the importer's own enclosing packages, which are running already.

The rules are data: ``layers`` lists groups of module prefixes, outermost first; a module
belongs to the group of the longest prefix that names it, and may import its own group
and the groups after it, never one before. ``independent`` lists groups of prefixes whose
modules must not import one another. No import circle may exist anywhere.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line})"


@dataclass(frozen=True)
class Rules:
    layers: tuple[tuple[str, ...], ...]
    independent: tuple[tuple[str, ...], ...]


def read_project(root: Path) -> tuple[dict[str, Path], Rules]:
    """The package directories (setuptools ``package-dir``) and the architecture rules
    (``[tool.nnspec.architecture]``) of the project at ``root``."""
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    dirs = config["tool"]["setuptools"]["package-dir"]
    arch = config["tool"]["nnspec"]["architecture"]
    rules = Rules(layers=tuple(tuple(group) for group in arch["layers"]),
                  independent=tuple(tuple(group) for group in arch.get("independent", [])))
    return {name: root / folder for name, folder in dirs.items()}, rules


def find_modules(package_dirs: Mapping[str, Path]) -> dict[str, Module]:
    """Every module of the mapped packages, by dotted name; a sub-package mapped on its
    own (``nnspec.spec`` = ``spec/``) is read from its own folder."""
    modules: dict[str, Module] = {}
    for package, folder in package_dirs.items():
        for path in sorted(folder.glob("*.py")):
            is_package = path.stem == "__init__"
            name = package if is_package else f"{package}.{path.stem}"
            modules[name] = Module(name, path, is_package)
    return modules


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.name.split(".")
    base = parts if module.is_package else parts[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imports_of(module: Module, known: Mapping[str, Module]) -> list[Import]:
    """The project modules ``module`` imports, with the line of each statement."""
    tree = ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))
    own = set(_ancestors(module.name)) | {module.name}
    found: list[Import] = []

    def add(target: str, line: int) -> None:
        while target and target not in known:  # `from pkg.mod import name`: the module
            target = target.rpartition(".")[0]
        if not target:
            return
        for name in [*_ancestors(target), target]:
            if name in known and name not in own:
                found.append(Import(module.name, name, line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                add(full if full in known else base, node.lineno)
    return found


def import_graph(modules: Mapping[str, Module]) -> list[Import]:
    return [edge for module in modules.values() for edge in imports_of(module, modules)]


def cycles(modules: Iterable[str], edges: Sequence[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    successors: dict[str, list[str]] = {m: [] for m in modules}
    for edge in edges:
        successors[edge.source].append(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in successors:
        if root in index:
            continue
        work = [(root, iter(successors[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _owner(name: str, prefixes: Iterable[str]) -> str | None:
    best = None
    for prefix in prefixes:
        if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > len(best)):
            best = prefix
    return best


def layer_of(name: str, rules: Rules) -> int | None:
    """The index of the layer whose longest prefix names ``name`` (0 = outermost)."""
    where = {prefix: i for i, group in enumerate(rules.layers) for prefix in group}
    owner = _owner(name, where)
    return None if owner is None else where[owner]


def upward(edges: Sequence[Import], rules: Rules) -> list[Import]:
    """Imports of a layer before the importer's own (inner code knowing outer code)."""
    bad = []
    for edge in edges:
        source, target = layer_of(edge.source, rules), layer_of(edge.target, rules)
        if source is not None and target is not None and target < source:
            bad.append(edge)
    return bad


def unplaced(modules: Iterable[str], rules: Rules) -> list[str]:
    return [m for m in modules if layer_of(m, rules) is None]


def crossings(edges: Sequence[Import], rules: Rules) -> list[Import]:
    """Imports between two parts of a group declared independent."""
    bad = []
    for group in rules.independent:
        for edge in edges:
            a, b = _owner(edge.source, group), _owner(edge.target, group)
            if a is not None and b is not None and a != b:
                bad.append(edge)
    return bad
