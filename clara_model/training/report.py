"""Rank 0's record of a run: `metrics.jsonl`, TensorBoard scalars, and a progress bar (or log lines).

`metrics.jsonl` holds one JSON object per optimizer step, appended and flushed as the step ends, so a process
that tails it (the Dagster launcher) sees every step live. A resumed run first cuts the file back to the step it
resumes from, so step numbers never repeat; TensorBoard is told the same through `purge_step`.

The progress bar (tqdm, stderr) is drawn only when stderr is a terminal; when it is piped to a file or another
process a plain log line is written every `log_every` steps instead, which stays readable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clara_model.contract import METRICS_FILE, TENSORBOARD_DIR

logger = logging.getLogger(__name__)

_NOT_SCALARS = {"step", "epoch"}


def truncate_metrics(path: Path, last_step: int) -> int:
    """Keep the lines of `path` up to step `last_step` (drop later ones and any torn last line); return the
    number kept. The file is rewritten atomically."""
    if not path.exists():
        return 0
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= last_step:
            kept.append(line)
    write_atomic(path, "".join(f"{line}\n" for line in kept))
    return len(kept)


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary sibling and a rename: readers see the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


class TrainingReport:
    """Writes each step's record to metrics.jsonl and TensorBoard, and shows progress.

    Raises (on creation):
        RuntimeError: when TensorBoard logging is on and the `tensorboard` package is missing.
    """

    def __init__(self, output: Path, *, start_step: int, total_steps: int, tensorboard: bool, log_every: int) -> None:
        self.total_steps, self.log_every = total_steps, log_every
        self.metrics = open(output / METRICS_FILE, "a", encoding="utf-8")
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise RuntimeError(f"log.tensorboard is on but TensorBoard is missing ({error}): "
                                   "pip install tensorboard, or --set log.tensorboard=false") from None
            # purge_step: TensorBoard hides what an interrupted run logged past the step this one resumes from.
            self.writer = SummaryWriter(str(output / TENSORBOARD_DIR), purge_step=start_step + 1 if start_step else None)
        self.bar = None
        self.redirect = contextlib.ExitStack()
        if sys.stderr.isatty():
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self.redirect.enter_context(logging_redirect_tqdm())  # log lines above the bar, not through it
            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, file=sys.stderr)

    def log_step(self, record: Mapping[str, Any]) -> None:
        """Append `record` (one optimizer step) everywhere it goes."""
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()
        step = record["step"]
        if self.writer is not None:
            for key, value in record.items():
                if key not in _NOT_SCALARS and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"train/{key}", value, step)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", refresh=False)
            self.bar.update(1)
        elif step == 1 or step % self.log_every == 0 or step == self.total_steps:
            logger.info(format_step(record, self.total_steps))

    def close(self) -> None:
        """Close the files and the bar; closing twice does nothing."""
        if self.metrics.closed:
            return
        self.metrics.close()
        if self.writer is not None:
            self.writer.close()
        if self.bar is not None:
            self.bar.close()
        self.redirect.close()


def format_step(record: Mapping[str, Any], total_steps: int) -> str:
    """Return one readable log line for a step's record."""
    parts = [f"step {record['step']}/{total_steps}", f"epoch {record['epoch']:.2f}", f"loss {record['loss']:.4f}",
             f"ce {record['ce']:.4f}", f"mse {record['mse']:.4f}"]
    for key in ("retrieval_loss", "recall@1", "recall@3", "recall@5"):
        if key in record:
            parts.append(f"{key} {record[key]:.3f}")
    parts += [f"lr {record['lr']:.3e}", f"grad_norm {record['grad_norm']:.3f}",
              f"{record['tokens_per_s']:.0f} tok/s", f"{record['samples_per_s']:.2f} samples/s"]
    return ", ".join(parts)
