"""One diagnostic type, rendered once, like a good compiler.

    error[E2101]: conv output size is not an integer
      --> examples/bad.nn:4:10
       |
     4 |       -> conv(16, 4, stride=3)
       |          ^^^^^^^^^^^^^^^^^^^^^ input [6, 32, 32]
       = note: (N + 2P - F) / S + 1 = (32 + 0 - 4) / 3 + 1 = 10.33
       = help: padding=1 gives 11 exactly; or set `rounding floor` to accept 10
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .codes import CODES
from .source import SourceMap, Span

Severity = Literal["error", "warning"]


class Label(BaseModel):
    """A span with a short message; the primary label gets carets, secondary ones dashes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    span: Span
    message: str = ""
    primary: bool = True


class Diagnostic(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    severity: Severity = "error"
    code: str
    message: str
    labels: tuple[Label, ...] = ()
    notes: tuple[str, ...] = ()
    help: str | None = None

    @property
    def span(self) -> Span | None:
        for label in self.labels:
            if label.primary:
                return label.span
        return self.labels[0].span if self.labels else None

    def render(self, sources: SourceMap | None = None) -> str:
        return render(self, sources)


class DiagnosticError(Exception):
    """Raised when a stage cannot go on; carries every diagnostic collected so far."""

    def __init__(self, diagnostics: Sequence[Diagnostic], sources: SourceMap | None = None):
        self.diagnostics = tuple(diagnostics)
        self.sources = sources
        super().__init__("\n".join(d.message for d in self.diagnostics))

    def render(self) -> str:
        return render_all(self.diagnostics, self.sources)


def error(
    code: str,
    message: str,
    span: Span | None = None,
    label: str = "",
    *,
    notes: Iterable[str] = (),
    help: str | None = None,
    secondary: Iterable[tuple[Span, str]] = (),
    severity: Severity = "error",
) -> Diagnostic:
    """Build a diagnostic; the code must be registered in :mod:`nnspec.spec.codes`."""
    if code not in CODES:
        raise KeyError(f"unregistered diagnostic code {code}")
    labels = []
    if span is not None:
        labels.append(Label(span=span, message=label, primary=True))
    labels.extend(Label(span=s, message=m, primary=False) for s, m in secondary)
    return Diagnostic(
        severity=severity, code=code, message=message, labels=tuple(labels), notes=tuple(notes), help=help
    )


def warning(code: str, message: str, span: Span | None = None, label: str = "", **kw) -> Diagnostic:
    return error(code, message, span, label, severity="warning", **kw)


def render(diag: Diagnostic, sources: SourceMap | None = None) -> str:
    """Render as text: header, location, quoted lines with carets, notes, help."""
    out = [f"{diag.severity}[{diag.code}]: {diag.message}"]
    primary = diag.span
    quoted = []  # (line number, line text, [(col0, width, char, message)])
    if primary is not None:
        out_loc = f"{primary.file}:{primary.line}:{primary.col}"
        by_line: dict[tuple[str, int], list[tuple[int, int, str, str]]] = {}
        order: list[tuple[str, int]] = []
        for label in sorted(diag.labels, key=lambda lb: (not lb.primary, lb.span.start)):
            span = label.span
            source = sources.get(span.file) if sources else None
            if source is None:
                continue
            text = source.line_text(span.line)
            last_col = len(text) + 1 if span.end_line > span.line else span.end_col
            width = max(1, last_col - span.col)
            key = (span.file, span.line)
            if key not in by_line:
                by_line[key] = []
                order.append(key)
            by_line[key].append((span.col - 1, width, "^" if label.primary else "-", label.message))
        for key in sorted(order, key=lambda k: (k[0] != primary.file, k[0], k[1])):
            source = sources.get(key[0]) if sources else None
            assert source is not None
            quoted.append((key[0], key[1], source.line_text(key[1]), by_line[key]))
        gutter = max((len(str(q[1])) for q in quoted), default=len(str(primary.line)))
        pad = " " * gutter
        out.append(f"{pad}--> {out_loc}")
        if quoted:
            out.append(f"{pad} |")
        current_file = primary.file
        for file, line_no, text, marks in quoted:
            if file != current_file:
                out.append(f"{pad}::: {file}:{line_no}")
                current_file = file
            expanded = printable(text)
            out.append(f"{str(line_no).rjust(gutter)} | {expanded}".rstrip())
            for col0, width, char, message in sorted(marks):
                underline = " " * col0 + char * width
                out.append(f"{pad} | {underline} {message}".rstrip())
    else:
        pad = " "
    for note in diag.notes:
        out.append(f"{pad} = note: {note}")
    if diag.help:
        out.append(f"{pad} = help: {diag.help}")
    return "\n".join(out)


def printable(text: str) -> str:
    """One visible character per character, so carets stay aligned: tabs become spaces and
    control characters their Unicode control pictures (U+2400 block)."""
    return "".join(
        " " if ch == "\t" else chr(0x2400 + ord(ch)) if ord(ch) < 0x20 else "\u2421" if ord(ch) == 0x7F else ch
        for ch in text
    )


def render_all(diagnostics: Iterable[Diagnostic], sources: SourceMap | None = None) -> str:
    return "\n\n".join(render(d, sources) for d in diagnostics)


def summary_line(diagnostics: Sequence[Diagnostic]) -> str:
    errors = sum(d.severity == "error" for d in diagnostics)
    warnings = len(diagnostics) - errors
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return ", ".join(parts)
