"""The parser tables committed beside the grammar (`spec/grammar_tables.json`, see parser.py):
they are current; the fast path's tables in them and lark's parser loaded from them parse
exactly as the ones derived from a parser built from the grammar; valid text needs no lark at
all; and a stale or damaged file only costs the time of building the parser again."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lark import Lark
from lark import __version__ as lark_version
from lark.grammar import Rule
from lark.lexer import TerminalDef

from nnspec.spec import ast, parser
from nnspec.spec.build_ast import Builder, callbacks
from nnspec.spec.diagnostics import Diagnostic, DiagnosticError
from nnspec.spec.source import SourceFile

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.nn"))
GOLDEN_CASES = sorted((ROOT / "tests" / "diagnostics").rglob("*.nn"))
SYNTAX_CASES = sorted((ROOT / "tests" / "diagnostics").glob("syntax_*.nn"))
SYNTAX_ERRORS = {
    "unclosed_paren": "model M {\n    input x: [1]\n    x -> conv(3 -> output\n}\n",
    "wrong_closing_bracket": "model M {\n    input x: [1]\n    x -> linear(3]\n}\n",
    "end_of_file_in_body": "model M {\n    input x: [1]\n    x -> output\n",
    "end_of_file_after_keyword": "model",
    "missing_arrow": "model M {\n    input x: [1]\n    x relu\n}\n",
    "keyword_as_name": "model M {\n    input = [1]\n}\n",
    "assign_for_compare": "model M {\n    input x: [1]\n    assert params = 3\n}\n",
    "semicolon": "model M {\n    input x: [1]\n    x -> relu; -> output\n}\n",
    "too_deep": "model M {\n    input x: " + "[" * (parser.MAX_DEPTH + 1) + "\n}\n",
    "train_setting": "train T(M) {\n    epochs 3 4 ,\n}\n",
    "search_axis": "search S {\n    lr in\n}\n",
    "unopened_paren": ")",
}
SYNTAX_TEXTS = {**SYNTAX_ERRORS, **{p.stem: p.read_text("utf-8") for p in SYNTAX_CASES}}
LENET = (ROOT / "examples" / "lenet5.nn").read_text("utf-8")


def _case_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.fixture(scope="module")
def tables() -> dict[str, Any]:
    """The committed tables, as the fast path reads them."""
    current = parser._current_tables(parser.TABLES)
    if current is None:
        pytest.skip("the committed tables are for another lark (see test_tables_are_current)")
    return current


@pytest.fixture(scope="module")
def loaded(tables: dict[str, Any]) -> Lark:
    loaded = parser.load_tables(parser.TABLES)
    assert loaded is not None
    return loaded


@pytest.fixture(scope="module")
def fresh() -> dict[str, Any]:
    """The fast path's tables derived from a parser built from the grammar, as at a start-up
    where the file is not current."""
    return parser.fast_tables(parser._lark())


@pytest.fixture
def fresh_caches(tmp_path_factory, monkeypatch):
    """`_tables_path`, `_parser` and `_fast` cache what the tables gave; a test that points them
    elsewhere starts and ends with empty caches. The user's cache of tables is a place that
    cannot be created (so a stale file falls back to the grammar), unless a test sets it."""
    blocked = tmp_path_factory.mktemp("cache") / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked / "below"))
    for cached in (parser._tables_path, parser._parser, parser._fast):
        cached.cache_clear()
    yield
    for cached in (parser._tables_path, parser._parser, parser._fast):
        cached.cache_clear()


def _parse_with(fast_tables: dict[str, Any], lark: Lark, text: str,
                monkeypatch: pytest.MonkeyPatch) -> ast.Module | Diagnostic:
    """The AST, or the one diagnostic, that `parse_module` gives when its fast path runs on
    `fast_tables` and lark's parser is `lark`."""
    fast = parser._Fast(fast_tables)
    with monkeypatch.context() as patch:
        patch.setattr(parser, "_parser", lambda: lark)
        patch.setattr(parser, "_fast", lambda: fast)
        try:
            return parser.parse_module(SourceFile("t.nn", text))
        except DiagnosticError as exc:
            (diagnostic,) = exc.diagnostics
            return diagnostic


def _canonical(tables: dict[str, Any]) -> dict[str, Any]:
    """The fast path's tables with the states numbered in the order a walk from the start
    state first reaches them (symbols in sorted order): lark's numbers follow string hashing,
    these only the automaton, so that two parsers built from one grammar compare equal."""
    actions, gotos = tables["actions"], tables["gotos"]
    number = {tables["start"]: 0}
    walk = [tables["start"]]
    for state in walk:
        shifts = [target for _, target in sorted(actions[state].items()) if target >= 0]
        for target in shifts + [target for _, target in sorted(gotos[state].items())]:
            if target not in number:
                number[target] = len(number)
                walk.append(target)
    assert len(walk) == len(actions), "a state no parse can reach"
    return {
        **tables,
        "start": 0,
        "end": number[tables["end"]],
        "actions": [{key: number[to] if to >= 0 else to for key, to in actions[state].items()}
                    for state in walk],
        "gotos": [{key: number[to] for key, to in gotos[state].items()} for state in walk],
    }


def test_tables_are_current(fresh_caches):
    """The committed tables were written for this grammar with these options: an edited grammar
    whose tables were not regenerated fails here, whatever lark is installed."""
    with parser.TABLES.open(encoding="utf-8") as file:
        key = json.load(file)["key"]
    grammar = parser.GRAMMAR.read_text("utf-8")
    assert key["grammar_sha256"] == hashlib.sha256(grammar.encode("utf-8")).hexdigest(), (
        "grammar.lark changed: run `python -m nnspec.spec.grammar_tables`")
    assert key["options"] == parser._OPTIONS
    assert key["format"] == parser._TABLES_FORMAT
    # With the lark that wrote them, the tables must load. Another lark (`lark>=1.1,<2` lets a
    # user have a newer one) may serialise differently, so there they must be refused, not
    # misread, and the parser built from the grammar: that is the design, not a failure, and
    # failing here would only ask whoever upgrades lark for a file that saves start-up time.
    if key["lark_version"] == lark_version:
        assert parser._current_tables(parser.TABLES) is not None
        assert parser.load_tables(parser.TABLES) is not None
        assert parser._parser() is not parser._lark()
    else:
        assert parser._current_tables(parser.TABLES) is None
        assert parser.load_tables(parser.TABLES) is None
        assert parser._parser() is parser._lark()


def test_lark_version_is_read_without_importing_lark():
    """The key's lark version comes from lark's source, not from an import of it: it must be
    the version the imported lark states."""
    assert parser._lark_version() == lark_version


def test_encoding_round_trips_lark_serialisation_exactly():
    """JSON has no tuples and only string keys; the tagged encoding gives back equal values of
    the same types (lark's parse table has int keys and (action, argument) tuples)."""
    data, memo = parser._lark().memo_serialize([TerminalDef, Rule])
    data["options"].pop("postlex")
    value = {"data": data, "memo": memo, "edge": {"$tuple": (1, [2, ()]), 3: {"$dict": None}}}
    back = json.loads(json.dumps(parser._encode(value)), object_hook=parser._decode)
    assert back == value
    assert repr(back) == repr(value)  # `==` alone takes (1, 2) for [1, 2]


def test_encoding_refuses_what_json_cannot_hold():
    with pytest.raises(TypeError):
        parser._encode({"postlex": parser._BRACKETS})


def test_loaded_parser_has_the_built_ones_rules_and_terminals(loaded: Lark):
    built = parser._lark()
    assert loaded.rules == built.rules
    assert [(t.name, t.priority, type(t.pattern), vars(t.pattern)) for t in loaded.terminals] == [
        (t.name, t.priority, type(t.pattern), vars(t.pattern)) for t in built.terminals]
    assert loaded.lexer_conf.ignore == built.lexer_conf.ignore
    assert loaded.options.postlex is parser._BRACKETS


def test_fast_tables_are_plain_json(fresh: dict[str, Any]):
    """What is derived at start-up is what the file gives back: the same values, of the same
    types (no tuples, no lark tokens for strings)."""
    back = json.loads(json.dumps(fresh))
    assert back == fresh
    assert repr(back) == repr(fresh)


def test_file_has_the_fast_tables_of_the_grammar(tables: dict[str, Any], fresh: dict[str, Any]):
    """The file's fast tables are those `fast_tables` derives from a parser built from the
    grammar now, but for lark's state numbers: a change of `fast_tables` (or of what lark gives
    it) that was not followed by regenerating the file fails here."""
    assert _canonical(tables["fast"]) == _canonical(fresh)


def test_loaded_parser_gives_the_file_fast_tables(tables: dict[str, Any], loaded: Lark):
    """The two parts of the file describe one parser: where the fast part is damaged, it is
    derived from lark's part, to the same tables."""
    assert parser.fast_tables(loaded) == tables["fast"]


@pytest.mark.parametrize("path", EXAMPLES, ids=_case_id)
def test_examples_parse_the_same(path: Path, tables: dict[str, Any], loaded: Lark,
                                 fresh: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    text = path.read_text("utf-8")
    for fast_tables in (tables["fast"], fresh):  # valid text never needs lark's parser
        fast = parser._Fast(fast_tables)
        assert fast.parse(text + "\n", callbacks(fast.plans, Builder(SourceFile("t.nn", text))))
    module = _parse_with(tables["fast"], loaded, text, monkeypatch)
    assert isinstance(module, ast.Module)
    assert module == _parse_with(fresh, parser._lark(), text, monkeypatch)


@pytest.mark.parametrize("path", GOLDEN_CASES, ids=_case_id)
def test_golden_cases_parse_the_same(path: Path, tables: dict[str, Any], loaded: Lark,
                                     fresh: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    """The AST, or the diagnostic where the text does not parse (binary files included)."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    from_file = _parse_with(tables["fast"], loaded, text, monkeypatch)
    assert from_file == _parse_with(fresh, parser._lark(), text, monkeypatch)


@pytest.mark.parametrize("text", SYNTAX_TEXTS.values(), ids=SYNTAX_TEXTS.keys())
def test_syntax_errors_read_the_same(text: str, tables: dict[str, Any], loaded: Lark,
                                     fresh: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    """Message, spans, labels and help: where the fast path gives up, lark's own loop and its
    exceptions run on the loaded tables, and `_translate` reads them. The fast path's tables
    and lark's parser need not come from the same place (one part of the file damaged)."""
    diagnostic = _parse_with(tables["fast"], loaded, text, monkeypatch)
    assert isinstance(diagnostic, Diagnostic)
    assert diagnostic == _parse_with(fresh, parser._lark(), text, monkeypatch)
    assert diagnostic == _parse_with(tables["fast"], parser._lark(), text, monkeypatch)
    assert diagnostic == _parse_with(fresh, loaded, text, monkeypatch)


def test_small_spec_compiles_only_the_scanners_it_needs(tables: dict[str, Any]):
    fast = parser._Fast(tables["fast"])
    assert fast.parse(LENET, callbacks(fast.plans, Builder(SourceFile("lenet5.nn", LENET))))
    every = parser._Fast(tables["fast"])
    for state in range(len(every.actions)):
        every.lexer(state)
    assert 0 < len(fast.scanners) < len(every.scanners) < len(every.actions)
    assert sum(lexer is not None for lexer in fast.lexers) < len(fast.lexers)


_FRESH_INTERPRETER = """
import json, sys
from nnspec.spec import parser
from nnspec.spec.diagnostics import DiagnosticError
from nnspec.spec.source import SourceFile

parser.parse_module(SourceFile("lenet5.nn", sys.argv[1]))
state = {"lark imported": "lark" in sys.modules,
         "lark parsers": parser._parser.cache_info().currsize + parser._lark.cache_info().currsize}
try:
    parser.parse_module(SourceFile("t.nn", sys.argv[2]))
except DiagnosticError as exc:
    state["diagnostic"] = exc.diagnostics[0].model_dump_json()
state["lark parsers after the error"] = parser._parser.cache_info().currsize
print(json.dumps(state))
"""


def test_valid_text_needs_no_lark(tables: dict[str, Any], loaded: Lark, fresh: dict[str, Any],
                                  monkeypatch: pytest.MonkeyPatch):
    """In a fresh interpreter, a valid spec parses with no lark parser made and lark not even
    imported; the first syntax error makes lark's parser, and reads as it always did."""
    text = SYNTAX_ERRORS["wrong_closing_bracket"]
    result = subprocess.run([sys.executable, "-c", _FRESH_INTERPRETER, LENET, text], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    state = json.loads(result.stdout)
    diagnostic = _parse_with(fresh, parser._lark(), text, monkeypatch)
    assert state == {
        "lark imported": False,
        "lark parsers": 0,
        "diagnostic": diagnostic.model_dump_json(),
        "lark parsers after the error": 1,
    }


def _rewrite(change):
    """A damage: the committed tables, as JSON, changed by `change`, written to the path."""
    def damage(path: Path) -> None:
        tables = json.loads(parser.TABLES.read_text("utf-8"))
        change(tables)
        path.write_text(json.dumps(tables), "utf-8")
    return damage


def _stale(tables: dict[str, Any]) -> None:
    tables["key"]["grammar_sha256"] = "0" * 64


def _without_lark_part(tables: dict[str, Any]) -> None:
    del tables["lark"]


def _without_fast_part(tables: dict[str, Any]) -> None:
    del tables["fast"]["actions"]


def _lark_part_not_base64(tables: dict[str, Any]) -> None:
    tables["lark"] = "{not base64}"


@pytest.mark.parametrize(("damage", "fast_from_file", "lark_from_file"), [
    pytest.param(_rewrite(_stale), False, False, id="another_grammar"),
    pytest.param(_rewrite(_without_lark_part), True, False, id="current_key_no_lark_part"),
    pytest.param(_rewrite(_lark_part_not_base64), True, False, id="current_key_damaged_lark_part"),
    pytest.param(_rewrite(_without_fast_part), False, True, id="current_key_damaged_fast_part"),
    pytest.param(lambda path: path.write_text('{"key": {', "utf-8"), False, False, id="bad_json"),
    pytest.param(lambda path: path.write_text("[]", "utf-8"), False, False, id="not_tables"),
    pytest.param(lambda path: None, False, False, id="missing"),
])
def test_stale_or_damaged_tables_fall_back_to_the_grammar(damage, fast_from_file: bool,
                                                          lark_from_file: bool, tmp_path: Path,
                                                          fresh_caches,
                                                          monkeypatch: pytest.MonkeyPatch):
    """Each part of the file is used where it is current and whole, and derived from lark's
    parser (loaded, or built from the grammar) where it is not; either way, text parses and
    errors read the same."""
    if (fast_from_file or lark_from_file) and parser._current_tables(parser.TABLES) is None:
        pytest.skip("the committed tables are for another lark (see test_tables_are_current)")
    bad = SYNTAX_ERRORS["wrong_closing_bracket"]
    expected = _parse_with(parser.fast_tables(parser._lark()), parser._lark(), bad, monkeypatch)
    path = tmp_path / "grammar_tables.json"
    damage(path)
    assert (parser.load_tables(path) is not None) == lark_from_file
    monkeypatch.setattr(parser, "TABLES", path)
    assert (parser._parser() is not parser._lark()) == lark_from_file
    derived_from = []
    derive = parser.fast_tables
    monkeypatch.setattr(parser, "fast_tables",
                        lambda lark: derived_from.append(lark) or derive(lark))
    parser._fast()
    assert derived_from == ([] if fast_from_file else [parser._parser()])
    assert isinstance(parser.parse_module(SourceFile("lenet5.nn", LENET)), ast.Module)
    with pytest.raises(DiagnosticError) as raised:
        parser.parse_module(SourceFile("t.nn", bad))
    assert list(raised.value.diagnostics) == [expected]


def test_written_tables_load_and_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "grammar_tables.json"
    parser.write_tables(path)
    written = parser.load_tables(path)
    assert written is not None
    written_fast = parser._current_tables(path)["fast"]
    built = parser.fast_tables(parser._lark())
    for text in [LENET, *list(SYNTAX_ERRORS.values())[:3]]:
        assert _parse_with(written_fast, written, text, monkeypatch) == _parse_with(
            built, parser._lark(), text, monkeypatch)


def test_a_stale_file_is_built_once_into_the_users_cache(tmp_path: Path, fresh_caches,
                                                         monkeypatch: pytest.MonkeyPatch):
    """Another lark (or grammar) than the committed file's: the first run writes tables for it
    into the user's cache; the next runs read them there and build nothing from the grammar."""
    stale = tmp_path / "grammar_tables.json"
    _rewrite(_stale)(stale)
    monkeypatch.setattr(parser, "TABLES", stale)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cached = parser.cached_tables_path()
    assert cached.parent == tmp_path / "cache" / "nnspec" and not cached.exists()
    assert parser._tables_path() == cached and parser._current_tables(cached) is not None
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no temporary left
    for step in (parser._tables_path, parser._parser, parser._fast):  # the next run
        step.cache_clear()

    def no_build() -> None:
        raise AssertionError("the grammar was built although the cache is current")

    monkeypatch.setattr(parser, "_lark", no_build)
    assert parser._tables_path() == cached
    assert isinstance(parser.parse_module(SourceFile("lenet5.nn", LENET)), ast.Module)
    with pytest.raises(DiagnosticError):
        parser.parse_module(SourceFile("t.nn", SYNTAX_ERRORS["wrong_closing_bracket"]))
