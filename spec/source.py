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


@dataclass
class SourceFile:
    """The decoded text of one spec file and a line index to locate offsets."""

    name: str  # as shown to the user: the path given on the command line or relative to it
    text: str
    path: Path | None = None
    _line_starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        starts = [0]
        for i, ch in enumerate(self.text):
            if ch == "\n":
                starts.append(i + 1)
        self._line_starts = starts

    def location(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self._line_starts, offset) - 1
        return line + 1, offset - self._line_starts[line] + 1

    def span(self, start: int, end: int) -> Span:
        end = max(start, end)
        line, col = self.location(start)
        end_line, end_col = self.location(end)
        return Span(
            file=self.name, start=start, end=end, line=line, col=col, end_line=end_line, end_col=end_col
        )

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
