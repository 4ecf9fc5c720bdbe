"""A report as people read it: one rich table, passing rows folded, every failure shown."""

from __future__ import annotations

from collections import defaultdict

from rich.console import Console
from rich.table import Table

from .results import CheckResult, Report

FOLD = 6  # more passing results than this in one check become one summary row
STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.2g}"


def _lines(results: list[CheckResult]) -> list[tuple[str, str, str, str, str]]:
    """(status, check, subject, detail, location) per shown result; a check with more than
    FOLD passing subjects shows them as one line with the worst of them."""
    by_check: dict[str, list[CheckResult]] = defaultdict(list)
    for r in results:
        by_check[r.check].append(r)
    lines = []
    for check, items in by_check.items():
        passed = [r for r in items if r.status == "pass"]
        others = [r for r in items if r.status != "pass"]
        if len(passed) > FOLD:
            worst = max(passed, key=lambda r: (r.error or 0.0) / (r.tolerance or 1.0))
            bound = f" (tolerance {_number(worst.tolerance)})" if worst.tolerance else ""
            lines.append(("pass", check, f"{len(passed)} subjects",
                          f"worst {_number(worst.error)}{bound} at {worst.subject}: "
                          f"{worst.detail}", ""))
        else:
            others = passed + others
        for r in others:
            lines.append((r.status, r.check, r.subject, r.detail, r.location or ""))
    return lines


def render_report(report: Report, console: Console, *, title: str | None = None) -> None:
    console.print(f"[bold]{title or f'verify {report.subject}'}[/]")
    for status, check, subject, detail, where in _lines(report.results):
        mark = f"[{STYLE[status]}]{status.upper() if status == 'fail' else status:4}[/]"
        console.print(f"  {mark}  {check:11} {subject}" + (f"  [dim]{where}[/]" if where else ""),
                      highlight=False)
        if detail:
            console.print(f"        {detail}", markup=False, highlight=False)
    _init_table(report, console)
    counts = report.counts()
    verdict = "[bold red]FAILED[/]" if not report.ok else "[green]ok[/]"
    console.print(f"{verdict}: {counts['pass']} passed, {counts['fail']} failed, "
                  f"{counts['warn']} warnings, {counts['skip']} skipped")


def _init_table(report: Report, console: Console, limit: int = 40) -> None:
    """The per-layer statistics at initialisation: the layers with weights and the output."""
    for r in report.results:
        layers = r.data.get("layers") if r.check == "init" else None
        if not layers:
            continue
        rows = [row for row in layers if row["weighted"] or row["state"] != "ok"]
        if layers[-1] not in rows:
            rows.append(layers[-1])
        table = Table(title="activations at initialisation (std relative to the input's)",
                      title_justify="left")
        for name in ("layer", "op", "mean", "std", "× input std", "state"):
            table.add_column(name, justify="right" if name in ("mean", "std", "× input std")
                             else "left")
        for row in rows[:limit]:
            state = row["state"]
            style = "green" if state == "ok" else "yellow" if state in (
                "vanishing", "exploding") else "bold red"
            table.add_row(row["layer"], row["op"], f"{row['mean']:.3g}", f"{row['std']:.3g}",
                          f"{row['ratio']:.3g}", f"[{style}]{state}[/]")
        if len(rows) > limit:
            table.caption = f"first {limit} of {len(rows)} rows; --json has every layer"
        console.print(table)


__all__ = ["render_report"]
