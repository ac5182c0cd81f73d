"""The learning-rate schedule: a linear warmup, then cosine down to a floor (stages 1 and 2) or constant (stage 3).

`lr_multiplier(step)` is the fraction of the peak lr that optimizer step `step` (0-based) uses:

- warmup, steps 0..W-1: (step + 1) / (W + 1), so no step is spent at lr 0 (transformers' warmup starts at 0, so
  the reference's first update was a no-op);
- cosine: from 1 at step W to `min_ratio` at the last step, 0.5 (1 + cos(pi t)) with t going 0 -> 1;
- constant: 1 after the warmup.
"""

from __future__ import annotations

import math
from functools import partial

import torch


def lr_multiplier(step: int, *, total_steps: int, warmup_steps: int, name: str, min_ratio: float) -> float:
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if name == "constant":
        return 1.0
    if name != "cosine":
        raise ValueError(f"unknown schedule {name!r}")
    decay_steps = total_steps - 1 - warmup_steps
    t = min(1.0, (step - warmup_steps) / decay_steps) if decay_steps > 0 else 0.0
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int, name: str, min_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Return a LambdaLR over `optimizer`; DeepSpeed steps it once per optimizer step."""
    function = partial(lr_multiplier, total_steps=total_steps, warmup_steps=warmup_steps, name=name, min_ratio=min_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, function)
