"""Character-level text: the facts of `data text("file.txt", context=128, stride=...)` that the
recipe checks need before training and the runtime shares (runtime/data/sources.py load_text).

Pure Python (no numpy): `nnspec check` reads the file to know the vocabulary size and the
number of windows. The vocabulary is the sorted set of the file's characters (Unicode code
points of its UTF-8 text, sorted by code point); id k is the k-th of them. A sample is the
window x = ids[i : i + context] with the next-token targets y = ids[i + 1 : i + context + 1],
for i = 0, stride, 2·stride, ... while i + context + 1 <= n (n characters): there are
⌊(n − context − 1) / stride⌋ + 1 windows, and stride = context (the default) makes them
non-overlapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class TextDataError(ValueError):
    """The file cannot be a text source: ``message`` and where (``file.txt: byte 17``)."""

    def __init__(self, message: str, location: str, help: str | None = None):
        super().__init__(message)
        self.message, self.location, self.help = message, location, help


@dataclass(frozen=True)
class TextFacts:
    """What the recipe checks need: the vocabulary and the size of the data."""

    vocab: tuple[str, ...]
    characters: int
    windows: int


def decode(raw: bytes, name: str) -> str:
    """The file's text (UTF-8, a leading byte-order mark dropped); a TextDataError naming the
    first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start:exc.start + 1].hex()
        raise TextDataError(f"the file is not UTF-8 text: byte 0x{bad} at offset {exc.start} "
                            f"({exc.reason})", f"{name}: byte {exc.start}",
                            "save the file as UTF-8") from None


def vocabulary(text: str) -> tuple[str, ...]:
    """The sorted set of the characters of ``text`` (by code point)."""
    return tuple(sorted(set(text)))


def window_count(characters: int, context: int, stride: int) -> int:
    """⌊(n − context − 1) / stride⌋ + 1 windows of context + 1 characters, 0 if none fits."""
    if characters < context + 1:
        return 0
    return (characters - context - 1) // stride + 1


def check_length(characters: int, context: int, name: str) -> None:
    if characters < context + 1:
        raise TextDataError(f"the file holds {characters} characters, fewer than context + 1 = "
                            f"{context + 1} (one window and its next-token target)", name,
                            f"use context <= {max(characters - 1, 0)}, or a longer file")


def read_facts(path: str | Path, context: int, stride: int | None) -> TextFacts:
    """The vocabulary, characters and windows of a text file (TextDataError if it is not
    UTF-8 or too short; OSError if it cannot be read)."""
    name = str(path)
    text = decode(Path(path).read_bytes(), name)
    check_length(len(text), context, name)
    return TextFacts(vocabulary(text), len(text), window_count(len(text), context,
                                                               stride or context))
