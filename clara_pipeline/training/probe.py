"""Does a checkpoint load and compute? The logic behind the `checkpoint_loads` asset check.

Loads the exported checkpoint exactly as inference would, and runs one forward pass of its own stage's loss on
the first rows of the stage's data. Imports clara_model (torch) only when called.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CheckpointProbe:
    """What loading a checkpoint and one forward pass showed."""

    stage: str
    compression_rate: int
    n_mem: int
    adapters: tuple[str, ...]
    loss: float
    rows: int

    @property
    def finite(self) -> bool:
        return math.isfinite(self.loss)


def probe_checkpoint(checkpoint: str | Path, data_file: str | Path, *, rows: int = 2) -> CheckpointProbe:
    """Load `checkpoint` (for inference, on CPU) and return its stage's loss on the first `rows` rows of `data_file`.

    Raises:
        Whatever loading or the forward raises (FileNotFoundError, ValueError, KeyError, ...): the caller reports it.
    """
    import torch

    from clara_model import load_checkpoint, read_rows
    from clara_model.collate import build_collator

    model = load_checkpoint(checkpoint, for_inference=True, device="cpu").model
    stage = model.config.stage.stage
    sample = read_rows(data_file, stage)[:rows]
    if not sample:
        raise ValueError(f"{data_file}: no rows to run the checkpoint on")
    batch = build_collator(model.tokenizer, model.tokens, model.config)(sample)
    with torch.no_grad():
        loss = model(batch).loss.item()
    return CheckpointProbe(
        stage=stage.value, compression_rate=model.config.model.compression_rate, n_mem=model.config.model.n_mem,
        adapters=tuple(a.value for a in model.config.stage.adapters), loss=loss, rows=len(sample),
    )
