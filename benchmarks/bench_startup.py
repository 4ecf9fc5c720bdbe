"""How long a command takes from a cold process: `nnspec check`, `explain` and `export`.

Each command runs as a user runs it, in a fresh interpreter (`python -m nnspec ...`), with
the bytecode caches written (a warm-up run first, and PYTHONDONTWRITEBYTECODE removed from
the children's environment, as on an installed package). The contenders alternate run by
run, so a change in the machine's load falls on all of them alike, and the figure reported
is the median of the runs, next to `python -c pass` measured in the same loop: "above
bare" is what nnspec adds to starting the interpreter.

    python benchmarks/bench_startup.py                    # the table (11 runs each)
    python benchmarks/bench_startup.py --runs 21
    python benchmarks/bench_startup.py --baseline f9de8d7 # the same table for that commit too
    python benchmarks/bench_startup.py --importtime       # plus the slowest imports of `check`

``--baseline REV`` installs that commit of this repository (``pip install --no-deps
--target``, into a temporary folder) and runs its commands in the same loop.

Goals (issue 11): `check examples/lenet5.nn` at most 150 ms above bare; `export` of
ResNet-18 at most 2 s.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOALS_MS = {"check": 150.0, "export": 2000.0}  # check: above bare; export: wall


def child_env(pythonpath: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def timed(argv: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall ms, CPU ms of the child: user + system) of one run; fails loudly on an error."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    wall = (time.perf_counter() - began) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


def resnet18_weights(folder: Path) -> Path:
    """Initial ResNet-18 weights as a safetensors file (what `export` reads)."""
    from safetensors.torch import save_file

    sys.path.insert(0, str(ROOT))
    from nnspec.api import load
    from nnspec.compiler.torch_build import initial_weights

    path = folder / "resnet18.safetensors"
    state = initial_weights(load(ROOT / "examples" / "resnet18.nn").graph)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def install(rev: str, folder: Path) -> Path:
    """Commit ``rev`` of this repository installed (no dependencies) under ``folder``."""
    tree = folder / "tree"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    target = folder / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(tree)], check=True,
                   capture_output=True)
    return target


def importtime(env: dict[str, str], cwd: Path, top: int = 15) -> str:
    """The modules with the largest own import time in one `check` (python -X importtime)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "nnspec", "check",
                           str(ROOT / "examples" / "lenet5.nn")], env=env, cwd=cwd,
                          capture_output=True, text=True)
    rows = []
    for line in done.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if found:
            rows.append((int(found.group(1)), found.group(4)))
    total = sum(us for us, _ in rows)
    by_package: dict[str, int] = {}
    for us, name in rows:
        key = name if name.startswith("nnspec") else name.split(".")[0]
        by_package[key] = by_package.get(key, 0) + us
    lines = [f"imports of `check` (python -X importtime, own time, inflated by the "
             f"measurement): {total / 1000:.0f} ms in {len(rows)} modules"]
    for name, us in sorted(by_package.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {us / 1000:7.1f} ms  {name}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--baseline", metavar="REV", help="also measure this commit")
    parser.add_argument("--importtime", action="store_true")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="nnspec-startup-") as tmp:
        folder = Path(tmp)
        weights = resnet18_weights(folder)
        python = sys.executable
        commands = {
            "bare": [python, "-c", "pass"],
            "check": [python, "-m", "nnspec", "check", str(ROOT / "examples" / "lenet5.nn")],
            "explain": [python, "-m", "nnspec", "explain", "E2101"],
            "export": [python, "-m", "nnspec", "export", str(ROOT / "examples" / "resnet18.nn"), "-w",
                       str(weights), "-o", str(folder / "r18.onnx")],
        }
        envs = {"this": child_env(None)}
        if options.baseline:
            envs[options.baseline] = child_env(install(options.baseline, folder / "baseline"))
        contenders = [(who, name) for who in envs for name in commands]
        # the children run in an empty folder: `python -m` puts the working directory first on
        # sys.path, where this checkout's nnspec/ would shadow an installed baseline
        work = folder / "work"
        work.mkdir()
        for who, name in contenders:  # warm-up: bytecode written, files in the page cache
            timed(commands[name], envs[who], work)
        walls: dict[tuple[str, str], list[float]] = {c: [] for c in contenders}
        cpus: dict[tuple[str, str], list[float]] = {c: [] for c in contenders}
        for _ in range(options.runs):
            for who, name in contenders:
                wall, cpu = timed(commands[name], envs[who], work)
                walls[who, name].append(wall)
                cpus[who, name].append(cpu)

        print(f"median of {options.runs} alternating runs; wall and CPU (user + system) in ms")
        print(f"{'code':>10} {'command':>8} {'wall':>8} {'cpu':>8} {'above bare':>11} "
              f"{'x bare':>7}")
        for who, name in contenders:
            wall = statistics.median(walls[who, name])
            cpu = statistics.median(cpus[who, name])
            bare = statistics.median(walls[who, "bare"])
            print(f"{who:>10} {name:>8} {wall:8.0f} {cpu:8.0f} {wall - bare:11.0f} "
                  f"{wall / bare:7.1f}")
        bare = statistics.median(walls["this", "bare"])
        check = statistics.median(walls["this", "check"]) - bare
        export = statistics.median(walls["this", "export"])
        print(f"goal: check <= {GOALS_MS['check']:.0f} ms above bare: {check:.0f} ms, "
              f"{'met' if check <= GOALS_MS['check'] else 'not met'}")
        print(f"goal: export of ResNet-18 <= {GOALS_MS['export']:.0f} ms: {export:.0f} ms, "
              f"{'met' if export <= GOALS_MS['export'] else 'not met'}")
        if options.importtime:
            print(importtime(envs["this"], work))


if __name__ == "__main__":
    main()
