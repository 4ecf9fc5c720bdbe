"""A run directory is consistent as a unit (docs/runs.md): training in a subprocess is killed
with SIGKILL inside every file write of a checkpoint, inside the commit and inside the
renames after it (the test-only pause hook, NNSPEC_TEST_PAUSE_AT), then resumed; the final
weights, metrics and test results equal an uninterrupted run's, bit for bit. The same for a
search killed mid-trial and an ensemble killed mid-member; and what a run directory refuses:
a second training into it, an --out that holds other files, files that disagree."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from cli_runner import cli  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import nnspec  # noqa: E402
from nnspec.runtime.loop.checkpoint import PAUSE_VARIABLE, PAUSED_MARKER  # noqa: E402

QUIET = {"progress": False, "log": lambda line: None}
TIMING = ("seconds", "samples_per_s")  # measured, never the same twice

# dropout (the saved RNG), momentum (the optimizer state) and early stopping's best weights
SPEC = """
model Net {
    input x: [4]
    x -> linear(16) -> relu -> dropout(0.2) -> linear(3) -> output
}
train Net {
    data       iris
    split      0.6 / 0.2 / 0.2
    batch      16
    epochs     4
    loss       cross_entropy
    optimizer  momentum(lr=0.05, beta=0.9)
    early_stop patience=10, monitor=val_loss
    metrics    accuracy
    seed       5
    ENSEMBLE
}
"""
SEARCH = """
search Net as lr {
    optimizer.lr in [0.02, 0.05]
}
"""
# a run checkpoints after its first epoch (generation 1) and its last (generation 2), each
# generation's files in this order (runtime/loop/trainer.py Trainer.save)
FILES = ["last.safetensors", "last.json", "best.safetensors", "best.json", "metrics.jsonl",
         "state.pt"]


def write(folder: Path, ensemble: str = "", search: str = "") -> Path:
    path = folder / "net.nn"
    path.write_text(SPEC.replace("ENSEMBLE", ensemble) + search, encoding="utf-8")
    return path


def _paused_child(point: str, command: str, spec: Path, flag: str, folder: Path,
                  marker: Path) -> None:
    """A child's training, with the hook armed; its stderr (the marker) goes to a file."""
    os.environ[PAUSE_VARIABLE] = point
    sys.stderr = open(marker, "w", encoding="utf-8", buffering=1)  # noqa: SIM115
    where = {"out" if flag == "--out" else "resume": folder}
    if command == "search":
        nnspec.search(spec, log=lambda line: None, **where)
    else:
        nnspec.train(spec, **QUIET, **where)


# children are forked from a server that has imported torch but never computed with it (a
# fork of a process that has run OpenMP hangs in its next parallel region), so a kill trial
# costs milliseconds, not an interpreter start
_SERVER = multiprocessing.get_context("forkserver")
_SERVER.set_forkserver_preload(["torch", "nnspec.runtime.experiments.run",
                                "nnspec.runtime.experiments.search", __name__])


class Paused:
    """A training in a child process, paused at ``point`` (NNSPEC_TEST_PAUSE_AT)."""

    def __init__(self, point: str, command: str, spec: Path, flag: str, folder: Path):
        self.point, self.marker = point, folder.parent / f"{folder.name}.stderr"
        self.process = _SERVER.Process(target=_paused_child,
                                       args=(point, command, spec, flag, folder, self.marker))
        self.process.start()
        self.pid = self.process.pid

    def wait(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = self.marker.read_text(encoding="utf-8") if self.marker.is_file() else ""
            if f"{PAUSED_MARKER} {self.point}\n" in text:
                return
            if not self.process.is_alive():
                break
            time.sleep(0.01)
        self.process.kill()
        raise AssertionError(f"the training never paused at {self.point}:\n{text}")

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.process.join()
        assert self.process.exitcode == -signal.SIGKILL


def killed_at(points: dict[str, Path], *args: str | Path, flag: str = "--out") -> None:
    """One training per point into its own directory, all started at once (their fsyncs
    overlap), each killed where it paused."""
    children = [Paused(point, *args, flag, folder) for point, folder in points.items()]
    for child in children:
        child.wait()
        child.kill()


def assert_same_tensors(a: Path, b: Path) -> None:
    x, y = load_file(a), load_file(b)
    assert x.keys() == y.keys(), (a, b)
    for key in x:
        assert torch.equal(x[key], y[key]), (a, b, key)


def rows(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def assert_same_run(a: Path, b: Path) -> None:
    for name in ("best.safetensors", "last.safetensors"):
        assert_same_tensors(a / name, b / name)
    assert rows(a) == rows(b)
    assert json.loads((a / "test.json").read_text()) == json.loads((b / "test.json").read_text())


def resume_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("resume: "))


# == one run: killed inside every write of a checkpoint ==========================================
def test_a_run_killed_anywhere_in_a_checkpoint_resumes_bit_for_bit(tmp_path):
    spec = write(tmp_path)
    whole = tmp_path / "whole"
    assert cli("train", spec, "--out", whole).exit_code == 0
    manifest = json.loads((whole / "manifest.json").read_text())
    assert (manifest["generation"], manifest["epoch"]) == (2, 4)
    assert json.loads((whole / "best.json").read_text())["epoch"] > 1  # generation 2 rewrote best
    for name in FILES:  # the manifest names every file of the generation by size and sha256
        data = (whole / name).read_bytes()
        assert manifest["files"][name] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert not any(p.name.startswith(".generation-") for p in whole.iterdir())

    # staged writes of generation 2 and its manifest: generation 1 stays whole
    uncommitted = {f"{name}:2": FILES[:i] for i, name in enumerate(FILES)}
    uncommitted["manifest.json:2"] = FILES
    # after the commit, between the renames: generation 2 is finished from its stage
    installing = {f"install-{name}:2": FILES[i:] for i, name in enumerate(FILES) if i in (0, 3, 5)}
    points = {point: tmp_path / f"k{n}" for n, point in enumerate([*uncommitted, *installing, "state.pt:1"])}

    # the first killed training also shows the lock: a second training into its directory,
    # or a resume of it, is refused while it lives; its lock file, left by a dead process,
    # blocks nobody afterwards
    first, folder = next(iter(points.items()))
    holder = Paused(first, "train", spec, "--out", folder)
    holder.wait()
    for flag in ("--out", "--resume"):
        result = cli("train", spec, flag, folder)
        assert result.exit_code == 1
        assert (f"error: `{folder}` is in use: process {holder.pid} is training into it (it "
                f"holds `{folder / '.lock'}`)") in result.stderr
    holder.kill()
    assert (folder / ".lock").is_file()
    killed_at(dict(list(points.items())[1:]), "train", spec)

    for point, folder in points.items():
        result = cli("train", spec, "--resume", folder)
        assert result.exit_code == 0, (point, result.output)
        line = resume_line(result.stdout)
        if point in uncommitted:
            staged = ", ".join(sorted(uncommitted[point])) or "no file finished"
            assert line == (f"resume: `{folder}`: generation 1 (epoch 1) is complete: 6 files "
                            f"verified by sha256; discarded generation 2, uncommitted ({staged})"), point
        elif point in installing:
            assert line == (f"resume: `{folder}`: generation 2 (epoch 4) is complete: 6 files "
                            f"verified by sha256, {len(installing[point])} put in place from its "
                            f"stage ({', '.join(installing[point])}); nothing discarded"), point
        else:  # killed in the first checkpoint: the run starts again from its seed
            assert line == (f"resume: `{folder}`: generation 0 holds no checkpoint yet (the run "
                            "stopped in its first epoch): training starts from epoch 1; discarded "
                            "generation 1, uncommitted (best.json, best.safetensors, last.json, "
                            "last.safetensors, metrics.jsonl)")
        assert_same_run(whole, folder)
        assert not any(p.name.startswith(".generation-") or p.name.endswith(".tmp")
                       for p in folder.iterdir())


# == a search killed mid-trial, an ensemble killed mid-member ======================================
def test_a_search_killed_mid_trial_resumes_to_the_same_trials(tmp_path):
    spec = write(tmp_path, search=SEARCH)
    whole = nnspec.search(spec, out=tmp_path / "whole", log=lambda line: None)
    points = {"trials/2/metrics.jsonl:1": tmp_path / "a", "trials/1/install-state.pt:2": tmp_path / "b"}
    killed_at(points, "search", spec)
    for folder in points.values():
        resumed = nnspec.search(spec, resume=folder, log=lambda line: None)
        assert resumed.finished
        assert [(t.point, t.objective, t.mean) for t in resumed.trials] == \
            [(t.point, t.objective, t.mean) for t in whole.trials]
        for trial in ("1", "2"):
            for name in ("best.safetensors", "last.safetensors"):
                assert_same_tensors(tmp_path / "whole" / "trials" / trial / name,
                                    folder / "trials" / trial / name)
        assert (folder / "best.nn").read_text() == (tmp_path / "whole" / "best.nn").read_text()


def test_an_ensemble_killed_mid_member_resumes_bit_for_bit(tmp_path):
    spec = write(tmp_path, ensemble="ensemble 2")
    whole = tmp_path / "whole"
    nnspec.train(spec, out=whole, **QUIET)
    points = {"members/1/best.safetensors:2": tmp_path / "a",
              "members/0/install-metrics.jsonl:2": tmp_path / "b"}
    killed_at(points, "train", spec)
    lines = {}
    for point, folder in points.items():
        result = cli("train", spec, "--resume", folder)
        assert result.exit_code == 0, result.output
        lines[point] = resume_line(result.stdout.replace("member 0: ", "").replace("member 1: ", ""))
        for k in ("0", "1"):
            assert_same_run(whole / "members" / k, folder / "members" / k)
        assert json.loads((folder / "test.json").read_text()) == json.loads((whole / "test.json").read_text())
    member = tmp_path / "a" / "members" / "0"  # member 0 was finished, member 1 in its epoch 4
    assert lines["members/1/best.safetensors:2"] == (
        f"resume: `{member}`: generation 2 (epoch 4) is complete: 6 files verified by sha256; "
        "nothing discarded")
    member = tmp_path / "b" / "members" / "0"
    assert lines["members/0/install-metrics.jsonl:2"] == (
        f"resume: `{member}`: generation 2 (epoch 4) is complete: 6 files verified by sha256, 2 put "
        "in place from its stage (metrics.jsonl, state.pt); nothing discarded")


# == what a run directory refuses ==================================================================
def test_an_out_that_holds_other_files_is_refused_and_left_alone(tmp_path):
    spec = write(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    result = cli("train", spec, "--out", mine)
    assert result.exit_code == 1
    assert f"error: `{mine}` is not empty and is not a run directory (it holds `notes.txt`)" in result.stderr
    assert sorted(p.name for p in mine.iterdir()) == [".lock", "notes.txt"]
    assert (mine / "notes.txt").read_text() == "my notes"
    (tmp_path / "file").write_text("x")
    result = cli("train", spec, "--out", tmp_path / "file")
    assert result.exit_code == 1 and f"error: `{tmp_path / 'file'}` is a file, not a run directory" in result.stderr
    result = cli("search", write(tmp_path, search=SEARCH), "--out", mine)
    assert result.exit_code == 1
    assert f"error: `{mine}` is not empty and is not a search directory (it holds `notes.txt`)" in result.output
    # an empty folder is a new run's; a run directory continues only with --resume
    (tmp_path / "empty").mkdir()
    assert cli("train", spec, "--out", tmp_path / "empty").exit_code == 0
    result = cli("train", spec, "--out", tmp_path / "empty")
    assert result.exit_code == 1 and f"error: `{tmp_path / 'empty'}` already holds a run" in result.stderr


def test_files_that_disagree_are_an_error_naming_them(tmp_path):
    spec = write(tmp_path)
    whole, part = tmp_path / "whole", tmp_path / "part"
    nnspec.train(spec, out=whole, **QUIET)
    nnspec.train(spec, out=part, stop_after=1, **QUIET)
    # the failure the issue measured, in a run of an nnspec without manifests: the weights of
    # epoch 4 beside the state and metrics of epoch 1
    legacy = tmp_path / "legacy"
    shutil.copytree(part, legacy)
    (legacy / "manifest.json").unlink()
    for name in FILES[:4]:
        shutil.copy(whole / name, legacy / name)
    result = cli("train", spec, "--resume", legacy)
    assert result.exit_code == 1
    assert (f"error: `{legacy}` cannot be resumed: the epochs of its files disagree (state.pt: 1, "
            "last.json: 4, best.json: 4, metrics.jsonl: 1); `last.json`, `best.json` do not belong "
            "to the state's epoch 1") in result.stderr
    # the same run with its own files agrees, and resumes (checked by epochs only) bit for bit
    for name in FILES[:4]:
        shutil.copy(part / name, legacy / name)
    result = cli("train", spec, "--resume", legacy)
    assert result.exit_code == 0, result.output
    assert resume_line(result.stdout) == (
        f"resume: `{legacy}` has no manifest.json (a run of an older nnspec): its files are "
        "checked by their epochs only")
    assert_same_run(whole, legacy)
    # a committed file changed afterwards: named, nothing trained
    damaged = tmp_path / "damaged"
    shutil.copytree(part, damaged)
    with open(damaged / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write("{}\n")
    before = (damaged / "last.safetensors").read_bytes()
    result = cli("train", spec, "--resume", damaged)
    assert result.exit_code == 1
    assert (f"error: `{damaged}` cannot be resumed: its manifest.json commits generation 1 (epoch 1), "
            "and `metrics.jsonl` differs from it (size or sha256)") in result.stderr
    assert (damaged / "last.safetensors").read_bytes() == before
    (damaged / "best.json").unlink()
    result = cli("train", spec, "--resume", damaged)
    assert "`best.json` is missing; `metrics.jsonl` differs from it" in result.stderr
