"""Regenerate `grammar_tables.json`, lark's parser tables for `grammar.lark` (see parser.py):

    python -m nnspec.spec.grammar_tables

Run it after editing the grammar or upgrading lark, and commit the file. Until then the parser
is built from the grammar at every start, correct but about 100 ms slower. lark numbers its
parse states in an order that follows string hashing, so two runs write different files that
load to equivalent parsers: regenerate only for a reason.
"""

from __future__ import annotations

from .parser import TABLES, write_tables


def main() -> None:
    write_tables(TABLES)
    print(f"wrote {TABLES} ({TABLES.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
