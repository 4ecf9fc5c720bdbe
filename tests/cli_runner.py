"""The command line, run in-process for tests: `cli("train", spec, "--out", run)`.

An exception other than the CLI's own exit is raised as it is (a bug shows its traceback in
the test); otherwise the output must hold no traceback, whatever the exit code.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from nnspec.cli import app


def cli(*args: str | Path):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert "Traceback" not in result.stdout + result.stderr
    return result
