"""Text -> lark tree, with lark's errors translated into diagnostics a user can read."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.lark import PostLex

from . import codes
from .diagnostics import Diagnostic, DiagnosticError, error
from .source import SourceFile

MAX_DEPTH = 100
_OPEN = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
_CLOSE = {v: k for k, v in _OPEN.items()}

# What a terminal is called in an error message; string terminals show their text.
_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "ARROW": "`->`",
    "_NL": "a new line",
    "$END": "the end of the file",
    "COMPARE_OP": "a comparison",
}


class _TooDeep(Exception):
    def __init__(self, token: Token):
        self.token = token


class _Brackets(PostLex):
    """Post-lexer: drops newlines inside ( ) and [ ], and bounds the nesting depth.

    The open brackets of the current parse stay on ``stack`` so that an unexpected end of
    file can name the bracket that was never closed.
    """

    always_accept = ("_NL",)

    def __init__(self) -> None:
        self.stack: list[Token] = []

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        self.stack = []
        for token in stream:
            if token.type in _OPEN:
                self.stack.append(token)
                if len(self.stack) > MAX_DEPTH:
                    raise _TooDeep(token)
            elif token.type in _CLOSE and self.stack and self.stack[-1].type == _CLOSE[token.type]:
                self.stack.pop()
            if token.type == "_NL" and self.stack and self.stack[-1].type in ("LPAR", "LSQB"):
                continue
            yield token


_BRACKETS = _Brackets()


@lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text("utf-8")
    return Lark(grammar, parser="lalr", lexer="contextual", postlex=_BRACKETS,
                propagate_positions=True, maybe_placeholders=True)


def parse_text(source: SourceFile) -> Tree:
    """Parse one file into a lark tree, or raise DiagnosticError with the first syntax error."""
    lark = _lark()
    text = source.text if source.text.endswith("\n") else source.text + "\n"
    try:
        return lark.parse(text)
    except _TooDeep as exc:
        raise DiagnosticError([error(
            codes.TOO_DEEP,
            f"brackets nested more than {MAX_DEPTH} levels deep",
            source.span(exc.token.start_pos, exc.token.end_pos),
            "this bracket is too deep",
            help="split the expression with named values (`name = chain`)",
        )]) from None
    except UnexpectedInput as exc:
        raise DiagnosticError([_translate(exc, source, _BRACKETS.stack)]) from None


_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "DSLASH", "PERCENT", "POW", "COMPARE_OP", "AND", "OR"}


def _accepted(exc: UnexpectedInput) -> set[str]:
    """The terminals the parser would really take here (lark's `expected` over-approximates)."""
    interactive = getattr(exc, "interactive_parser", None)
    if interactive is not None:
        try:
            return set(interactive.accepts())
        except UnexpectedInput:
            pass
    return set(getattr(exc, "expected", ()) or ())


def _describe(terminal: str) -> str:
    if terminal in _WORDS:
        return _WORDS[terminal]
    for term in _lark().terminals:
        if term.name == terminal:
            if term.pattern.type == "str":
                return f"`{term.pattern.value}`"
            return terminal.lower().replace("_", " ")
    return terminal.lower()


def _expected_words(expected: set[str]) -> str:
    operators = expected & _OPERATORS
    words = sorted({_describe(t) for t in expected - _OPERATORS if not t.startswith("__")})
    if operators:
        words.append("an operator")
    if len(words) > 8:
        words = words[:8] + ["…"]
    if len(words) <= 1:
        return "".join(words) or "something else"
    return ", ".join(words[:-1]) + " or " + words[-1]


def _translate(exc: UnexpectedInput, source: SourceFile, open_brackets: list[Token]) -> Diagnostic:
    if isinstance(exc, UnexpectedCharacters):
        ch = source.text[exc.pos_in_stream] if exc.pos_in_stream < len(source.text) else ""
        return error(
            codes.SYNTAX,
            f"unexpected character `{ch}`" if ch.isprintable() else f"unexpected control character U+{ord(ch):04X}",
            source.span(exc.pos_in_stream, exc.pos_in_stream + 1),
            "not part of the language",
            help=_help_for_char(ch),
        )
    token = getattr(exc, "token", None)
    expected = _accepted(exc)
    at_end = isinstance(exc, UnexpectedEOF) or token is None or token.type == "$END"
    if at_end:
        end = len(source.text)
        unclosed = open_brackets[-1] if open_brackets else None
        if unclosed is not None:
            span = source.span(unclosed.start_pos, unclosed.end_pos)
            return error(
                codes.UNEXPECTED_EOF,
                f"unexpected end of file: `{unclosed.value}` is never closed",
                span,
                "opened here",
                help=f"add `{_closing(unclosed.value)}`",
            )
        return error(
            codes.UNEXPECTED_EOF,
            "unexpected end of file",
            source.span(max(0, end - 1), end),
            f"expected {_expected_words(expected)}",
        )
    assert isinstance(exc, UnexpectedToken)
    start, stop = token.start_pos, token.end_pos
    if token.type in ("_NL", "ARROW") and "\n" in token.value:
        stop = start + token.value.index("\n") if token.value.index("\n") else start + 1
        stop = max(stop, start + 1)
    found = _found(token)
    keyword = _keyword_before(source, start)
    if keyword and token.type in ("EQUAL", "ARROW", "COLON"):
        kstart = source.text.rfind(keyword, 0, start)
        return error(
            codes.SYNTAX,
            f"`{keyword}` is a keyword and cannot name a value",
            source.span(kstart, kstart + len(keyword)),
            "a keyword",
            help=f"choose another name, e.g. `{keyword}_1`",
        )
    help_text = None
    if ("ARROW" in expected or "_NL" in expected) and token.type in ("NAME", "NUMBER", "LPAR"):
        help_text = "join chain steps with `->`, or start a new statement on a new line"
    elif token.type == "_NL" and open_brackets:
        help_text = None
    elif token.type == "EQUAL" and "COMPARE_OP" in expected:
        help_text = "compare with `==`"
    secondary = []
    if token.type in _CLOSE:
        top = open_brackets[-1] if open_brackets else None
        if top is None:
            help_text = "this bracket has no matching opening bracket"
        elif _OPEN[top.type] != token.type:
            line, col = source.location(top.start_pos)
            secondary.append((source.span(top.start_pos, top.end_pos), f"this `{top.value}` is never closed"))
            help_text = f"add `{_closing(top.value)}` to close the `{top.value}` opened at {line}:{col}"
    return error(
        codes.SYNTAX,
        f"unexpected {found}",
        source.span(start, stop),
        f"expected {_expected_words(expected)}",
        help=help_text,
        secondary=secondary,
    )


KEYWORDS = {"model", "block", "train", "import", "input", "output", "assert", "rounding", "if", "else",
            "and", "or", "not", "true", "false"}


def _keyword_before(source: SourceFile, offset: int) -> str | None:
    """The keyword right before an offset, on the same line (`input = ...`)."""
    line_start = source.text.rfind("\n", 0, offset) + 1
    words = source.text[line_start:offset].split()
    return words[-1] if len(words) == 1 and words[-1] in KEYWORDS else None


def _found(token: Token) -> str:
    if token.type == "NAME":
        return f"name `{token.value}`"
    if token.type == "NUMBER":
        return f"number `{token.value}`"
    if token.type == "STRING":
        return f"string {token.value}"
    if token.type == "_NL":
        return "end of line"
    if token.type == "ARROW":
        return "`->`"
    return f"`{token.value}`"


def _closing(opening: str) -> str:
    return {"(": ")", "[": "]", "{": "}"}.get(opening, "")


def _help_for_char(ch: str) -> str | None:
    if ch in "'`":
        return 'strings use double quotes: "file.nn"'
    if ch == ";":
        return "statements end at the end of a line; no `;` is needed"
    if ch in "→⟶":
        return "an arrow is written `->`"
    return None
