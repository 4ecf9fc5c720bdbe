"""The package keeps its architecture: no import circle, no inner layer importing an outer
one, independent parts apart; the layers are written once, in pyproject.toml."""

from __future__ import annotations

from pathlib import Path

import pytest
from import_graph import (
    Rules,
    crossings,
    cycles,
    find_modules,
    import_graph,
    read_project,
    unplaced,
    upward,
)

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS, RULES = read_project(ROOT)
MODULES = find_modules(PACKAGE_DIRS)
EDGES = import_graph(MODULES)


def _lines(edges) -> str:
    return "\n".join(f"  {edge}" for edge in edges)


def test_the_graph_is_the_whole_package():
    assert len(MODULES) > 80
    assert "nnspec.runtime.loop.trainer" in MODULES and "nnspec.spec.recipe.ir" in MODULES
    assert any(e.source == "nnspec.runtime.experiments.run" and e.target == "nnspec.runtime.loop.trainer"
               for e in EDGES)


def test_no_import_circle():
    found = cycles(MODULES, EDGES)
    assert not found, "import circles:\n" + "\n".join("  " + " <-> ".join(c) for c in found)


def test_every_module_has_a_layer():
    assert unplaced(MODULES, RULES) == []


def test_no_inner_layer_imports_an_outer_one():
    bad = upward(EDGES, RULES)
    assert not bad, "imports against the direction of use:\n" + _lines(bad)


def test_independent_parts_do_not_import_each_other():
    bad = crossings(EDGES, RULES)
    assert not bad, "imports between independent parts:\n" + _lines(bad)


def test_the_loop_knows_no_experiment():
    """The issue's rule in words: the training loop imports nothing of kNN, solvers,
    cross-validation, ensembles, search or process groups (nor torch.distributed)."""
    loop = [m for m in MODULES if m.startswith("nnspec.runtime.loop")]
    assert loop
    for name in loop:
        text = MODULES[name].path.read_text(encoding="utf-8")
        assert "torch.distributed" not in text, name
    bad = [e for e in EDGES if e.source in loop and e.target.startswith("nnspec.runtime.experiments")]
    assert bad == []


# -- the checker itself, on a small package written here ------------------------------------
def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    folders = {p.parent for p in (tmp_path / "pkg").rglob("__init__.py")}
    return {"pkg" + "".join("." + part for part in f.relative_to(tmp_path / "pkg").parts): f
            for f in folders}


@pytest.fixture
def small(tmp_path):
    dirs = _package(tmp_path, {
        "__init__.py": "",
        "outer/__init__.py": "",
        "outer/run.py": "from pkg.inner import loop\n",
        "inner/__init__.py": "",
        "inner/loop.py": ("from typing import TYPE_CHECKING\n"
                          "if TYPE_CHECKING:\n    from pkg.outer.run import x\n"),
        "inner/a.py": "def f():\n    from . import b\n",
        "inner/b.py": "from .a import f\n",
        "side/__init__.py": "", "side/one.py": "import pkg.side2.two\n",
        "side2/__init__.py": "", "side2/two.py": "",
    })
    return find_modules(dirs)


def test_checker_finds_deferred_and_typing_imports(small):
    edges = import_graph(small)
    pairs = {(e.source, e.target) for e in edges}
    assert ("pkg.inner.loop", "pkg.outer.run") in pairs  # under TYPE_CHECKING
    assert ("pkg.inner.a", "pkg.inner.b") in pairs  # inside a function, relative
    assert ("pkg.outer.run", "pkg.inner") in pairs  # the package it runs on the way
    assert ("pkg.side.one", "pkg.side2") in pairs and ("pkg.side.one", "pkg.side2.two") in pairs


def test_checker_reports_circles_upward_imports_and_crossings(small):
    edges = import_graph(small)
    assert ["pkg.inner.a", "pkg.inner.b"] in cycles(small, edges)
    rules = Rules(layers=(("pkg.outer",), ("pkg", "pkg.inner", "pkg.side", "pkg.side2")),
                  independent=(("pkg.side", "pkg.side2"),))
    assert [str(e) for e in upward(edges, rules)] == [
        "pkg.inner.loop -> pkg.outer (line 3)", "pkg.inner.loop -> pkg.outer.run (line 3)"]
    assert [(e.source, e.target) for e in crossings(edges, rules)] == [
        ("pkg.side.one", "pkg.side2"), ("pkg.side.one", "pkg.side2.two")]
    assert unplaced(small, Rules(layers=(("pkg.outer",),), independent=())) == [
        m for m in small if not m.startswith("pkg.outer")]


HEAVY = ("torch", "onnx", "onnxruntime", "numpy", "matplotlib", "sklearn")
# the seeded split, imported by the recipe checks only for a recipe that cross-validates
HEAVY_ALLOWED = {("nnspec.spec.recipe.splits", "numpy")}


def _module_level_imports(path: Path) -> list[tuple[str, int]]:
    """Top-level packages imported when the module runs (not in functions, not for typing)."""
    import ast

    found = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found += [(a.name.split(".")[0], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def test_the_language_imports_nothing_heavy_when_loaded():
    """`nnspec check` runs on spec/ alone: torch, onnx, onnxruntime, numpy and matplotlib are
    imported inside the functions that use them (the lowerings, the references)."""
    bad = [f"{name}:{line} imports {package}" for name, module in MODULES.items()
           if name.startswith("nnspec.spec")
           for package, line in _module_level_imports(module.path)
           if package in HEAVY and (name, package) not in HEAVY_ALLOWED]
    assert bad == []
