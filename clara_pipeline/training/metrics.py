"""The trainer's rank-0 `metrics.jsonl`: reading it while it grows, and what its losses say.

The trainer appends one JSON object per optimizer step (`step`, `loss`, `ce`, `mse`, `lr`, `grad_norm`,
`tokens_per_s`, ...) and flushes after each line. A reader can therefore see a partial last line; `MetricsTail`
keeps it until the newline arrives. After a resume the steps since the last checkpoint are written again, so
`read_metrics` keeps the last record of each step.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOSS_KEY = "loss"


class MetricsTail:
    """Returns the complete new lines of a growing JSONL file on each `read_new()` call.

    The file may not exist yet (the trainer is still starting) or be replaced by a shorter one (a fresh run in
    the same folder); both are handled by starting over from its beginning.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = b""
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file being read

    def read_new(self) -> list[dict[str, Any]]:
        """Return the records appended since the last call, in file order.

        Raises:
            ValueError: when a complete line is not a JSON object (`file:line`-style message).
        """
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        identity = (stat.st_dev, stat.st_ino)
        if identity != self._identity or stat.st_size < self._offset:
            self._identity, self._offset, self._partial = identity, 0, b""
        if stat.st_size == self._offset:
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        return [_parse(line, self.path) for line in lines if line.strip()]


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Return the records of a finished metrics file, one per step (the last written wins), by step.

    A missing file reads as no records. A partial last line (the trainer was killed mid-write) is ignored.
    """
    path = Path(path)
    if not path.exists():
        return []
    tail = MetricsTail(path)
    return dedupe_steps(tail.read_new())


def dedupe_steps(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one record per `step` (the last one seen), sorted by step; records without a step are dropped."""
    by_step: dict[int, dict[str, Any]] = {}
    for record in records:
        if isinstance(record.get("step"), int):
            by_step[record["step"]] = record
    return [by_step[step] for step in sorted(by_step)]


@dataclass(frozen=True)
class LossTrend:
    """Whether the loss fell: the mean of the last `window` steps against the mean of the first `window`."""

    passed: bool
    steps: int
    window: int
    first_mean: float | None
    last_mean: float | None
    reason: str

    def to_metadata(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "window": self.window,
            "first_mean_loss": self.first_mean if self.first_mean is not None else float("nan"),
            "last_mean_loss": self.last_mean if self.last_mean is not None else float("nan"),
            "details": self.reason,
        }


def loss_fell(records: Sequence[dict[str, Any]], *, window: int | None = None) -> LossTrend:
    """Return whether the mean loss of the last steps is below that of the first steps.

    `window` defaults to a quarter of the steps, between 1 and 20, so the two windows never overlap. A run
    with fewer than 2 steps, or a non-finite loss anywhere, does not pass.
    """
    losses = [r.get(LOSS_KEY) for r in dedupe_steps(records)]
    n = len(losses)
    if n < 2:
        return LossTrend(False, n, 0, None, None, f"{n} step(s) logged: too few to tell whether the loss fell")
    bad = [i for i, loss in enumerate(losses) if not isinstance(loss, (int, float)) or not math.isfinite(loss)]
    if bad:
        return LossTrend(False, n, 0, None, None, f"loss is missing or not finite at {len(bad)} step(s)")
    window = window or min(20, max(1, n // 4))
    window = min(window, n // 2)
    first = sum(losses[:window]) / window
    last = sum(losses[-window:]) / window
    passed = last < first
    verdict = "fell" if passed else "did not fall"
    return LossTrend(passed, n, window, first, last,
                     f"mean loss of the last {window} steps {last:.4f} vs the first {window} {first:.4f}: {verdict}")


class ProgressRelay:
    """Chooses which metrics records to relay: the first step, every `every`-th step, and the last one seen."""

    def __init__(self, every: int) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self._last_seen: dict[str, Any] | None = None
        self._last_relayed: int | None = None

    def select(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return the records among `records` (in order) that are due."""
        chosen = []
        for record in records:
            step = record.get("step")
            if not isinstance(step, int):
                continue
            self._last_seen = record
            if self._last_relayed is None or step % self.every == 0:
                chosen.append(record)
                self._last_relayed = step
        return chosen

    def finish(self) -> list[dict[str, Any]]:
        """Return the last record seen when it was not relayed yet (the run's final step)."""
        if self._last_seen is None or self._last_seen["step"] == self._last_relayed:
            return []
        self._last_relayed = self._last_seen["step"]
        return [self._last_seen]


def format_progress(record: dict[str, Any], total_steps: int | None = None) -> str:
    """Return one log line for a metrics record, e.g. `step 20/50 loss 3.2145 lr 1.0e-04 tok/s 1,234`."""
    step = record.get("step", "?")
    parts = [f"step {step}/{total_steps}" if total_steps else f"step {step}"]
    for key, fmt in (("epoch", "{:.2f}"), ("loss", "{:.4f}"), ("ce", "{:.4f}"), ("mse", "{:.4f}"),
                     ("lr", "{:.1e}"), ("grad_norm", "{:.3f}"), ("tokens_per_s", "{:,.0f}"),
                     ("recall@1", "{:.3f}")):
        value = record.get(key)
        if isinstance(value, (int, float)):
            label = {"tokens_per_s": "tok/s"}.get(key, key)
            parts.append(f"{label} {fmt.format(value)}")
    return " ".join(parts)


def _parse(line: bytes, path: Path) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: a metrics line is not JSON ({error.msg}): {line[:120]!r}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: a metrics line is not a JSON object: {line[:120]!r}")
    return record
