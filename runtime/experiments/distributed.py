"""Training with many processes: DistributedDataParallel over gloo (CPU) or NCCL (CUDA).

Two ways in. ``nnspec train FILE --nproc N`` starts N fresh worker processes here
(``spawn``): the parent finds a free port on 127.0.0.1 (it binds port 0), starts the
workers, relays rank 0's log lines, turns a worker's exception into the same error in the
parent, and stops every worker when one fails or is killed. ``torchrun --nproc-per-node N
-m nnspec train FILE`` starts the processes itself; ``from_environment`` reads RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT and each process joins the group.

What every rank does (see runtime/loop/trainer.py, to which a :class:`Group` is the
``Collective`` of runtime/loop/hooks.py):

* the batch is global: the recipe's ``batch`` B is the batch of one optimisation step over
  all processes, as with one process; each step's B indices (of the epoch's seeded
  permutation, the same on every rank) are padded to a multiple of N by repeating the first
  ones, as DistributedSampler pads, and rank r takes positions r, r + N, ... (``shard``), so
  every rank takes ceil(B / N) samples and the same number of steps; DDP averages the
  gradients, so a step follows the mean loss over the global batch (padding aside);
* the padded duplicates are left out of the metrics, and the per-epoch sums are all-reduced
  (``reduce_sums``): the logged train metrics are exact totals over the training split;
* validation is sharded (rank r evaluates samples r, r + N, ..., with rank 0's batch-norm
  statistics) and its sums all-reduced; the test split is evaluated by rank 0 alone;
* each step's loss is all-reduced (``loss_value``), so a NaN on any rank stops every rank
  at the same step; rank 0 decides early stopping and when to checkpoint and ``agree``
  broadcasts the decision, so all ranks stop together; only rank 0 writes files.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import pickle
import queue as queue_module
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnspec.runtime.loop.trainer import TrainingError

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
LOOPBACK = "127.0.0.1"
TIMEOUT = datetime.timedelta(minutes=30)  # torch's default for a collective that waits


# -- the group --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Group:
    """One process's view of the process group."""

    rank: int
    world_size: int
    local_rank: int
    backend: str  # "gloo" (CPU) or "nccl" (CUDA)
    launcher: str  # "spawn" (--nproc) or "torchrun" (the environment)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        """Where collective tensors live: the process's GPU for NCCL, else the CPU."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    # -- the training loop's Collective (runtime/loop/hooks.py), by the functions below ----
    @property
    def stream(self) -> tuple[int, ...]:
        return (self.rank,)

    def place(self, device: torch.device) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else device

    def wrap(self, module: nn.Module, device: torch.device, seed: int) -> nn.Module:
        torch.manual_seed(rank_seed(seed, self.rank))  # the rank's own dropout stream
        return wrap(module, self, device)

    def shard(self, index: torch.Tensor) -> tuple[torch.Tensor, int]:
        return shard(index, self)

    def stride(self, split: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return stride(split, self)

    def loss_value(self, total: torch.Tensor) -> float:
        return loss_value(total, self)

    def reduce_sums(self, sums: Any) -> None:
        reduce_sums(sums, self)

    def sync_buffers(self, module: nn.Module) -> None:
        sync_buffers(module, self)

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        return agree(self, *flags)

    def broadcast(self, value: Any) -> Any:
        return broadcast(value, self)

    def rng_states(self) -> list[torch.Tensor]:
        return rng_states(self)

    def restore_stream(self, state: Mapping[str, Any], seed: int) -> None:
        """The rank's saved stream when the run had as many processes, else a fresh stream
        of its own for the epoch it resumes at."""
        streams = state.get("rng_ranks")
        if streams is not None and int(state.get("world_size", 1)) == self.world_size:
            torch.set_rng_state(streams[self.rank].clone())
        else:
            torch.manual_seed(rank_seed(seed, self.rank, int(state["epoch"])))


@dataclass(frozen=True)
class Launch:
    """A torchrun-style launch read from the environment."""

    rank: int
    world_size: int
    local_rank: int
    addr: str
    port: int


def from_environment(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The launch torchrun (or a script) described in the environment, or None.

    None when neither RANK nor WORLD_SIZE is set, and when WORLD_SIZE is 1 (one process
    trains exactly as without a launcher).
    """
    env = os.environ if environ is None else environ
    if not env.get("RANK") and not env.get("WORLD_SIZE"):
        return None
    how = "start the processes with `torchrun --nproc-per-node N -m nnspec train FILE`, " \
          "or let nnspec start them with `nnspec train FILE --nproc N`"
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if not env.get(k)]
    if missing:
        raise TrainingError(f"the environment describes a distributed launch but lacks {', '.join(missing)}",
                     help=how)
    values: dict[str, int] = {}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        raw = env.get(key, env["RANK"] if key == "LOCAL_RANK" else "")
        try:
            values[key] = int(raw)
        except ValueError:
            raise TrainingError(f"{key}={raw!r} in the environment is not an integer", help=how) from None
    world, rank, local, port = (values["WORLD_SIZE"], values["RANK"], values["LOCAL_RANK"],
                                values["MASTER_PORT"])
    if world < 1:
        raise TrainingError(f"WORLD_SIZE={world} in the environment: it must be at least 1", help=how)
    if not 0 <= rank < world:
        raise TrainingError(f"RANK={rank} in the environment is outside 0..{world - 1} (WORLD_SIZE={world})",
                     help=how)
    if local < 0:
        raise TrainingError(f"LOCAL_RANK={local} in the environment is negative", help=how)
    if not 0 < port < 65536:
        raise TrainingError(f"MASTER_PORT={port} in the environment is not a TCP port (1..65535)", help=how)
    if world == 1:
        return None
    return Launch(rank=rank, world_size=world, local_rank=local, addr=env["MASTER_ADDR"], port=port)


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` now: the kernel's choice for a bind to port 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def resolve_device(requested: str, nproc: int, local_rank: int | None = None) -> str:
    """"cpu" (gloo) or "cuda" (NCCL, one GPU per local rank) for ``nproc`` processes, or a
    TrainingError that says why the request cannot be met."""
    import torch.distributed as dist

    if not dist.is_available():
        raise TrainingError("this PyTorch build has no torch.distributed: it cannot train with many processes",
                     help="train with one process (drop --nproc), or install a PyTorch build with "
                     "distributed support")
    if requested not in ("auto", "cpu", "cuda"):
        raise TrainingError(f"device must be auto, cpu or cuda, got {requested!r}")
    needed = nproc if local_rank is None else local_rank + 1
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    nccl = count > 0 and dist.is_nccl_available()
    if requested == "auto":
        return "cuda" if nccl and count >= needed else "cpu"
    if requested == "cpu":
        if not dist.is_gloo_available():
            raise TrainingError("this PyTorch build has no gloo backend: it cannot train many CPU processes")
        return "cpu"
    if count == 0:
        raise TrainingError(f"--device cuda was asked for with {nproc} processes but no CUDA device is "
                     "available", help=f"use --device cpu to train {nproc} processes on the CPU (gloo)")
    if not nccl:
        raise TrainingError("--device cuda with many processes needs NCCL, which this PyTorch build lacks",
                     help="use --device cpu (gloo)")
    if count < needed:
        what = f"--nproc {nproc}" if local_rank is None else f"LOCAL_RANK={local_rank}"
        raise TrainingError(f"{what} needs one GPU per process, but {count} "
                     f"{'is' if count == 1 else 'are'} visible",
                     help=f"use --nproc {count} or fewer, or --device cpu")
    return "cuda"


joined = False  # this process joined a group (the CLI then leaves without C++ destructors)


def setup(rank: int, world_size: int, local_rank: int, device: str, *, launcher: str,
          init_method: str) -> Group:
    """Join the process group (gloo for "cpu", NCCL for "cuda" on GPU ``local_rank``)."""
    import torch.distributed as dist

    backend = "nccl" if device == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size,
                                timeout=TIMEOUT)
    except (RuntimeError, ValueError, OSError) as exc:
        reason = _first_line(exc)
        clash = "address already in use" in reason.lower() or "eaddrinuse" in reason.lower()
        where = init_method.removeprefix("tcp://") if init_method.startswith("tcp://") else \
            f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        raise TrainingError(f"rank {rank} could not join the process group at {where}: {reason}",
                     help="another program holds that port: choose another MASTER_PORT (or let "
                     "`--nproc` pick a free one)" if clash else
                     "check MASTER_ADDR / MASTER_PORT and that every rank was started") from None
    global joined
    joined = True
    return Group(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend,
                 launcher=launcher)


def teardown() -> None:
    """Leave the process group. After a clean run every rank first waits for the others:
    gloo aborts a process ("terminate called without an active exception") whose group is
    destroyed while a peer's collective threads still talk to it. After an error there is
    no waiting: a peer may be gone."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if sys.exc_info()[0] is None:
            dist.barrier()
        dist.destroy_process_group()


# -- starting N processes -------------------------------------------------------------------
def spawn(nproc: int, target: Callable[..., Any], args: tuple[Any, ...], *, device: str,
          log: Callable[[str], None] = print) -> list[Any]:
    """Run ``target(group, log, *args)`` in ``nproc`` fresh processes joined in one group.

    Returns the targets' results by rank. Rank 0's ``log`` lines are printed here by ``log``.
    When a worker raises, the other workers are stopped and the exception is raised here:
    nnspec's own errors (TrainingError, DataError, CheckpointError) as they are, any other
    as a TrainingError naming the rank, the exception and where it was raised. A worker that
    dies without a word (killed, out of memory) is a TrainingError naming its signal.
    """
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    inbox = context.Queue()
    port = free_port()
    env = {}
    if device == "cpu" and "GLOO_SOCKET_IFNAME" not in os.environ:
        loopback = _loopback_interface()
        if loopback is not None:
            env["GLOO_SOCKET_IFNAME"] = loopback  # the group talks over loopback only
    processes = [
        context.Process(target=_entry, name=f"nnspec-rank-{rank}", daemon=False,
                        args=(rank, nproc, port, device, env, os.getpid(), target, args, inbox))
        for rank in range(nproc)
    ]
    results: dict[int, Any] = {}
    failure: BaseException | None = None
    try:
        for process in processes:
            process.start()
        while len(results) < nproc and failure is None:
            try:
                message = inbox.get(timeout=0.1)
            except queue_module.Empty:
                failure = _dead_worker(processes, results, inbox, log)
                continue
            failure = _receive(message, results, log)
            if failure is not None:  # a peer's error may be the echo of a rank that was killed
                failure = _killed(processes, results) or failure
        if failure is not None:
            raise failure
        for process in processes:
            process.join(timeout=60)
    finally:
        _stop(processes)  # a no-op for those that ended; the others are stopped
        inbox.close()
    return [results[rank] for rank in range(nproc)]


def _receive(message: tuple[str, int, Any], results: dict[int, Any],
             log: Callable[[str], None]) -> BaseException | None:
    kind, rank, body = message
    if kind == "log":
        log(body)
    elif kind == "done":
        results[rank] = body
    else:  # "error": the first error is the cause; later ones are its consequences
        return _rebuild(body)
    return None


def _killed(processes, results: dict[int, Any]) -> BaseException | None:
    """The error for a worker killed by a signal, if one was. A moment's grace to see it: a
    killed process's exit code appears only once the kernel has torn it down, which for a
    process holding torch took longer than 0.2 s on a loaded machine (its peer's connection
    error came first)."""
    deadline = time.monotonic() + 1.0
    while True:
        for rank, process in enumerate(processes):
            if rank not in results and process.exitcode is not None and process.exitcode < 0:
                return _signal_error(rank, process.exitcode)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def _signal_error(rank: int, code: int) -> BaseException:
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return TrainingError(f"the training process of rank {rank} was killed by {name}; the other processes "
                  "were stopped")


def _dead_worker(processes, results: dict[int, Any], inbox, log) -> BaseException | None:
    """An error for a worker that exited without a result, or None while all are well."""
    for rank, process in enumerate(processes):
        code = process.exitcode
        if code is None or rank in results:
            continue
        # what the worker put on the queue before it exited may still be in the pipe
        deadline = time.monotonic() + 2.0
        while rank not in results and time.monotonic() < deadline:
            try:
                failure = _receive(inbox.get(timeout=0.1), results, log)
            except queue_module.Empty:
                continue
            if failure is not None:
                return failure
        if rank in results:
            continue
        if code < 0:
            return _signal_error(rank, code)
        return TrainingError(f"the training process of rank {rank} exited with status {code} without "
                      "reporting an error; the other processes were stopped",
                      help="its own output above says more; a script that calls "
                      "nnspec.train(..., nproc=N) must guard its top level with "
                      "`if __name__ == \"__main__\":`, as workers start by importing it")
    return None


def _stop(processes) -> None:
    processes = [p for p in processes if p.pid is not None]  # those started
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + 5.0
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(timeout=5.0)


def _entry(rank: int, world_size: int, port: int, device: str, env: dict[str, str], parent: int,
           target: Callable[..., Any], args: tuple[Any, ...], inbox) -> None:
    """A worker: join the group, run the target, report its result or its error."""
    os.environ.update(env)
    if "OMP_NUM_THREADS" not in os.environ:  # N processes share the cores, as torchrun does
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()

    def relay(line: str) -> None:
        inbox.put(("log", rank, line))

    try:
        group = setup(rank, world_size, rank, device, launcher="spawn",
                      init_method=f"tcp://{LOOPBACK}:{port}")
        result = target(group, relay if rank == 0 else _quiet, *args)
        inbox.put(("done", rank, result))
        teardown()
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the parent
        inbox.put(("error", rank, portable_error(exc, rank)))
        inbox.close()
        inbox.join_thread()  # the report is in the pipe before the peers see this rank go
        os._exit(1)  # no clean-up that could wait on peers stuck in a collective
    inbox.close()
    inbox.join_thread()


def _watch_parent(parent: int) -> None:
    """End a worker whose parent died (killed): it must not train on alone."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _quiet(line: str) -> None:
    return None


def portable_error(exc: BaseException, rank: int) -> bytes:
    """The exception, pickled: nnspec's own errors as they are, any other as a TrainingError
    that names the rank, the exception and the line that raised it."""
    from nnspec.runtime.data.sources import DataError
    from nnspec.runtime.loop.checkpoint import CheckpointError

    if isinstance(exc, (TrainingError, CheckpointError, DataError)):
        try:
            blob = pickle.dumps(exc)
            pickle.loads(blob)
            return blob
        except Exception:  # noqa: BLE001 - fall back to the description below
            pass
    if isinstance(exc, KeyboardInterrupt):
        return pickle.dumps(TrainingError(f"the training process of rank {rank} was interrupted"))
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ is not None else []
    at = f" (raised at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    text = _first_line(exc)
    return pickle.dumps(TrainingError(
        f"the training process of rank {rank} failed: {type(exc).__name__}"
        f"{': ' + text if text else ''}{at}"))


def _rebuild(blob: bytes) -> BaseException:
    return pickle.loads(blob)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= 300 else line[:297] + "..."


def _loopback_interface() -> str | None:
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return None
    return next((n for n in names if n in ("lo", "lo0")), None)


# -- helpers for the training loop (all no-ops without a group) -----------------------------
def agree(group: Group | None, *flags: bool) -> tuple[bool, ...]:
    """Rank 0's decisions, broadcast so that every rank takes the same branch."""
    if group is None:
        return flags
    import torch.distributed as dist

    vector = torch.tensor([1.0 if f else 0.0 for f in flags], device=group.device)
    dist.broadcast(vector, src=0)
    return tuple(bool(v) for v in vector.tolist())


def broadcast(value: Any, group: Group | None) -> Any:
    """Rank 0's ``value`` on every rank (a picklable object)."""
    if group is None:
        return value
    import torch.distributed as dist

    box = [value if group.main else None]
    dist.broadcast_object_list(box, src=0, device=group.device)
    return box[0]


def gather(value: Any, group: Group | None) -> list[Any]:
    """Every rank's ``value`` (a picklable object), by rank, on every rank."""
    if group is None:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * group.world_size
    dist.all_gather_object(out, value)
    return out


def agreed(group: Group, work: Callable[[], Any], *, main_only: bool = False) -> Any:
    """Run ``work`` on every rank (or on rank 0, its result broadcast); when it fails on
    any rank, every rank raises the first failing rank's error, so none waits forever."""
    result, failure = None, None
    if not main_only or group.main:
        try:
            result = work()
        except Exception as exc:  # noqa: BLE001 - reported to every rank
            failure = portable_error(exc, group.rank)
    for blob in gather(failure, group):
        if blob is not None:
            raise _rebuild(blob)
    return broadcast(result, group) if main_only else result


def shard(index: torch.Tensor, group: Group | None) -> tuple[torch.Tensor, int]:
    """This rank's share of one global batch, and how many of its first samples are real.

    The batch is padded to a multiple of N with its first indices (as DistributedSampler
    pads an epoch), and rank r takes positions r, r + N, ...: the same count on every rank,
    the padded duplicates last.
    """
    if group is None:
        return index, len(index)
    n, world, rank = len(index), group.world_size, group.rank
    per_rank = -(-n // world)
    padded = index[torch.arange(per_rank * world) % n]
    return padded[rank::world], len(range(rank, n, world))


def stride(split: tuple[torch.Tensor, torch.Tensor], group: Group | None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples r, r + N, ... of an evaluation split: a partition, no padding."""
    if group is None:
        return split
    x, y = split
    return x[group.rank::group.world_size], y[group.rank::group.world_size]


def loss_value(total: torch.Tensor, group: Group | None) -> float:
    """The step's loss as a number; with a group, the mean over ranks (one all-reduce), so
    a NaN or infinity on any rank is seen by every rank at the same step."""
    if group is None:
        return total.item()
    import torch.distributed as dist

    value = total.detach().float().reshape(1).to(group.device, copy=True)
    dist.all_reduce(value)
    return value.item() / group.world_size


def reduce_sums(sums: Any, group: Group | None) -> None:
    """All-reduce a MetricSums in place: counts and every running sum, over all ranks."""
    if group is None:
        return
    import torch.distributed as dist

    keys = sorted(set().union(*gather(sorted(sums.sums), group)))
    parts = [torch.tensor([float(sums.count), float(sums.elements)], dtype=torch.float64)]
    parts += [sums.sums[k].detach().to("cpu", torch.float64).reshape(1) if k in sums.sums
              else torch.zeros(1, dtype=torch.float64) for k in keys]
    vector = torch.cat(parts).to(group.device)
    dist.all_reduce(vector)
    values = vector.cpu()
    sums.count, sums.elements = int(values[0].item()), int(values[1].item())
    sums.sums = {k: values[2 + i].clone() for i, k in enumerate(keys)}


def sync_buffers(module: nn.Module, group: Group | None) -> None:
    """Rank 0's buffers (batch-norm statistics) on every rank."""
    if group is None:
        return
    import torch.distributed as dist

    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


def wrap(module: nn.Module, group: Group | None, device: torch.device) -> nn.Module:
    """The module in DistributedDataParallel (gradients averaged over ranks in backward)."""
    if group is None or not any(p.requires_grad for p in module.parameters()):
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def rank_seed(seed: int, rank: int, *keys: int) -> int:
    """The seed of rank ``rank``'s global RNG (dropout): a stream of its own."""
    entropy = [int(seed), 0x5EED, int(rank), *(int(k) for k in keys)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def rng_states(group: Group | None) -> list[torch.Tensor]:
    """Every rank's CPU RNG state, by rank (saved so that a resume continues each stream)."""
    return gather(torch.get_rng_state(), group)


def parameter_checksum(module: nn.Module) -> str:
    """sha256 over every parameter: name, dtype, shape and bytes, in module order."""
    digest = hashlib.sha256()
    for name, parameter in module.named_parameters():
        tensor = parameter.detach().to("cpu").contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{list(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def state_bytes(module: nn.Module) -> bytes:
    """The module's state dict, serialised (tensors only) to cross a process boundary."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().to("cpu") for k, v in module.state_dict().items()}, buffer)
    return buffer.getvalue()


def load_state_bytes(blob: bytes) -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


__all__ = [
    "Group", "LAUNCH_VARIABLES", "Launch", "agree", "agreed", "broadcast", "free_port",
    "from_environment", "gather", "loss_value", "parameter_checksum", "rank_seed", "reduce_sums",
    "resolve_device", "rng_states", "setup", "shard", "spawn", "stride", "sync_buffers", "teardown",
    "wrap",
]
