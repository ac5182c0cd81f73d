"""Which rows each rank trains on at each step: a deterministic plan from the seed, the epoch and the step.

Each epoch is a permutation of the rows (from `seed` and the epoch; rank-independent), cut into global batches.
Global batch `s` of the epoch is split into one contiguous slice per rank, and each rank's slice into its
`accumulation` micro-batches. So:

- the ranks of a step train on disjoint rows, and together on exactly the step's global batch;
- a run resumed at (epoch, step) replays the same rows as an uninterrupted one, at any world size;
- rows past the last full global batch of an epoch are left out of that epoch (a different few each epoch);
  a dataset smaller than one global batch is repeated to fill one, so it still takes a step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


def epoch_order(rows: int, epoch: int, *, seed: int, global_batch: int, shuffle: bool = True) -> list[int]:
    """Return the row indices of one epoch, in training order: full global batches only (at least one)."""
    if rows < 1:
        raise ValueError("cannot plan an epoch over 0 rows")
    if shuffle:
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)  # rank-independent, new each epoch
        order = torch.randperm(rows, generator=generator).tolist()
    else:
        order = list(range(rows))
    if rows < global_batch:
        order = (order * math.ceil(global_batch / rows))[:global_batch]
    return order[: len(order) // global_batch * global_batch]


def rank_micro_batches(
    order: list[int], step: int, *, rank: int, world_size: int, micro_batch: int, accumulation: int
) -> list[list[int]]:
    """Return rank `rank`'s micro-batches (row indices) for step `step` of an epoch whose order is `order`."""
    per_rank = micro_batch * accumulation
    start = (step * world_size + rank) * per_rank
    mine = order[start : start + per_rank]
    if len(mine) != per_rank:
        raise IndexError(f"step {step} is past the end of the epoch ({len(order)} rows)")
    return [mine[i : i + micro_batch] for i in range(0, per_rank, micro_batch)]


class RankBatches:
    """The micro-batches of one rank for steps `first_step`.. of an epoch: a DataLoader `batch_sampler`."""

    def __init__(
        self, order: list[int], first_step: int, *, rank: int, world_size: int, micro_batch: int, accumulation: int
    ) -> None:
        self.order, self.first_step = order, first_step
        self.rank, self.world_size = rank, world_size
        self.micro_batch, self.accumulation = micro_batch, accumulation
        self.steps = len(order) // (micro_batch * accumulation * world_size)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.first_step, self.steps):
            yield from rank_micro_batches(
                self.order,
                step,
                rank=self.rank,
                world_size=self.world_size,
                micro_batch=self.micro_batch,
                accumulation=self.accumulation,
            )

    def __len__(self) -> int:
        return max(0, self.steps - self.first_step) * self.accumulation
