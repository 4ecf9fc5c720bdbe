"""The training loop: a recipe, a compiled model and data in; a run directory out.

Determinism: the shuffle order and the augmentation of epoch e depend only on (seed, e);
the global RNG state (dropout) is saved with every checkpoint; learning rates are a pure
function of the epoch. A run stopped after epoch k and resumed therefore ends with the
same weights, bit for bit on CPU, as an uninterrupted run.

The loop runs in a :class:`~nnspec.runtime.loop.hooks.Collective` of processes (one by
default; a DistributedDataParallel group from runtime/experiments/distributed.py, where
every rank runs this loop on its share of each global batch and rank 0 decides and
writes), and a solver's epoch (:data:`EpochFit`) may replace
its gradient-descent epoch. It imports neither: the experiment that drives it passes them.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import math
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnspec.compiler.torch_build import GraphModule, build_module
from nnspec.runtime.data.augment import generator_for
from nnspec.runtime.data.prepare import PreparedData
from nnspec.runtime.loop import checkpoint as ckpt
from nnspec.runtime.loop.errors import TrainingError
from nnspec.runtime.loop.hooks import ALONE, Collective
from nnspec.runtime.loop.init import initialise
from nnspec.runtime.loop.objectives import LOSSES, MetricSums, predictions
from nnspec.runtime.loop.optim import (
    apply_max_norm,
    clip_gradients,
    make_optimizer,
    penalised_weights,
    penalty,
)
from nnspec.runtime.loop.report import (
    confusion_matrix,
    mean_squared_error,
    plot_curves,
    write_summary,
)
from nnspec.runtime.loop.transfer import frozen, load_initial, param_groups
from nnspec.spec.ir import Graph
from nnspec.spec.recipe.ir import CLASSIFICATION_LOSSES as CLASSIFICATION
from nnspec.spec.recipe.ir import Recipe


@dataclass
class Run:
    """What `train` returns: the run directory, the trained module and its numbers."""

    directory: Path
    module: GraphModule
    history: list[dict[str, float]]
    test: dict[str, float]
    best_epoch: int | None
    recipe: Recipe
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def test_accuracy(self) -> float | None:
        return self.test.get("test_accuracy")


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but no CUDA device is available",
                            help="use --device auto or cpu")
    return torch.device(requested)


EpochFit = Callable[["Trainer"], dict[str, Any]]
"""A solver's one epoch (runtime/loop/hooks.py): fits ``trainer.module`` in place of
gradient descent and returns the epoch's train metrics."""


class Trainer:
    def __init__(self, recipe: Recipe, graph: Graph, data: PreparedData, directory: Path, *,
                 spec_hash: str, device: str = "auto", amp: bool = False, compile: bool = False,
                 progress: bool = True, log: Callable[[str], None] = print,
                 group: Collective = ALONE, fit_epoch: EpochFit | None = None):
        self.plan, self.graph, self.data, self.directory = recipe, graph, data, directory
        self.spec_hash = spec_hash
        # many processes (DDP): rank 0 writes the files; runtime/experiments/distributed.py
        self.group = group
        self.writes = group.main
        self.solve = fit_epoch  # a solver's one epoch instead of gradient descent
        self.device = group.place(pick_device(device))  # NCCL: one GPU per local rank
        self.log = log
        self.progress = progress
        torch.manual_seed(recipe.seed)
        self.module = build_module(graph)
        initialise(self.module, graph, recipe.init.default, recipe.init.per_kind)
        # transfer: loaded weights, then frozen ones, before DDP sees which parameters train
        load_initial(self.module, recipe.init.source)
        frozen(self.module, recipe.freeze)
        self.module.to(self.device)
        self.forward: nn.Module = torch.compile(self.module) if compile else self.module
        # the training step's forward: in DDP (gradients averaged in backward) with a group;
        # evaluation keeps the bare module, whose shards may differ in batch count by rank
        self.step_forward: nn.Module = self.forward
        wrapped = group.wrap(self.module, self.device, recipe.seed)  # and its own dropout stream
        if wrapped is not self.module:
            self.step_forward = torch.compile(wrapped) if compile else wrapped
        self.loss_fn = LOSSES[recipe.loss]
        self.weights = penalised_weights(self.module)
        self.l1 = recipe.regularizer("l1") or 0.0
        self.l2 = recipe.regularizer("l2") or 0.0
        self.max_norm = recipe.regularizer("max_norm")
        params = param_groups(self.module, recipe)  # trainable only; lr_groups at their lr
        self.optimizer = make_optimizer(params, recipe.optimizer.kind, recipe.optimizer.lr,
                                        recipe.optimizer.hyperparameters(),
                                        weight_decay=recipe.regularizer("weight_decay") or 0.0)
        self.amp_dtype = None
        if amp:
            cuda = self.device.type == "cuda"
            self.amp_dtype = torch.float16 if cuda and not torch.cuda.is_bf16_supported() else torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nnspec-checkpoint")
        self._pending: Future[None] | None = None
        self.history: list[dict[str, float]] = []
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.stale = 0
        self.start_epoch = 0

    # -- one epoch ------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _batches(self, n: int, epoch: int | None):
        size = self.plan.batch or n
        order = torch.randperm(n, generator=generator_for(self.plan.seed, epoch, 1)) \
            if epoch is not None else torch.arange(n)
        for start in range(0, n, size):
            yield order[start:start + size]

    def train_epoch(self, epoch: int) -> dict[str, float]:
        plan, data = self.plan, self.data
        if self.solve is not None:  # θ in closed form, kNN's stored split: the run's one epoch
            return self.solve(self)
        self.module.train()
        for group in self.optimizer.param_groups:
            group["lr"] = plan.lr_at(epoch) * group.get("lr_scale", 1.0)  # lr_groups: α_g(e)
        sums = MetricSums(plan.loss, plan.metrics)
        augment_rng = generator_for(plan.seed, epoch, 2, *self.group.stream)  # each rank its own
        x_all, y_all = data.train
        steps = math.ceil(len(x_all) / (plan.batch or len(x_all)))
        bar = self._bar(epoch, steps)
        for step, index in enumerate(self._batches(len(x_all), epoch)):
            index, real = self.group.shard(index)  # this rank's share; all of it alone
            x = x_all[index]
            if data.augment is not None:
                x = data.augment.train(x, augment_rng)
            x, y = x.to(self.device, non_blocking=True), y_all[index].to(self.device, non_blocking=True)
            with self._autocast():
                output = self.step_forward(x)
                loss = self.loss_fn(output.float(), y)
            extra = penalty(self.weights, self.l1, self.l2)
            total = loss + extra if extra is not None else loss
            # one host sync per step, the price of naming the failing step; with a group the
            # value is all-reduced, so every rank sees a NaN anywhere and all stop together
            value = self.group.loss_value(total)
            if not math.isfinite(value):
                raise TrainingError(
                    f"the loss became {value} at epoch {epoch + 1}, step {step + 1}",
                    help="lower the learning rate, clip gradients (`clip norm(1.0)`), or check the "
                    "data for NaN values; the last good checkpoint is kept")
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(total).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                total.backward()
            if plan.clip is not None:
                clip_gradients([p for g in self.optimizer.param_groups for p in g["params"]],
                               plan.clip.kind, plan.clip.value)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            if self.max_norm is not None:
                apply_max_norm(self.weights, self.max_norm)
            if real == len(index):
                sums.add(output, y, loss)
            elif real:  # the padding that evened the ranks' shares is no sample of the epoch
                sums.add(output[:real], y[:real], self.loss_fn(output[:real].float(), y[:real]))
            if bar is not None:
                done = (step + 1) * len(index)
                rate = done / max(time.perf_counter() - bar[2], 1e-9)
                shown = sums.result()
                metric = f"acc {shown['accuracy']:.3f}" if "accuracy" in shown else ""
                bar[0].update(bar[1], advance=1, loss=shown["loss"], metric=metric, rate=rate)
        if bar is not None:
            bar[0].stop()
        self.group.reduce_sums(sums)  # exact totals over the whole training split
        return sums.result("train_")

    def _bar(self, epoch: int, steps: int):
        if not self.progress or not sys.stdout.isatty():
            return None  # a bar only where a person watches; logs stay clean
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{self.plan.epochs}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f} {task.fields[metric]}"),
            TextColumn("{task.fields[rate]:,.0f} samples/s"), TimeElapsedColumn(), transient=True)
        task = progress.add_task("train", total=steps, loss=float("nan"), metric="", rate=0.0)
        progress.start()
        return progress, task, time.perf_counter()

    @torch.no_grad()
    def evaluate(self, split: tuple[torch.Tensor, torch.Tensor], prefix: str,
                 keep: bool = False) -> tuple[dict[str, float], torch.Tensor | None]:
        self.module.eval()
        sums = MetricSums(self.plan.loss, self.plan.metrics)
        sharded = self.group.world_size > 1 and not keep  # validation: a share per rank, reduced
        if sharded:
            self.group.sync_buffers(self.module)  # rank 0's batch-norm statistics
            split = self.group.stride(split)
        x_all, y_all = split
        outputs = []
        for start in range(0, len(x_all), 512):
            x = x_all[start:start + 512]
            if self.data.augment is not None:
                x = self.data.augment.eval(x)
            x, y = x.to(self.device), y_all[start:start + 512].to(self.device)
            with self._autocast():
                output = self.forward(x).float()
            sums.add(output, y, self.loss_fn(output, y))
            if keep:
                outputs.append(output.cpu())
        if sharded:
            self.group.reduce_sums(sums)
        return sums.result(prefix), (torch.cat(outputs) if keep and outputs else None)

    # -- the run -------------------------------------------------------------------------
    def monitor_value(self, row: dict[str, float]) -> float | None:
        """The watched metric, negated when larger is better; val_loss without early stop."""
        stop = self.plan.early_stop
        key, mode = (stop.monitor, stop.mode) if stop is not None else ("val_loss", "min")
        if key not in row:
            key, mode = "train_loss", "min"
        return -row[key] if mode == "max" else row[key]

    def fit(self, stop_after: int | None = None, checkpoint_seconds: float = 5.0,
            log_seconds: float = 1.0) -> None:
        """Train to the recipe's last epoch (or early stop, or ``stop_after``).

        Checkpoints are written at least every ``checkpoint_seconds`` and at the end: with
        thousands of tiny epochs (full-batch gradient descent) a write per epoch would cost
        more than the training. Epoch lines are printed at most every ``log_seconds``.
        """
        # the compiler's objects live as long as the run: keep the cyclic GC from rescanning
        # them at every collection the training step's temporaries trigger
        gc.freeze()
        try:
            self._fit(stop_after, checkpoint_seconds, log_seconds)
        finally:
            gc.unfreeze()
            self.wait_for_writes()

    def _fit(self, stop_after: int | None, checkpoint_seconds: float, log_seconds: float) -> None:
        plan = self.plan
        last_save = last_log = time.perf_counter()
        best_state: dict[str, torch.Tensor] | None = None
        for epoch in range(self.start_epoch, plan.epochs):
            began = time.perf_counter()
            row: dict[str, float] = {"epoch": epoch + 1}
            row.update(self.train_epoch(epoch))
            if len(self.data.val[0]):
                row.update(self.evaluate(self.data.val, "val_")[0])
            if self.solve is None:  # a closed-form solve has no learning rate
                row["lr"] = self.optimizer.param_groups[0]["lr"]
            seconds = time.perf_counter() - began
            row["seconds"] = seconds
            row["samples_per_s"] = len(self.data.train[0]) / max(seconds, 1e-9)
            self.history.append(row)
            value = self.monitor_value(row)
            min_delta = plan.early_stop.min_delta if plan.early_stop is not None else 0.0
            improved = value is not None and (self.best is None or value < self.best - min_delta)
            due = time.perf_counter() - last_save >= checkpoint_seconds
            # with a group rank 0 decides (by its numbers and its clock), so all ranks branch
            # alike: the same early stop, the same checkpoint epochs
            improved, due = self.group.agree(improved, due)
            if improved:
                self.best, self.best_epoch, self.stale = value, epoch + 1, 0
                if self.writes:
                    best_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
            else:
                self.stale += 1
            stop = plan.early_stop
            stopping = stop is not None and self.stale >= stop.patience
            last = stopping or epoch + 1 == plan.epochs or (stop_after is not None and epoch + 1 >= stop_after)
            now = time.perf_counter()
            if last or now - last_log >= log_seconds or epoch == self.start_epoch:
                self.log(_epoch_line(row, plan.epochs))
                last_log = now
            # the first epoch is always saved: a run that fails later keeps a good checkpoint
            if last or epoch == self.start_epoch or due:
                self.save(epoch, best_state)
                best_state, last_save = None, time.perf_counter()
            if stopping:
                self.log(f"early stop: {stop.monitor} did not improve for {stop.patience} epochs")
            if last:
                break

    def save(self, epoch: int, best_state: dict[str, torch.Tensor] | None) -> None:
        """One generation: last weights, best weights (when they changed since the last
        save), the history and the training state, committed together by manifest.json
        (``ckpt.commit_generation``; docs/runs.md).

        The state is copied now and written by a background thread, so the epoch loop does
        not wait for serialisation and fsync; the next save, the end of `fit` (also when it
        fails) and `finish` wait for the write, so nothing is ever half written or lost.
        With a group every rank calls this (its RNG state is gathered); rank 0 writes.
        """
        rng_states = self.group.rng_states()
        if not self.writes:
            return
        # the previous write first: whether best.safetensors exists is decided by its files,
        # and the generation number by its manifest
        self.wait_for_writes()
        generation = ckpt.next_generation(self.directory)
        best_row = self.history[self.best_epoch - 1] if self.best_epoch else self.history[-1]
        meta = {"spec_sha256": self.spec_hash, "model": self.graph.name}
        last = {k: v.detach().to("cpu", copy=True) for k, v in self.module.state_dict().items()}
        write_best = best_state is not None or not (self.directory / "best.safetensors").exists()
        state = {
            "epoch": epoch + 1, "generation": generation, "spec_sha256": self.spec_hash,
            "optimizer": copy.deepcopy(self.optimizer.state_dict()), "rng": torch.get_rng_state(),
            "history": json.dumps(self.history),
            "best": self.best if self.best is not None else float("nan"),
            "best_epoch": self.best_epoch or 0, "stale": self.stale,
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
        }
        if rng_states is not None:  # each rank's dropout stream, for an exact resume
            state["world_size"] = len(rng_states)
            state["rng_ranks"] = torch.stack(rng_states)
        writes = [("last" + suffix, write) for suffix, write in ckpt.weights_writers(
            last, {**meta, "epoch": epoch + 1, "metrics": self.history[-1]})]
        if write_best:
            writes += [("best" + suffix, write) for suffix, write in ckpt.weights_writers(
                best_state or last, {**meta, "epoch": int(best_row["epoch"]), "metrics": best_row})]
        metrics = "".join(json.dumps(h) + "\n" for h in self.history)
        writes.append(("metrics.jsonl", lambda tmp: tmp.write_text(metrics, encoding="utf-8")))
        writes.append(("state.pt", ckpt.state_writer(state)))
        self._pending = self._writer.submit(ckpt.commit_generation, self.directory, generation,
                                            epoch + 1, writes, self.history[-1])

    def wait_for_writes(self) -> None:
        """Block until the last checkpoint is on disk; re-raise its error, if any."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        """Wait for the checkpoint writes and stop the writer (a run that does not `finish`)."""
        self.wait_for_writes()
        self._writer.shutdown(wait=True)

    def resume(self, directory: Path) -> None:
        """Continue from the committed generation of ``directory``, which the experiment
        has recovered and verified by its hashes (``ckpt.recover``: once, by the process
        that writes); here, in every process, the epochs of its files must agree."""
        manifest = ckpt.read_manifest(directory)
        if manifest is not None and manifest["epoch"] == 0:
            return  # a run that stopped in its first epoch: it starts again from its seed
        state = ckpt.load_state(directory / "state.pt")
        if state.get("spec_sha256") != self.spec_hash:
            raise TrainingError(
                f"`{directory}` was trained from a different spec (its hash differs)",
                help="resume with the spec file the run was started from, or start a new run")
        ckpt.check_epochs(directory, state)
        tensors, _ = ckpt.load_weights(directory / "last.safetensors")
        ckpt.check_state_dict(self.module.state_dict(), tensors, directory / "last.safetensors")
        self.module.load_state_dict(tensors)
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        self._resume_streams(state)
        self.history = json.loads(state["history"])
        self.best = None if math.isnan(state["best"]) else float(state["best"])
        self.best_epoch = int(state["best_epoch"]) or None
        self.stale = int(state["stale"])
        self.start_epoch = int(state["epoch"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def _resume_streams(self, state: dict[str, Any]) -> None:
        """Each rank's RNG stream as saved; a note when the number of processes changed."""
        saved = int(state.get("world_size", 1))
        now = self.group.world_size
        self.group.restore_stream(state, self.plan.seed)
        if saved != now:
            self.log(f"note: the run was trained with {saved} process{'es' if saved > 1 else ''} and "
                     f"goes on with {now}: it continues equal in expectation, not bit for bit")

    def finish(self) -> dict[str, float]:
        """Restore the best weights when early stopping watched them; test; write reports.

        With a group rank 0 does all of this; the others receive its test metrics.
        """
        self.wait_for_writes()
        if not self.writes:
            self._writer.shutdown(wait=True)
            return self.group.broadcast(None)
        if self.plan.early_stop is not None and self.best_epoch is not None:
            tensors, _ = ckpt.load_weights(self.directory / "best.safetensors")
            self.module.load_state_dict(tensors)
        test, outputs = ({}, None)
        if len(self.data.test[0]):
            test, outputs = self.evaluate(self.data.test, "test_", keep=True)
        confusion, reconstruction = None, None
        # class scores [N, C] or per-pixel maps [N, C, H, W] (pixels counted alike)
        labelled = self.plan.loss in CLASSIFICATION and self.plan.target == "labels"
        if outputs is not None and labelled and outputs.dim() in (2, 4):
            classes = max(self.data.num_classes or 2, 2)
            confusion = confusion_matrix(predictions(outputs, self.plan.loss).numpy(),
                                         self.data.test[1].numpy().astype(np.int64), classes)
        if outputs is not None and self.plan.target == "input":
            reconstruction = mean_squared_error(outputs, self.data.test[1])
        if self.history:
            plot_curves(self.directory / "curves.png", self.history)
        write_summary(
            self.directory / "summary.md", model=self.graph.name, recipe=self.plan.name,
            epochs_run=len(self.history), best_epoch=self.best_epoch, test=test, history=self.history,
            task="classification" if self.plan.loss in CLASSIFICATION else "regression",
            confusion=confusion, class_names=self.data.class_names,
            extra={"data": self.data.description, "device": str(self.device)},
            reconstruction=reconstruction,
        )
        ckpt.write_text(self.directory / "test.json", json.dumps(test, indent=2) + "\n")
        self._writer.shutdown(wait=True)
        return self.group.broadcast(test)


def _epoch_line(row: dict[str, float], epochs: int) -> str:
    parts = [f"epoch {int(row['epoch'])}/{epochs}"]
    for key, value in row.items():
        if key in ("epoch", "seconds", "samples_per_s"):
            continue
        parts.append(f"{key} {value:.4g}")
    parts.append(f"{row['samples_per_s']:.0f} samples/s")
    return "  ".join(parts)
