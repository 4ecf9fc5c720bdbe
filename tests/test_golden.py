"""Golden files for diagnostics: each `tests/diagnostics/NAME.nn` is checked beside its
expected rendered output `NAME.out` (what `nnspec check tests/diagnostics/NAME.nn` prints on
stderr when run from the repository root).

Regenerate every `.out` with `NNSPEC_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`,
then review the diff like code (see tests/diagnostics/README.md).
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnspec.cli import app

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "diagnostics"
UPDATE = os.environ.get("NNSPEC_UPDATE_GOLDEN", "") not in ("", "0")

# Cases that currently crash with a Python traceback instead of a diagnostic. While they
# crash they are reported as xfail; once fixed they are compared like every other case.
KNOWN_CRASHES: dict[str, str] = {}  # case name -> reason, while a crash awaits its fix


def _cases() -> list[Path]:
    """Every `.nn` at the top of the folder; in subfolders (helpers such as `imports/`) only
    the files that have their own `.out`, i.e. that are meant to be compiled as a root."""
    found = sorted(CASES.glob("*.nn"))
    found += sorted(p for p in CASES.glob("*/**/*.nn") if p.with_suffix(".out").exists())
    return found


def _id(path: Path) -> str:
    return path.relative_to(CASES).with_suffix("").as_posix()


@pytest.mark.parametrize("case", _cases(), ids=_id)
def test_golden(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    rel = case.relative_to(ROOT).as_posix()
    result = CliRunner().invoke(app, ["check", rel])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        crash = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else repr(result.exception)
        reason = KNOWN_CRASHES.get(_id(case))
        if reason is not None:
            pytest.xfail(f"known crash: {reason}")
        pytest.fail(f"`nnspec check {rel}` crashed instead of reporting a diagnostic:\n{crash}")
    expected_path = case.with_suffix(".out")
    if UPDATE:
        expected_path.write_text(result.stderr, encoding="utf-8", newline="\n")
    assert expected_path.exists(), f"no golden file {expected_path.name}; run with NNSPEC_UPDATE_GOLDEN=1"
    expected = expected_path.read_text(encoding="utf-8")
    assert result.stderr == expected, f"diagnostics of {rel} differ from {expected_path.name}"
    assert result.exit_code == 1, f"`nnspec check {rel}` exited with {result.exit_code}, expected 1"


def test_every_golden_has_a_case() -> None:
    """A `.out` left behind by a renamed or deleted case is an error, not dead weight."""
    roots = {p.with_suffix(".out") for p in _cases()}
    stale = sorted(p.relative_to(CASES).as_posix() for p in CASES.rglob("*.out") if p not in roots)
    assert not stale, f"golden files without a case: {stale}"


def test_enough_cases() -> None:
    assert len(_cases()) >= 30
