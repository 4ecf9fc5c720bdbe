"""How experiments plug into the training loop without the loop knowing them.

Two seams. A :class:`Collective` is the set of processes the loop runs in: the loop asks
it for this process's share of a batch, for sums and decisions over all processes, and
for its own random stream; :data:`ALONE` is one process, where every answer is the local
one. Process groups (DistributedDataParallel, runtime/experiments/distributed.py) provide
another. An ``EpochFit`` (trainer.py: a function of the Trainer) replaces the loop's
gradient-descent epoch: a solver that fits the model in one pass (the normal equation,
kNN's stored samples) is such a function, given by the experiment that chose it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from nnspec.runtime.loop.objectives import MetricSums

Split = tuple[torch.Tensor, torch.Tensor]


class Collective(Protocol):
    """The processes one run trains in, as the loop sees them."""

    rank: int
    world_size: int

    @property
    def main(self) -> bool:
        """This process writes the run's files and decides for all (rank 0)."""
        ...

    @property
    def stream(self) -> tuple[int, ...]:
        """Keys that give this process random draws of its own (augmentation)."""
        ...

    def place(self, device: torch.device) -> torch.device:
        """The device this process trains on, given the one asked for."""
        ...

    def wrap(self, module: nn.Module, device: torch.device, seed: int) -> nn.Module:
        """The module the training step calls (gradients averaged over the processes), with
        this process's dropout stream seeded from ``seed``; ``module`` itself when alone."""
        ...

    def shard(self, index: torch.Tensor) -> tuple[torch.Tensor, int]:
        """This process's share of one batch, and how many of its first samples are real."""
        ...

    def stride(self, split: Split) -> Split:
        """This process's part of an evaluation split."""
        ...

    def loss_value(self, total: torch.Tensor) -> float:
        """The step's loss as one number every process sees."""
        ...

    def reduce_sums(self, sums: MetricSums) -> None:
        """Metric sums over every process, in place."""
        ...

    def sync_buffers(self, module: nn.Module) -> None:
        """The main process's buffers (batch-norm statistics) everywhere."""
        ...

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """The main process's decisions, the same on every process."""
        ...

    def broadcast(self, value: Any) -> Any:
        """The main process's ``value`` on every process."""
        ...

    def rng_states(self) -> list[torch.Tensor] | None:
        """Every process's RNG state, to save with a checkpoint (None: the one global state
        saved anyway is all there is)."""
        ...

    def restore_stream(self, state: dict[str, Any], seed: int) -> None:
        """This process's RNG stream as a checkpoint saved it (after the global state)."""
        ...


class _Alone:
    """One process: every share is the whole, every reduction the local value."""

    rank = 0
    world_size = 1
    main = True
    stream: tuple[int, ...] = ()

    def place(self, device: torch.device) -> torch.device:
        return device

    def wrap(self, module: nn.Module, device: torch.device, seed: int) -> nn.Module:
        return module

    def shard(self, index: torch.Tensor) -> tuple[torch.Tensor, int]:
        return index, len(index)

    def stride(self, split: Split) -> Split:
        return split

    def loss_value(self, total: torch.Tensor) -> float:
        return total.item()

    def reduce_sums(self, sums: MetricSums) -> None:
        return None

    def sync_buffers(self, module: nn.Module) -> None:
        return None

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        return flags

    def broadcast(self, value: Any) -> Any:
        return value

    def rng_states(self) -> list[torch.Tensor] | None:
        return None

    def restore_stream(self, state: dict[str, Any], seed: int) -> None:
        return None


ALONE: Collective = _Alone()

__all__ = ["ALONE", "Collective"]
