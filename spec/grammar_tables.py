"""Regenerate `grammar_tables.json`, the parser tables of `grammar.lark` (see parser.py): the
fast path's tables and lark's serialisation of its parser.

    python -m nnspec.spec.grammar_tables

Run it after editing the grammar or upgrading lark, and commit the file: until then both are
derived from the parser built from the grammar at every start, correct but about a quarter of
a second slower. Run it too after changing what `parser.fast_tables` derives (and bump
`parser._TABLES_FORMAT`): tests/test_parser_tables.py fails until the file has it. lark numbers
its parse states in an order that follows string hashing, so two runs write different files
that parse alike: regenerate only for a reason.
"""

from __future__ import annotations

from .parser import TABLES, write_tables


def main() -> None:
    write_tables(TABLES)
    print(f"wrote {TABLES} ({TABLES.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
