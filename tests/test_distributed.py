"""Training with many processes (DistributedDataParallel, gloo on loopback): one run
directory, equal weights on every rank (checked by checksums), results equal in expectation
to one process, exact resume, all ranks stopping together, clear errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("this torch build has no gloo backend", allow_module_level=True)

import nnspec  # noqa: E402
from nnspec.cli import app  # noqa: E402
from nnspec.compiler.torch_build import build_module  # noqa: E402
from nnspec.runtime.experiments import distributed  # noqa: E402
from nnspec.runtime.loop.checkpoint import load_weights  # noqa: E402
from nnspec.runtime.loop.trainer import TrainingError  # noqa: E402

QUIET = {"progress": False, "log": lambda line: None}
LAUNCH = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

MLP = """
model Net {
    input x: [64]
    x -> linear(32) -> batchnorm -> relu -> dropout(0.2) -> linear(10) -> output
}
train Net {
    data       digits
    split      0.7 / 0.15 / 0.15
    batch      63
    epochs     4
    loss       cross_entropy
    optimizer  momentum(lr=0.05, beta=0.9)
    schedule   step(every=2, factor=0.5)
    regularize l2(1e-4), max_norm(3.0)
    clip       norm(5.0)
    metrics    accuracy
    seed       3
}
"""

LINREG = """
model LinReg {
    input x: [10]
    x -> linear(1) -> output
}
train LinReg {
    data       diabetes
    split      0.8 / 0.2 / 0
    batch      full
    epochs     50
    loss       mse
    optimizer  gd(lr=0.2)
    metrics    mae
    seed       0
}
"""

LOGREG_EARLY = """
model LogReg {
    input x: [30]
    x -> linear(1) -> sigmoid -> output
}
train LogReg {
    data       breast_cancer
    split      0.7 / 0.15 / 0.15
    batch      full
    epochs     300
    loss       bce
    optimizer  gd(lr=0.5)
    early_stop patience=2, monitor=val_loss, min_delta=0.002
    metrics    accuracy
    seed       0
}
"""


@pytest.fixture(autouse=True)
def _no_launch_environment(monkeypatch):
    for key in LAUNCH:  # a test never inherits a launch from the shell that runs pytest
        monkeypatch.delenv(key, raising=False)


def invoke(*args: str):
    from typer.testing import CliRunner

    return CliRunner().invoke(app, list(args))


def n_train(spec: Path) -> int:
    from nnspec.api import load_recipe
    from nnspec.runtime.data.prepare import load_dataset, prepare

    model, recipe = load_recipe(spec, None)
    return len(prepare(recipe, model.graph, load_dataset(recipe, spec.parent)).train[0])


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "net.nn"
    path.write_text(MLP)
    return path


@pytest.fixture(scope="module")
def ddp_run(spec, tmp_path_factory):
    """`nnspec train net.nn --nproc 2`: 2 processes, gloo on 127.0.0.1."""
    root = tmp_path_factory.mktemp("ddp")
    began = time.perf_counter()
    result = invoke("train", str(spec), "--nproc", "2", "--device", "cpu", "--out", str(root / "run"))
    seconds = time.perf_counter() - began
    assert result.exit_code == 0, result.output
    print(f"\n2-process run: {seconds:.1f} s")
    return root, result, seconds


def test_two_processes_write_one_run_directory(ddp_run):
    root, result, _ = ddp_run
    assert [p.name for p in root.iterdir()] == ["run"]  # one run directory, nothing per rank
    run = root / "run"
    files = {p.name for p in run.iterdir()}
    assert {"best.safetensors", "last.safetensors", "state.pt", "metrics.jsonl", "summary.md",
            "test.json", "curves.png", "distributed.json", "spec"} <= files
    assert not any(name.startswith(".") and name.endswith(".tmp") for name in files)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]  # rank 0 alone wrote
    assert "2 processes (gloo, started by spawn); global batch 63 = 32 per process" in result.stdout
    assert result.stdout.count("epoch 4/4") == 1 and "test: loss" in result.stdout


def test_final_weights_are_equal_on_every_rank(ddp_run):
    run = ddp_run[0] / "run"
    record = json.loads((run / "distributed.json").read_text())
    assert record["world_size"] == 2 and record["backend"] == "gloo"
    assert record["global_batch"] == 63 and record["batch_per_process"] == 32
    checksums = record["checksums"]
    assert len(checksums) == 2 and all(len(c) == 64 for c in checksums)
    assert record["ranks_equal"] is True and checksums[0] == checksums[1]
    # the checksum is of the real weights: rank 0's saved last weights hash to it
    tensors, _ = load_weights(run / "last.safetensors")
    module = build_module(nnspec.load(run / "spec" / "net.nn").graph)
    module.load_state_dict(tensors)
    assert distributed.parameter_checksum(module) == checksums[0]
    module.linear_1.weight.data[0, 0] += 1e-6  # and it sees a change in the last bit
    assert distributed.parameter_checksum(module) != checksums[0]


def test_the_checksum_comparison_sees_ranks_that_differ():
    equal, perturbed = distributed.spawn(2, _checksums_of_ranks, (), device="cpu", log=lambda s: None)[0]
    assert equal[0] == equal[1]
    assert perturbed[0] != perturbed[1]


def test_train_metrics_are_exact_totals_over_the_training_split(ddp_run, spec):
    n = n_train(spec)  # batch 63 over 2 ranks: every step pads rank 1 with one duplicate
    assert n > 1000 and n % 63 != 0
    for line in (ddp_run[0] / "run" / "metrics.jsonl").read_text().splitlines():
        correct = json.loads(line)["train_accuracy"] * n
        assert correct == pytest.approx(round(correct), abs=1e-6)


def test_two_processes_match_one_process_in_expectation(ddp_run, spec, tmp_path):
    one = nnspec.train(spec, out=tmp_path / "one", **QUIET)
    two = json.loads((ddp_run[0] / "run" / "test.json").read_text())
    print(f"\ntest accuracy: 1 process {one.test_accuracy:.4f}, 2 processes {two['test_accuracy']:.4f}")
    assert one.test_accuracy >= 0.9 and two["test_accuracy"] >= 0.9
    assert abs(one.test_accuracy - two["test_accuracy"]) <= 0.03
    assert abs(one.test["test_loss"] - two["test_loss"]) <= 0.05


@pytest.mark.slow
def test_a_stopped_ddp_run_resumes_to_the_same_weights(ddp_run, spec, tmp_path):
    part = nnspec.train(spec, out=tmp_path / "part", nproc=2, stop_after=2, **QUIET)
    assert len(part.history) == 2 and part.test == {} and part.extra["ranks_equal"]
    result = invoke("train", str(spec), "--resume", str(tmp_path / "part"), "--nproc", "2")
    assert result.exit_code == 0, result.output
    assert f"resuming {tmp_path / 'part'} after epoch 2" in result.stdout
    resumed = json.loads((tmp_path / "part" / "distributed.json").read_text())
    whole = json.loads((ddp_run[0] / "run" / "distributed.json").read_text())
    assert resumed["checksums"] == whole["checksums"]  # bit for bit, as with one process
    assert len(resumed["previous"]) == 1 and resumed["previous"][0]["epochs_this_call"] == 2
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


@pytest.mark.slow
def test_a_nan_loss_stops_every_rank_and_keeps_the_last_good_checkpoint(tmp_path):
    spec = tmp_path / "linreg.nn"
    spec.write_text(LINREG.replace("gd(lr=0.2)", "gd(lr=50)"))
    began = time.perf_counter()
    result = invoke("train", str(spec), "--nproc", "2", "--out", str(tmp_path / "run"))
    assert result.exit_code == 1
    assert "the loss became" in result.stderr and "step 1" in result.stderr
    assert "Traceback" not in result.output and time.perf_counter() - began < 120
    tensors, meta = load_weights(tmp_path / "run" / "last.safetensors")
    assert meta["epoch"] == "1" and all(torch.isfinite(t).all() for t in tensors.values())


@pytest.mark.slow
def test_early_stopping_stops_every_rank_together(tmp_path):
    spec = tmp_path / "logreg.nn"
    spec.write_text(LOGREG_EARLY)
    run = nnspec.train(spec, out=tmp_path / "run", nproc=2, **QUIET)
    assert run.extra["finished"] and 2 < len(run.history) < 300  # stopped early, all ranks alike
    assert run.extra["ranks_equal"] and run.test_accuracy >= 0.9


def test_nproc_must_be_positive(spec, tmp_path):
    for value in ("0", "-3"):
        result = invoke("train", str(spec), "--nproc", value, "--out", str(tmp_path / "r"))
        assert result.exit_code == 2
        assert f"--nproc must be at least 1, got {value}" in result.stderr
        assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()
    with pytest.raises(TrainingError, match="at least 1"):
        nnspec.train(spec, nproc=0, out=tmp_path / "r", **QUIET)


def test_nproc_on_cuda_without_enough_gpus_is_a_clear_error(spec, tmp_path):
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    nproc = max(2, count + 1)
    result = invoke("train", str(spec), "--nproc", str(nproc), "--device", "cuda",
                    "--out", str(tmp_path / "r"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    if count == 0:
        assert "no CUDA device is available" in result.stderr and "--device cpu" in result.stderr
    else:
        assert "needs one GPU per process" in result.stderr
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_nproc_one_trains_in_this_process_as_before(spec, tmp_path):
    one = nnspec.train(spec, epochs=1, out=tmp_path / "a", nproc=1, **QUIET)
    plain = nnspec.train(spec, epochs=1, out=tmp_path / "b", **QUIET)
    assert "world_size" not in one.extra and not (tmp_path / "a" / "distributed.json").exists()
    a, b = one.module.state_dict(), plain.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_worker_exception_is_a_clear_error_in_the_parent():
    with pytest.raises(TrainingError) as caught:
        distributed.spawn(2, _fail_on_rank_1, (), device="cpu", log=lambda s: None)
    assert "rank 1 failed: ValueError: boom on purpose" in caught.value.message
    assert "test_distributed.py:" in caught.value.message  # where it was raised


def test_a_killed_worker_makes_the_parent_fail():
    began = time.perf_counter()
    with pytest.raises(TrainingError, match="rank 1 was killed by SIGKILL"):
        distributed.spawn(2, _killed_on_rank_1, (), device="cpu", log=lambda s: None)
    assert time.perf_counter() - began < 120


def test_a_bad_launch_environment_is_a_clear_error(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = invoke("train", str(spec), "--out", str(tmp_path / "r"))
    assert result.exit_code == 1 and "lacks MASTER_ADDR, MASTER_PORT" in result.stderr
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "70000")
    result = invoke("train", str(spec), "--out", str(tmp_path / "r"))
    assert result.exit_code == 1 and "MASTER_PORT=70000" in result.stderr
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("RANK", "2")
    result = invoke("train", str(spec), "--out", str(tmp_path / "r"))
    assert result.exit_code == 1 and "RANK=2 in the environment is outside 0..1" in result.stderr
    monkeypatch.setenv("RANK", "0")
    result = invoke("train", str(spec), "--nproc", "2", "--out", str(tmp_path / "r"))
    assert result.exit_code == 1 and "--nproc 2 inside a launch of 2 processes" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()


def test_a_port_clash_is_a_clear_error(spec, tmp_path, monkeypatch):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        for key, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0",
                           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
            monkeypatch.setenv(key, value)
        result = invoke("train", str(spec), "--out", str(tmp_path / "r"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"could not join the process group at 127.0.0.1:{port}" in result.stderr
    assert "another program holds that port" in result.stderr
    assert not (tmp_path / "r").exists()


def test_processes_launched_like_torchrun_train_together(ddp_run, spec, tmp_path):
    """Two `python -m nnspec train` processes with the torchrun environment set by hand."""
    port = distributed.free_port()
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", OMP_NUM_THREADS="1")
    if distributed._loopback_interface() is not None:
        env.setdefault("GLOO_SOCKET_IFNAME", distributed._loopback_interface())
    command = [sys.executable, "-m", "nnspec", "train", str(spec), "--out", str(tmp_path / "run")]
    try:
        workers = [subprocess.Popen(command, env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for r in range(2)]
    except OSError as exc:
        pytest.skip(f"cannot start python processes: {exc}")
    try:
        outputs = [w.communicate(timeout=300) for w in workers]
    except subprocess.TimeoutExpired:
        for w in workers:
            w.kill()
        pytest.fail("the launched processes did not finish in 300 s")
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
    assert "started by torchrun" in outputs[0][0] and "test: loss" in outputs[0][0]
    assert outputs[1][0] == ""  # rank 1 prints nothing; rank 0 reports
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    record = json.loads((tmp_path / "run" / "distributed.json").read_text())
    assert record["launcher"] == "torchrun" and record["ranks_equal"] is True
    spawned = json.loads((ddp_run[0] / "run" / "test.json").read_text())
    launched = json.loads((tmp_path / "run" / "test.json").read_text())
    assert abs(spawned["test_accuracy"] - launched["test_accuracy"]) <= 0.01


def test_a_batch_is_shared_evenly_and_padded_like_distributed_sampler():
    index = torch.arange(10, 15)  # 5 samples over 2 ranks: one duplicate pads rank 1
    group = [distributed.Group(rank=r, world_size=2, local_rank=r, backend="gloo", launcher="spawn")
             for r in range(2)]
    (a, real_a), (b, real_b) = distributed.shard(index, group[0]), distributed.shard(index, group[1])
    assert a.tolist() == [10, 12, 14] and real_a == 3
    assert b.tolist() == [11, 13, 10] and real_b == 2  # the padding comes last and is not real
    assert sorted(a.tolist()[:real_a] + b.tolist()[:real_b]) == index.tolist()
    one = distributed.shard(torch.tensor([7]), distributed.Group(3, 4, 3, "gloo", "spawn"))
    assert one[0].tolist() == [7] and one[1] == 0
    assert distributed.shard(index, None)[0] is index


# -- worker targets (module level: spawned processes import them by name) --------------------
def _checksums_of_ranks(group, log):
    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2)
    equal = distributed.gather(distributed.parameter_checksum(module), group)
    if group.rank == 1:
        with torch.no_grad():
            module.weight[0, 0] = torch.nextafter(module.weight[0, 0], torch.tensor(2.0))
    perturbed = distributed.gather(distributed.parameter_checksum(module), group)
    return equal, perturbed


def _fail_on_rank_1(group, log):
    if group.rank == 1:
        raise ValueError("boom on purpose")
    distributed.gather(None, group)  # rank 0 waits for rank 1; the parent must stop it


def _killed_on_rank_1(group, log):
    if group.rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    distributed.gather(None, group)
