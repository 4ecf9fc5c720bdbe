"""Source files and spans: byte offsets into a text, turned into line:col for people."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class Span(BaseModel):
    """A half-open character range ``[start, end)`` of one source file.

    Lines and columns are 1-based, as editors show them. Spans are plain data so they
    travel inside the IR and survive a JSON round trip.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str
    start: int
    end: int
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


_FIELDS = set(Span.model_fields)  # shared: a frozen model's field set never changes
_new = object.__new__
_set = object.__setattr__


def _span(file: str, start: int, end: int, line: int, col: int, end_line: int, end_col: int) -> Span:
    """A Span from values known to be valid, without pydantic's validation (a parser makes
    thousands; ``Span.model_construct`` costs as much as validating)."""
    span = _new(Span)
    _set(span, "__dict__", {"file": file, "start": start, "end": end, "line": line, "col": col,
                            "end_line": end_line, "end_col": end_col})
    _set(span, "__pydantic_fields_set__", _FIELDS)
    _set(span, "__pydantic_extra__", None)
    _set(span, "__pydantic_private__", None)
    return span


@dataclass
class SourceFile:
    """The decoded text of one spec file and a line index to locate offsets."""

    name: str  # as shown to the user: the path given on the command line or relative to it
    text: str
    path: Path | None = None
    _line_starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        starts = [0]
        find = self.text.find
        i = find("\n")
        while i >= 0:
            starts.append(i + 1)
            i = find("\n", i + 1)
        self._line_starts = starts

    def location(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self._line_starts, offset) - 1
        return line + 1, offset - self._line_starts[line] + 1

    def span(self, start: int, end: int) -> Span:
        if end < start:
            end = start
        starts = self._line_starts
        size = len(self.text)
        first = start if 0 <= start <= size else (0 if start < 0 else size)
        line = bisect.bisect_right(starts, first)
        last = end if 0 <= end <= size else (0 if end < 0 else size)
        if line == len(starts) or last < starts[line]:  # ends on the line it starts on
            end_line = line
        else:
            end_line = bisect.bisect_right(starts, last)
        return _span(self.name, start, end, line, first - starts[line - 1] + 1,
                     end_line, last - starts[end_line - 1] + 1)

    def token_span(self, start: int, end: int, line: int, col: int, end_line: int, end_col: int) -> Span:
        """The span of a token whose 1-based line and column the lexer already counted."""
        return _span(self.name, start, end, line, col, end_line, end_col)

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its newline."""
        if line < 1 or line > len(self._line_starts):
            return ""
        start = self._line_starts[line - 1]
        stop = self.text.find("\n", start)
        return self.text[start : stop if stop >= 0 else len(self.text)].rstrip("\r")

    @property
    def line_count(self) -> int:
        return len(self._line_starts)


class SourceMap:
    """Every file a compilation read, by display name, so diagnostics can quote them."""

    def __init__(self) -> None:
        self._files: dict[str, SourceFile] = {}

    def add(self, source: SourceFile) -> SourceFile:
        self._files[source.name] = source
        return source

    def get(self, name: str) -> SourceFile | None:
        return self._files.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._files

    def merge(self, other: SourceMap | None) -> SourceMap:
        if other is not None:
            self._files.update(other._files)
        return self
