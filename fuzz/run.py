"""Run the checker over N fuzz inputs in worker processes; classify; minimise what fails.

    python -m fuzz -n 100000 --workers 2 --seed 0 --out fuzz/found

Each worker is a process with a memory limit (RLIMIT_AS) that checks one input at a time; the
parent waits for each answer at most ``--kill-after`` seconds and replaces a worker that
does not answer (a computation in C, such as a huge power, cannot be interrupted from
inside). An input is slow (class ``timeout``) when its check took more than ``--slow``
seconds and more than 10 ms per line of the input. Every failing input (exception, timeout, unlocated diagnostic) is reduced by delta
debugging, keeping its signature, and written to the output folder, one file per signature.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # `python fuzz/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.mutate import corpus, make_input
from fuzz.target import (
    CLASSES,
    EXCEPTION,
    TIMEOUT,
    UNLOCATED,
    Outcome,
    check_text,
    exception_outcome,
)

FAILURES = (EXCEPTION, TIMEOUT, UNLOCATED)


def _serve(conn, memory_mb: int, slow: float) -> None:
    """A worker: check each text it receives; answer (kind, signature, detail, seconds)."""
    import nnspec.spec.recipe.elaborate  # noqa: F401  (before the limit: mapping libraries needs room)
    import nnspec.spec.search.elaborate  # noqa: F401

    if memory_mb:
        import resource

        limit = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    while True:
        try:
            text = conn.recv()
        except EOFError:
            return
        start = time.perf_counter()
        try:
            outcome = check_text(text)
        except BaseException as exc:  # noqa: BLE001 - every escape is a finding
            outcome = exception_outcome(exc)
        seconds = time.perf_counter() - start
        if seconds > budget(text, slow) and outcome.kind not in FAILURES:
            outcome = Outcome(TIMEOUT, "slow", f"{seconds:.2f} s ({outcome.kind})")
        conn.send((outcome.kind, outcome.signature, outcome.detail, seconds))


PER_LINE = 0.01  # seconds a line may cost: a file of 600 erroneous lines is checked in ~4 s


def budget(text: str, slow: float) -> float:
    """The time an input may take: ``slow`` seconds, or more for a long file, in proportion to
    its lines (the checker's promise is a fixed budget per line, not per file)."""
    return max(slow, PER_LINE * (text.count("\n") + 1))


class Worker:
    """One worker process and the pipe to it, restarted after a kill."""

    def __init__(self, memory_mb: int, slow: float, kill_after: float):
        self.memory_mb, self.slow, self.kill_after = memory_mb, slow, kill_after
        self._start()

    def _start(self) -> None:
        ctx = mp.get_context("fork" if sys.platform != "win32" else "spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, self.memory_mb, self.slow), daemon=True)
        self.proc.start()
        child.close()

    def check(self, text: str) -> tuple[Outcome, float]:
        try:
            self.conn.send(text)
            if self.conn.poll(self.kill_after):
                kind, signature, detail, seconds = self.conn.recv()
                return Outcome(kind, signature, detail), seconds
        except (EOFError, OSError, BrokenPipeError):
            self.restart()
            return Outcome(EXCEPTION, "worker died", "the worker process exited (memory?)"), 0.0
        self.restart()
        return Outcome(TIMEOUT, "killed", f"no answer within {self.kill_after} s"), self.kill_after

    def restart(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()
        self._start()

    def close(self) -> None:
        self.conn.close()
        self.proc.kill()
        self.proc.join()


def reduce(text: str, signature: str, still_fails, seconds: float = 30.0) -> str:
    """Delta debugging (ddmin) over lines, then over characters, keeping ``signature``; it
    stops after ``seconds`` (reducing a slow input costs a slow check per step)."""
    deadline = time.monotonic() + seconds
    for unit in ("line", "char"):
        parts = text.splitlines(keepends=True) if unit == "line" else list(text)
        n = 2
        budget = 400 if unit == "line" else 600  # checks per pass: reduction must not run for hours
        while len(parts) >= 2 and budget > 0:
            size = max(1, len(parts) // n)
            chunks = [parts[i:i + size] for i in range(0, len(parts), size)]
            reduced = False
            for i in range(len(chunks)):
                budget -= 1
                candidate = [p for j, c in enumerate(chunks) if j != i for p in c]
                if candidate and still_fails("".join(candidate), signature):
                    parts, n, reduced = candidate, max(n - 1, 2), True
                    break
                if budget <= 0 or time.monotonic() > deadline:
                    budget = 0
                    break
            if not reduced:
                if n >= len(parts):
                    break
                n = min(len(parts), n * 2)
        text = "".join(parts)
    return text


@dataclass
class Report:
    counts: Counter = field(default_factory=Counter)
    failures: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # signature -> (index, text, detail)
    slowest: float = 0.0


def run(n: int, *, seed: int = 0, workers: int = 2, memory_mb: int = 2048, slow: float = 1.0,
        kill_after: float = 10.0, progress: bool = False) -> Report:
    texts = corpus()
    report = Report()
    lock = threading.Lock()
    counter = iter(range(n))

    def drive() -> None:
        worker = Worker(memory_mb, slow, kill_after)
        try:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                how, text = make_input(texts, seed, index)
                outcome, seconds = worker.check(text)
                with lock:
                    report.counts[outcome.kind] += 1
                    report.slowest = max(report.slowest, seconds)
                    if outcome.kind in FAILURES and outcome.signature not in report.failures:
                        report.failures[outcome.signature] = (index, text, f"{how}: {outcome.detail}")
                    done = sum(report.counts.values())
                    if progress and done % 1000 == 0:
                        print(f"{done:,} {dict(report.counts)}", file=sys.stderr, flush=True)
        finally:
            worker.close()

    threads = [threading.Thread(target=drive) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return report


def minimise(report: Report, out: Path, *, memory_mb: int = 2048, slow: float = 1.0,
             kill_after: float = 10.0) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    worker = Worker(memory_mb, slow, kill_after)

    def still_fails(text: str, signature: str) -> bool:
        outcome, _ = worker.check(text)
        return outcome.signature == signature

    written = []
    try:
        for number, (signature, (index, text, detail)) in enumerate(sorted(report.failures.items())):
            small = reduce(text, signature, still_fails)
            path = out / f"repro_{number:03d}.nn"
            path.write_text(small, encoding="utf-8", errors="surrogatepass")
            path.with_suffix(".txt").write_text(f"signature: {signature}\ninput index: {index}\n\n{detail}\n",
                                                encoding="utf-8", errors="replace")
            written.append(path)
    finally:
        worker.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100_000, help="number of inputs (default 100,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-mb", type=int, default=2048, help="address-space limit per worker")
    parser.add_argument("--slow", type=float, default=1.0, help="seconds after which a check is a timeout")
    parser.add_argument("--kill-after", type=float, default=10.0, help="seconds before a worker is killed")
    parser.add_argument("--out", type=Path, default=Path("fuzz/found"), help="folder for minimised reproducers")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    start = time.time()
    report = run(args.n, seed=args.seed, workers=args.workers, memory_mb=args.memory_mb, slow=args.slow,
                 kill_after=args.kill_after, progress=not args.json)
    elapsed = time.time() - start
    written = minimise(report, args.out, memory_mb=args.memory_mb, slow=args.slow,
                       kill_after=args.kill_after) if report.failures else []
    figures = {"inputs": args.n, "seed": args.seed, "workers": args.workers,
               "counts": {k: report.counts.get(k, 0) for k in CLASSES}, "seconds": round(elapsed, 1),
               "slowest_check_s": round(report.slowest, 3), "machine": f"{platform.machine()}, "
               f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
               "reproducers": [str(p) for p in written],
               "signatures": sorted(report.failures)}
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key in CLASSES:
            print(f"{key:>10}: {report.counts.get(key, 0):,}")
        print(f"{args.n:,} inputs in {elapsed:.1f} s on {args.workers} workers; slowest check {report.slowest:.3f} s")
        for signature in sorted(report.failures):
            print(f"  {signature}")
        for path in written:
            print(f"  reproducer: {path}")
    return 1 if any(report.counts.get(k) for k in FAILURES) else 0


if __name__ == "__main__":
    sys.exit(main())
