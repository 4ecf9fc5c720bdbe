"""Text -> AST: the grammar's LALR parser, with the AST built during the parse (build_ast.py),
and lark's errors translated into diagnostics a user can read.

Valid text takes a fast path (`_Fast`): lark's own tables and contextual lexer, recompiled
into a tight loop. Anything it does not accept is parsed again by lark, whose exception is
the one translated, so syntax errors are lark's to the letter.

Neither is built from the grammar at start-up (lark takes about 140 ms to): both come from
`grammar_tables.json` beside the grammar, written from one parser built from the grammar:

- `fast`: the fast path's tables (`fast_tables`), plain JSON and all that valid text needs: for
  it no lark object is made and lark is not even imported (that alone took about 15 ms);
- `lark`: lark's own serialisation of the parser (as its standalone generator writes it), in a
  tagged JSON that keeps tuples and non-string keys, compressed and base64-encoded so that
  reading the file skips it in microseconds: it is decoded, and lark imported, only where the
  fast path gives up;
- `key`: the sha256 of the grammar, the lark version and the parser options it was made with.
  Where any of them differs, or the file is missing or damaged, what it would give is derived
  from the parser built from the grammar, as before: slower, never wrong. After editing the
  grammar or upgrading lark, regenerate it with `python -m nnspec.spec.grammar_tables` and
  commit it.

A user whose lark is not the one the file was made for (an upgrade) pays the build once: the
first run writes tables for that lark into the user's cache (`$XDG_CACHE_HOME/nnspec/`, else
`~/.cache/nnspec/`; a file per key, replaced atomically), which later runs read as they read
the committed file. Where the cache cannot be written, every run builds from the grammar.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import tempfile
import zlib
from collections.abc import Iterator
from copy import copy
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ast, codes
from .build_ast import Builder, Tok, callbacks, plans
from .diagnostics import Diagnostic, DiagnosticError, error
from .source import SourceFile

if TYPE_CHECKING:
    from lark import Lark, Token
    from lark.exceptions import UnexpectedInput
    from lark.grammar import Rule

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


class _Brackets:
    """Post-lexer: drops newlines inside ( ) and [ ], and bounds the nesting depth.

    The open brackets of the current parse stay on ``stack`` so that an unexpected end of
    file can name the bracket that was never closed. It follows lark's `PostLex` protocol
    (`process`, `always_accept`) without deriving from it, which lark does not ask for: this
    module imports lark only on the error path.
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


GRAMMAR = Path(__file__).parent / "grammar.lark"
TABLES = Path(__file__).parent / "grammar_tables.json"
# Positions are not propagated: the AST builder locates nodes itself.
_OPTIONS = {"parser": "lalr", "lexer": "contextual", "maybe_placeholders": True}
_TABLES_FORMAT = 2  # the file's layout (`write_tables`, `fast_tables`): bump it when it changes


@lru_cache(maxsize=1)
def _lark() -> Lark:
    """lark's parser built from the grammar: the fallback for stale tables, what the tables are
    written from, and what a test that needs lark's `Grammar` asks for."""
    from lark import Lark

    return Lark(GRAMMAR.read_text("utf-8"), postlex=_BRACKETS, **_OPTIONS)


@lru_cache(maxsize=1)
def _parser() -> Lark:
    """lark's parser as this module runs it where the fast path gives up: from the tables when
    they are current."""
    path = _tables_path()
    loaded = load_tables(path) if path is not None else None
    return loaded if loaded is not None else _lark()


@lru_cache(maxsize=1)
def _fast() -> _Fast:
    """The fast path: from the tables when they are current, else from lark's parser."""
    path = _tables_path()
    tables = _current_tables(path) if path is not None else None
    if tables is not None:
        try:
            return _Fast(tables["fast"])
        except Exception:  # damaged: only a cache miss, as for lark's part
            pass
    return _Fast(fast_tables(_parser()))


@lru_cache(maxsize=1)
def _tables_path() -> Path | None:
    """The tables to read: the committed file when it is current, else the user's cached copy
    for this grammar and lark, written now if there is none; None where neither is current
    and the cache cannot be written."""
    if _current_tables(TABLES) is not None:
        return TABLES
    cached = cached_tables_path()
    if _current_tables(cached) is None:
        try:
            write_tables(cached)
        except OSError:  # a read-only home, a full disk: build from the grammar every run
            return None
    return cached if _current_tables(cached) is not None else None


def cached_tables_path() -> Path:
    """Where the tables for the installed lark and this grammar are cached for this user."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(json.dumps(_tables_key(), sort_keys=True).encode()).hexdigest()
    return Path(root) / "nnspec" / f"grammar_tables-{digest[:16]}.json"


def _lark_version() -> str | None:
    """The version of the lark that `import lark` would load, read from its source without
    running it (valid text does not import lark). None where the source does not state it as
    a string, as lark's does (`__version__: str = "1.3.1"`): then the tables are not used."""
    spec = importlib.util.find_spec("lark")
    if spec is None or spec.origin is None:
        return None
    try:
        source = Path(spec.origin).read_text("utf-8")
    except OSError:
        return None
    for line in source.splitlines():
        if line.startswith("__version__"):
            value = line.partition("=")[2].strip()
            return value[1:-1] if len(value) > 2 and value[0] == value[-1] == '"' else None
    return None


def _tables_key() -> dict[str, Any]:
    """What the tables depend on; they are used only where it equals the key they record."""
    grammar = GRAMMAR.read_text("utf-8")
    return {
        "format": _TABLES_FORMAT,
        "grammar_sha256": hashlib.sha256(grammar.encode("utf-8")).hexdigest(),
        "lark_version": _lark_version(),
        "options": _OPTIONS,
    }


def _current_tables(path: Path) -> dict[str, Any] | None:
    """The tables at `path`, lark's part still a string; None where the file is missing,
    damaged or written for another grammar, lark version or options."""
    try:
        with path.open(encoding="utf-8") as file:
            tables = json.load(file)
        return tables if tables["key"] == _tables_key() else None
    except Exception:  # a damaged file is only a cache miss, whatever part of it is broken
        return None


def load_tables(path: Path) -> Lark | None:
    """lark's parser loaded from the tables at `path`, with the post-lexer attached; None where
    the file is missing, damaged or written for another grammar, lark version or options."""
    from lark import Lark

    tables = _current_tables(path)
    if tables is None:
        return None
    try:
        packed = zlib.decompress(base64.b64decode(tables["lark"], validate=True))
        serialised = json.loads(packed, object_hook=_decode)
        loaded = Lark._load_from_dict(serialised["data"], serialised["memo"], postlex=_BRACKETS)
    except Exception:  # a damaged file is only a cache miss, whatever part of it is broken
        return None
    for terminal in loaded.terminals:  # lark writes a pattern's frozenset of flags as a list
        terminal.pattern.flags = frozenset(terminal.pattern.flags)
    return loaded


def write_tables(path: Path) -> None:
    """Write the tables of the parser built from the grammar: the fast path's, and lark's own
    serialisation. The options a loaded parser is given again (the post-lexer, an object) are
    left out of lark's, as lark's own cache does."""
    from lark.grammar import Rule
    from lark.lark import _LOAD_ALLOWED_OPTIONS
    from lark.lexer import TerminalDef

    key = _tables_key()
    if key["lark_version"] is None:
        raise RuntimeError("lark's source does not state its version: tables written now "
                           "would never be used")
    lark = _lark()
    data, memo = lark.memo_serialize([TerminalDef, Rule])
    data["options"] = {k: v for k, v in data["options"].items() if k not in _LOAD_ALLOWED_OPTIONS}
    serialised = json.dumps(_encode({"memo": memo, "data": data}), separators=(",", ":"),
                            allow_nan=False)
    packed = base64.b64encode(zlib.compress(serialised.encode("utf-8"), 9)).decode("ascii")
    tables = {"key": key, "fast": fast_tables(lark), "lark": packed}
    text = json.dumps(tables, separators=(",", ":"), allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    # replaced atomically: a reader (another process at its first run) sees all or nothing
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fast_tables(lark: Lark) -> dict[str, Any]:
    """What the fast path needs of lark's parser, as plain JSON data. The tables file holds
    it, and where the file is not current it is derived at start-up, by this one function, so
    that the two cannot differ (but in the numbers lark gives its states, which follow string
    hashing). Its items:

    - `start`, `end`: the state a parse starts in and the one it accepts in;
    - `actions`: per state, terminal -> the state to shift to (>= 0), or ~ the rule to reduce by;
    - `gotos`: per state, rule name -> the state after a reduction to it;
    - `rules`: what `build_ast.plans` reads of each rule (`_plain_rule`), in lark's order;
    - `terminals`: [name, regular expression (flags included), flags], in the order lark's lexer
      tries them;
    - `keywords`: for each terminal given by a regular expression, the texts it matches that are
      terminals of their own ("model" for NAME), text -> that terminal (lark's `_create_unless`);
    - `ignore`: the terminals skipped between tokens.
    """
    conf = lark.parse_interactive("").parser_state.parse_conf
    table = conf.parse_table.states
    rules = list(lark.rules)
    index = {id(rule): i for i, rule in enumerate(rules)}
    by_rule = {rule: i for i, rule in enumerate(rules)}
    count = max(table) + 1
    actions: list[dict[str, int]] = [{} for _ in range(count)]
    gotos: list[dict[str, int]] = [{} for _ in range(count)]
    for state, row in table.items():
        for key, (action, arg) in row.items():
            if action.name == "Shift":
                (actions if key.isupper() else gotos)[state][str(key)] = arg
            else:
                rule = index.get(id(arg))
                actions[state][str(key)] = ~(rule if rule is not None else by_rule[arg])
    terminals = sorted(lark.terminals, key=lambda t: (
        -t.priority, -t.pattern.max_width, -len(t.pattern.value), t.name))
    keywords: dict[str, dict[str, str]] = {}
    for regex in terminals:
        if regex.pattern.type != "re":
            continue
        for word in terminals:
            if word.pattern.type != "str" or word.priority != regex.priority:
                continue
            value = word.pattern.value
            found = re.match(regex.pattern.to_regexp(), value)
            if found and found.group(0) == value:
                keywords.setdefault(regex.name, {})[value] = word.name
    return {
        "start": conf.start_state,
        "end": conf.end_state,
        "actions": actions,
        "gotos": gotos,
        "rules": [_plain_rule(rule) for rule in rules],
        "terminals": [[t.name, t.pattern.to_regexp(), sorted(t.pattern.flags)] for t in terminals],
        "keywords": keywords,
        "ignore": sorted(lark.lexer_conf.ignore),
    }


def _plain_rule(rule: Rule) -> dict[str, Any]:
    """A rule as `build_ast.plans` reads it: its name, alias and options, and per child its
    name, whether it is a terminal and whether the tree leaves it out ("model", brackets)."""
    return {
        "origin": str(rule.origin.name),
        "alias": None if rule.alias is None else str(rule.alias),
        "expansion": [[str(symbol.name), symbol.is_term, symbol.is_term and symbol.filter_out]
                      for symbol in rule.expansion],
        "empty_indices": list(rule.options.empty_indices),
        "expand1": bool(rule.options.expand1),
    }


def _encode(value: Any) -> Any:
    """lark's serialisation as JSON that decodes to an equal value: a tuple becomes
    `{"$tuple": [...]}` and a dict with a key that is not a string, or that starts with `$`,
    `{"$dict": [[key, value], ...]}`. Anything JSON has no form for is refused."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encode(v) for k, v in value.items()}
        return {"$dict": [[_encode(k), _encode(v)] for k, v in value.items()]}
    raise TypeError(f"the grammar tables cannot hold a {type(value).__name__}: {value!r}")


def _decode(obj: dict[str, Any]) -> Any:
    """`json.load`'s object hook, undoing `_encode` (inner objects are decoded first)."""
    if len(obj) == 1:
        if "$tuple" in obj:
            return tuple(obj["$tuple"])
        if "$dict" in obj:
            return dict(obj["$dict"])
    return obj


def parse_module(source: SourceFile) -> ast.Module:
    """Parse one file into its AST, or raise DiagnosticError with the first error."""
    text = source.text if source.text.endswith("\n") else source.text + "\n"
    fast = _fast()
    builder = Builder(source)
    if fast.parse(text, callbacks(fast.plans, builder)):
        return builder.finish()
    from lark.exceptions import UnexpectedInput

    builder = Builder(source)
    try:
        _lark_parse(text, fast, callbacks(fast.plans, builder))
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
    return builder.finish()


def _lark_parse(text: str, fast: _Fast, rule_callbacks: list) -> None:
    """lark's own LALR loop and contextual lexer, with the builder's callbacks; raises lark's
    exceptions (with the interactive parser that `_accepted` asks). A callback goes to the rule
    equal to its own (same name, same children): lark's parser and the fast path's tables need
    not come from the same place (a file with one of them damaged)."""
    lark = _parser()
    parser = lark.parse_interactive(text)
    state = parser.parser_state
    conf = copy(state.parse_conf)
    position = {_rule_key(rule["origin"], [name for name, _, _ in rule["expansion"]]): i
                for i, rule in enumerate(fast.rules)}
    conf.callbacks = {}
    for rule in lark.rules:
        key = _rule_key(rule.origin.name, [symbol.name for symbol in rule.expansion])
        conf.callbacks[rule] = rule_callbacks[position[key]]
    for terminal in lark.terminals:  # lark's tokens become the builder's
        conf.callbacks[terminal.name] = _tok
    state.parse_conf = conf
    parser.resume_parse()


def _rule_key(origin: str, expansion: list[str]) -> tuple[str, ...]:
    """What tells a rule from every other one, as lark's `Rule.__eq__` does."""
    return (str(origin), *map(str, expansion))


def _tok(token: Token) -> Tok:
    return Tok(token.type, token.value, token.start_pos, token.end_pos)


class _Fast:
    """lark's LALR tables and contextual lexer, recompiled for speed: for every parser state,
    one regular expression over the terminals it expects (as lark's ContextualLexer builds
    them), and a parse loop over tables indexed by state that calls the builder's callbacks.
    Built from `fast_tables`; a state's regular expression is compiled the first time a parse
    reaches it, since a small spec meets few of them and compiling all of them takes longer
    than parsing one.

    It accepts what lark accepts, with the same tokens and reductions. It reports no errors:
    where it gives up (a syntax error, brackets nested too deeply) lark parses the text again.
    """

    def __init__(self, tables: dict[str, Any]):
        self.start, self.end = tables["start"], tables["end"]
        self.actions: list[dict[str, int]] = tables["actions"]  # shift: state >= 0; reduce: ~rule
        self.gotos: list[dict[str, int]] = tables["gotos"]
        self.rules: list[dict[str, Any]] = tables["rules"]
        self.plans = plans(self.rules)
        self.sizes = [len(rule["expansion"]) for rule in self.rules]
        self.origins = [rule["origin"] for rule in self.rules]
        self.units = [plan[0] == "unit" for plan in self.plans]
        self.chains: dict[tuple[int, int, str], int] = {}  # (state below, state, terminal) -> state
        self.ignore = frozenset(tables["ignore"])
        self.terminals: list[list[Any]] = tables["terminals"]
        self.keywords: dict[str, dict[str, str]] = tables["keywords"]
        self.flags = {name: frozenset(flags) for name, _, flags in self.terminals}
        self.always = self.ignore | set(_Brackets.always_accept)  # in every state's scanner
        self.scanners: dict[frozenset[str], tuple[Any, dict[str, dict[str, str]]]] = {}
        self.lexers: list[tuple[Any, dict[str, dict[str, str]]] | None] = [None] * len(self.actions)

    def parse(self, text: str, rule_callbacks: list) -> bool:
        """Lex and parse `text`, calling the builder's callbacks; False where lark must parse."""
        lexers, ignore = self.lexers, self.ignore
        actions, gotos, sizes, origins, units = self.actions, self.gotos, self.sizes, self.origins, self.units
        end_state, chains = self.end, self.chains
        states = [self.start]
        values: list[Any] = []
        brackets: list[str] = []  # as `_Brackets` does: newlines inside ( ) and [ ] are dropped
        pos, size = 0, len(text)
        while True:
            if pos < size:
                lexer = lexers[states[-1]]
                if lexer is None:
                    lexer = self.lexer(states[-1])
                match, keywords = lexer
                m = match(text, pos)
                if m is None:
                    return False
                kind = m.lastgroup
                end = m.end()
                if kind in ignore:
                    pos = end
                    continue
                value = m.group()
                if kind in keywords:
                    kind = keywords[kind].get(value, kind)
                if kind in _OPEN:
                    brackets.append(kind)
                    if len(brackets) > MAX_DEPTH:
                        return False
                elif kind in _CLOSE:
                    if brackets and brackets[-1] == _CLOSE[kind]:
                        brackets.pop()
                elif kind == "_NL" and brackets and brackets[-1] != "LBRACE":
                    pos = end
                    continue
                token = Tok(kind, value, pos, end)
                pos = end
            else:
                kind = "$END"
                token = Tok(kind, "", size, size)
            while True:
                action = actions[states[-1]].get(kind)
                if action is None:
                    return False
                if action >= 0:
                    states.append(action)
                    values.append(token)
                    break
                rule = ~action
                if units[rule]:  # `a: b`: the value stays, the state changes
                    key = (states[-2], states[-1], kind)
                    top = chains.get(key)
                    if top is None:  # follow a chain of them (`expr: ifexpr: or_expr: ...`) once
                        below = states[-2]
                        while True:
                            top = gotos[below][origins[rule]]
                            action = actions[top].get(kind)
                            if action is None or action >= 0 or not units[~action]:
                                break
                            rule = ~action
                        chains[key] = top
                    states[-1] = top
                else:
                    count = sizes[rule]
                    if count:
                        raw = values[-count:]
                        del values[-count:]
                        del states[-count:]
                    else:
                        raw = []
                    values.append(rule_callbacks[rule](raw))
                    states.append(gotos[states[-1]][origins[rule]])
                if kind == "$END" and states[-1] == end_state:
                    return True

    def lexer(self, state: int) -> tuple[Any, dict[str, dict[str, str]]]:
        """The scanner of `state`, compiled now if no state that expects the same terminals
        needed it before."""
        terminals = (name for name in self.actions[state] if name in self.flags)  # not $END
        accepts = frozenset(terminals) | self.always
        scanner = self.scanners.get(accepts)
        if scanner is None:
            scanner = self.scanners[accepts] = self._scanner(accepts)
        self.lexers[state] = scanner
        return scanner

    def _scanner(self, accepts: frozenset[str]) -> tuple[Any, dict[str, dict[str, str]]]:
        """One regular expression for a set of terminals, ordered as lark's lexer orders them,
        and the keywords that a name-like terminal's match turns into (lark's `_create_unless`:
        a keyword whose flags the name's pattern has is matched by that pattern alone)."""
        keywords: dict[str, dict[str, str]] = {}
        embedded = set()
        for regex, words in self.keywords.items():
            if regex not in accepts:
                continue
            for value, word in words.items():
                if word in accepts:
                    keywords.setdefault(regex, {})[value] = word
                    if self.flags[word] <= self.flags[regex]:
                        embedded.add(word)
        pattern = "|".join(f"(?P<{name}>{regexp})" for name, regexp, _ in self.terminals
                           if name in accepts and name not in embedded)
        return re.compile(pattern).match, keywords


_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "DSLASH", "PERCENT", "POW", "COMPARE_OP", "AND", "OR"}


def _accepted(exc: UnexpectedInput) -> set[str]:
    """The terminals the parser would really take here (lark's `expected` over-approximates)."""
    from lark.exceptions import UnexpectedInput

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
    for term in _parser().terminals:
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
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

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
    if ("ARROW" in expected and token.type in ("NAME", "NUMBER", "LPAR") and _in_body(exc)
            and open_brackets and open_brackets[-1].type == "LBRACE"):
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


def _in_body(exc: UnexpectedInput) -> bool:
    """Whether the error is inside the body of a model or a block (not at the top level, nor
    in a `train` recipe)."""
    interactive = getattr(exc, "interactive_parser", None)
    stack = interactive.parser_state.value_stack if interactive is not None else ()
    for value in reversed(stack):
        if isinstance(value, Tok) and value.type in ("MODEL", "BLOCK", "TRAIN", "SEARCH"):
            return value.type in ("MODEL", "BLOCK")
    return False


KEYWORDS = {"model", "block", "train", "search", "import", "input", "output", "assert", "rounding", "if", "else",
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
