"""Reading spec files: bytes -> text (checked), imports (relative, inside the project, acyclic)."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import ast, codes
from .diagnostics import Diagnostic, DiagnosticError, error
from .parser import parse_module
from .source import SourceFile, SourceMap


@dataclass
class Loaded:
    """A root file, everything it imports, and every definition by name."""

    root: ast.Module
    sources: SourceMap
    modules: list[ast.Module]
    hashes: dict[str, str]
    definitions: dict[str, ast.Definition] = field(default_factory=dict)

    def spec_hash(self) -> str:
        """One sha256 over every source file of the spec (the root and its imports): what a
        run directory, a search and an exported model record of the spec they came from."""
        digest = hashlib.sha256()
        for name in sorted(self.hashes):
            digest.update(f"{name}\0{self.hashes[name]}\0".encode())
        return digest.hexdigest()


def decode(data: bytes, name: str, path: Path | None = None) -> SourceFile:
    """Bytes -> SourceFile; non-UTF-8 or binary content is a located diagnostic."""
    nul = data.find(b"\x00")
    try:
        text = data.decode("utf-8")
        bad = None
    except UnicodeDecodeError as exc:
        bad = exc.start
        text = data.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    source = SourceFile(name, text, path)
    quoted = SourceMap()
    quoted.add(source)
    if nul >= 0 and (bad is None or nul < bad):
        offset = len(data[:nul].decode("utf-8", errors="replace"))
        raise DiagnosticError([error(
            codes.BAD_ENCODING,
            "file contains a NUL byte: it looks like a binary file, not a spec",
            source.span(offset, offset + 1),
            "NUL byte here",
            help="give the `.nn` text file; checkpoints and ONNX models are read by other commands",
        )], quoted) from None
    if bad is not None:
        offset = len(data[:bad].decode("utf-8", errors="replace"))
        raise DiagnosticError([error(
            codes.BAD_ENCODING,
            f"file is not valid UTF-8 (byte 0x{data[bad]:02x} at offset {bad})",
            source.span(offset, offset + 1),
            "invalid byte",
            help="save the file as UTF-8",
        )], quoted)
    return source


def parse_source(source: SourceFile) -> ast.Module:
    return parse_module(source)



_SURROGATE = re.compile("[\ud800-\udfff]")


def load_text(text: str, name: str = "<string>") -> Loaded:
    """Parse a spec given as text; imports are not allowed (there is no folder to resolve)."""
    sources = SourceMap()
    source = sources.add(SourceFile(name, text))
    lone = _SURROGATE.search(text)
    if lone is not None:  # a str can hold what no file can: it has no UTF-8 form to hash or save
        raise DiagnosticError([error(
            codes.BAD_ENCODING, f"text contains a lone surrogate (U+{ord(lone.group()):04X}), which is not UTF-8",
            source.span(lone.start(), lone.end()), "not a character",
            help="the text was probably decoded with errors='surrogateescape'; decode it as UTF-8",
        )], sources)
    try:
        module = parse_source(source)
    except DiagnosticError as exc:
        raise DiagnosticError(exc.diagnostics, sources.merge(exc.sources)) from None
    loaded = Loaded(module, sources, [module], {name: _sha(text.encode())})
    diags = [
        error(codes.IMPORT_NOT_FOUND, "imports need a spec file on disk", imp.span,
              help="load the spec with `nnspec.load(path)`")
        for imp in module.imports
    ]
    diags += _collect_definitions(loaded)
    if diags:
        _raise(diags, sources)
    return loaded


def load_file(path: str | os.PathLike[str], display: str | None = None) -> Loaded:
    """Parse a file and, depth first, every file it imports."""
    path = Path(path)
    display = display or os.fspath(path)
    sources = SourceMap()
    root_dir = path.resolve().parent
    try:
        root_source = _read(path, display, None)
        sources.add(root_source)
        root = parse_source(root_source)
    except DiagnosticError as exc:
        raise DiagnosticError(exc.diagnostics, sources.merge(exc.sources)) from None
    loaded = Loaded(root, sources, [], {display: _sha(root_source.text.encode())})
    diags: list[Diagnostic] = []
    _load_imports(root, path.resolve(), display, root_dir, loaded, [path.resolve()], {path.resolve()}, diags)
    loaded.modules.insert(0, root)
    diags += _collect_definitions(loaded)
    if diags:
        _raise(diags, sources)
    return loaded


def _raise(diags: list[Diagnostic], sources: SourceMap):
    raise DiagnosticError(diags, sources)


def _load_imports(module, path, display, root_dir, loaded, stack, seen, diags) -> None:
    for imp in module.imports:
        target = (path.parent / imp.path).resolve()
        shown = os.path.normpath(os.path.join(os.path.dirname(display), imp.path))
        if not _inside(target, root_dir):
            diags.append(error(
                codes.IMPORT_OUTSIDE, f"import of `{imp.path}` leaves the project folder", imp.span,
                "outside the folder of the compiled file",
                notes=[f"imports must stay inside {os.path.dirname(display) or '.'}/"],
                help="copy the blocks into the project folder",
            ))
            continue
        if target in stack:
            names = {p: os.path.relpath(p, root_dir) for p in stack + [target]}
            cycle = " -> ".join(names[p] for p in stack[stack.index(target):] + [target])
            diags.append(error(codes.IMPORT_CYCLE, "import cycle", imp.span, "imported again here",
                               notes=[cycle], help="move the shared blocks into a file both import"))
            continue
        if target in seen:
            continue
        seen.add(target)
        try:
            source = _read(target, shown, imp)
            loaded.sources.add(source)
            child = parse_source(source)
        except DiagnosticError as exc:
            loaded.sources.merge(exc.sources)
            diags.extend(exc.diagnostics)
            continue
        loaded.hashes[shown] = _sha(source.text.encode())
        _load_imports(child, target, shown, root_dir, loaded, stack + [target], seen, diags)
        loaded.modules.append(child)


def _read(path: Path, display: str, imp: ast.Import | None) -> SourceFile:
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        span = imp.span if imp is not None else None
        code = codes.IMPORT_NOT_FOUND if imp is not None else codes.UNREADABLE
        raise DiagnosticError([error(code, f"cannot read `{display}`: {reason.lower()}", span,
                                     "imported here" if imp else "")]) from None
    return decode(data, display, path)


def _inside(target: Path, root: Path) -> bool:
    try:
        target.relative_to(root)
        return True
    except ValueError:
        return False


def _collect_definitions(loaded: Loaded) -> list[Diagnostic]:
    diags = []
    for module in loaded.modules:
        for definition in module.definitions:
            first = loaded.definitions.get(definition.name)
            if first is not None:
                diags.append(error(
                    codes.DUPLICATE, f"`{definition.name}` is defined twice", definition.name_span,
                    "defined again here", secondary=[(first.name_span, "first defined here")],
                    help="rename one of them",
                ))
                continue
            loaded.definitions[definition.name] = definition
    return diags


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
