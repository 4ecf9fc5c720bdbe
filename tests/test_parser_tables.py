"""The parser tables committed beside the grammar (`spec/grammar_tables.json`, see parser.py):
they are current, a parser loaded from them parses exactly as one built from the grammar, and
a stale or damaged file only costs the time of building the parser again."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from lark import Lark
from lark import __version__ as lark_version
from lark.grammar import Rule
from lark.lexer import TerminalDef

from nnspec.spec import ast, parser
from nnspec.spec.diagnostics import Diagnostic, DiagnosticError
from nnspec.spec.source import SourceFile

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.nn"))
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


@pytest.fixture(scope="module")
def loaded() -> Lark:
    tables = parser.load_tables(parser.TABLES)
    if tables is None:
        pytest.skip("the committed tables are for another lark (see test_tables_are_current)")
    return tables


@pytest.fixture
def fresh_caches():
    """`_parser` and `_fast` cache what the tables gave; a test that points them elsewhere starts
    and ends with empty caches."""
    parser._parser.cache_clear()
    parser._fast.cache_clear()
    yield
    parser._parser.cache_clear()
    parser._fast.cache_clear()


def _parse_with(lark: Lark, text: str, monkeypatch: pytest.MonkeyPatch) -> ast.Module | Diagnostic:
    """The AST, or the one diagnostic, that `parse_module` gives when it runs on `lark`."""
    fast = parser._Fast(lark)
    with monkeypatch.context() as patch:
        patch.setattr(parser, "_parser", lambda: lark)
        patch.setattr(parser, "_fast", lambda: fast)
        try:
            return parser.parse_module(SourceFile("t.nn", text))
        except DiagnosticError as exc:
            (diagnostic,) = exc.diagnostics
            return diagnostic


def test_tables_are_current(fresh_caches):
    """The committed tables were written for this grammar with these options: an edited grammar
    whose tables were not regenerated fails here, whatever lark is installed."""
    with parser.TABLES.open(encoding="utf-8") as file:
        key = json.load(file)["key"]
    grammar = parser.GRAMMAR.read_text("utf-8")
    assert key["grammar_sha256"] == hashlib.sha256(grammar.encode("utf-8")).hexdigest(), (
        "grammar.lark changed: run `python -m nnspec.spec.grammar_tables`")
    assert key["options"] == parser._OPTIONS
    # With the lark that wrote them, the tables must load. Another lark (`lark>=1.1,<2` lets a
    # user have a newer one) may serialise differently, so there they must be refused, not
    # misread, and the parser built from the grammar: that is the design, not a failure, and
    # failing here would only ask whoever upgrades lark for a file that saves start-up time.
    if key["lark_version"] == lark_version:
        assert parser.load_tables(parser.TABLES) is not None
        assert parser._parser() is not parser._lark()
    else:
        assert parser.load_tables(parser.TABLES) is None
        assert parser._parser() is parser._lark()


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


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_examples_parse_the_same(path: Path, loaded: Lark, monkeypatch: pytest.MonkeyPatch):
    text = path.read_text("utf-8")
    module = _parse_with(loaded, text, monkeypatch)
    assert isinstance(module, ast.Module)
    assert module == _parse_with(parser._lark(), text, monkeypatch)


@pytest.mark.parametrize("text", SYNTAX_TEXTS.values(), ids=SYNTAX_TEXTS.keys())
def test_syntax_errors_read_the_same(text: str, loaded: Lark, monkeypatch: pytest.MonkeyPatch):
    """Message, spans, labels and help: where the fast path gives up, lark's own loop and its
    exceptions run on the loaded tables, and `_translate` reads them."""
    diagnostic = _parse_with(loaded, text, monkeypatch)
    assert isinstance(diagnostic, Diagnostic)
    assert diagnostic == _parse_with(parser._lark(), text, monkeypatch)


def _write_stale(path: Path) -> None:
    tables = json.loads(parser.TABLES.read_text("utf-8"))
    tables["key"]["grammar_sha256"] = "0" * 64
    path.write_text(json.dumps(tables), "utf-8")


def _write_without_memo(path: Path) -> None:
    tables = json.loads(parser.TABLES.read_text("utf-8"))
    del tables["memo"]
    path.write_text(json.dumps(tables), "utf-8")


@pytest.mark.parametrize("damage", [
    pytest.param(_write_stale, id="another_grammar"),
    pytest.param(_write_without_memo, id="current_key_damaged_tables"),
    pytest.param(lambda path: path.write_text('{"key": {', "utf-8"), id="bad_json"),
    pytest.param(lambda path: path.write_text("[]", "utf-8"), id="not_tables"),
    pytest.param(lambda path: None, id="missing"),
])
def test_stale_or_damaged_tables_fall_back_to_the_grammar(damage, tmp_path: Path, fresh_caches,
                                                          monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "grammar_tables.json"
    damage(path)
    assert parser.load_tables(path) is None
    monkeypatch.setattr(parser, "TABLES", path)
    assert parser._parser() is parser._lark()
    text = (ROOT / "examples" / "lenet5.nn").read_text("utf-8")
    assert isinstance(parser.parse_module(SourceFile("lenet5.nn", text)), ast.Module)


def test_written_tables_load_and_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "grammar_tables.json"
    parser.write_tables(path)
    written = parser.load_tables(path)
    assert written is not None
    for text in list(SYNTAX_ERRORS.values())[:3]:
        built = _parse_with(parser._lark(), text, monkeypatch)
        assert _parse_with(written, text, monkeypatch) == built
