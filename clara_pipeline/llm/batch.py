"""Running many items at once: every item ends as an output or a reported failure, never missing; an
endpoint that cannot be reached ends the whole batch with one `EndpointUnreachable` instead."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generic, Mapping, TypeVar

from .breaker import EndpointUnreachable
from .errors import FailureKind, ItemFailure, LLMError
from .usage import UsageStats

logger = logging.getLogger(__name__)

I = TypeVar("I")
O = TypeVar("O")


class BatchFailed(RuntimeError):
    """More items failed than the caller accepts; the message gives the counts and the first failures."""

    def __init__(self, message: str, result: "BatchResult[Any]"):
        self.result = result
        super().__init__(message)


@dataclass
class BatchResult(Generic[O]):
    """Outputs and failures of one batch, keyed like its input; together they hold every input key."""

    task: str
    outputs: dict[str, O]
    failures: dict[str, ItemFailure]
    usage: UsageStats  # what this batch added to its provider's counters
    provider: dict[str, Any] = field(default_factory=dict)  # provider.describe()

    @property
    def total(self) -> int:
        return len(self.outputs) + len(self.failures)

    @property
    def failure_fraction(self) -> float:
        return len(self.failures) / self.total if self.total else 0.0

    @property
    def parked(self) -> int:
        """Failed items not asked again because they failed validation in an earlier run (see cache.py)."""
        return sum(f.parked for f in self.failures.values())

    def failures_by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(f.kind for f in self.failures.values()).items()))

    def raise_if_failures_exceed(self, max_fraction: float) -> None:
        """Raises BatchFailed when the share of failed items is above `max_fraction` (0.0 .. 1.0)."""
        if not 0.0 <= max_fraction <= 1.0:
            raise ValueError(f"max_fraction must be in 0..1, got {max_fraction!r}")
        if self.failure_fraction > max_fraction:
            first = "; ".join(f"{f.key}: {f.message}" for f in list(self.failures.values())[:3])
            raise BatchFailed(f"{self.task}: {len(self.failures)} of {self.total} items failed "
                              f"({self.failure_fraction:.1%} > {max_fraction:.1%} allowed), by kind "
                              f"{self.failures_by_kind()}; first: {first}", self)

    def metadata(self, max_failures_listed: int = 20) -> dict[str, Any]:
        """JSON-friendly summary for materialization metadata: counts, usage, provider, first failures."""
        return {
            "task": self.task,
            "items": self.total,
            "ok": len(self.outputs),
            "failed": len(self.failures),
            "parked": self.parked,
            "failures_by_kind": self.failures_by_kind(),
            "failures": [f.as_dict() for f in list(self.failures.values())[:max_failures_listed]],
            "usage": self.usage.as_dict(),
            "provider": self.provider,
        }


async def run_batch(items: Mapping[str, I], run_one: Callable[[I], Awaitable[O]], *, task: str,
                    usage: UsageStats, window: int, provider: dict[str, Any] | None = None) -> BatchResult[O]:
    """Runs `run_one` on every item, at most `window` items at a time, and collects outputs and failures.

    `window` bounds items in progress (an image being prepared, a request waiting for a slot, a backoff
    sleep), which bounds memory; the client's own semaphore bounds HTTP requests in flight. An `LLMError`
    becomes that item's failure; any other exception is a bug, logged with its traceback and reported as
    an `unexpected` failure of that item so the rest of the batch still completes.

    Raises:
        EndpointUnreachable: the endpoint answered nothing (see breaker.py); the items still in progress are
            cancelled, and none is reported as failed: the outage is the step's failure, not theirs.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    before = usage.snapshot()
    started = time.perf_counter()
    gate = asyncio.Semaphore(window)
    outputs: dict[str, O] = {}
    failures: dict[str, ItemFailure] = {}

    async def one(key: str, item: I) -> None:
        async with gate:
            try:
                outputs[key] = await run_one(item)
                usage.items_ok += 1
                return
            except LLMError as exc:
                failure = ItemFailure(key, exc.kind, exc.message, exc.attempts, exc.status_code, exc.parked)
            except EndpointUnreachable:
                raise
            except Exception as exc:  # noqa: BLE001 - reported per item, with traceback, never swallowed
                logger.exception("%s %s: unexpected error", task, key)
                failure = ItemFailure(key, FailureKind.UNEXPECTED, f"{type(exc).__name__}: {exc}")
            failures[key] = failure
            usage.items_failed += 1
            usage.failures_by_kind[failure.kind] += 1
            if failure.parked:
                logger.info("%s %s: %s", task, key, failure.message)
            else:
                logger.warning("%s %s: %s", task, key, failure.message)

    try:
        async with asyncio.TaskGroup() as group:  # one task's EndpointUnreachable cancels the others
            for key, item in items.items():
                group.create_task(one(key, item))
    except* EndpointUnreachable as outage:
        usage.wall_time_s += time.perf_counter() - started
        raise outage.exceptions[0] from None
    usage.wall_time_s += time.perf_counter() - started
    missing = set(items) - outputs.keys() - failures.keys()
    if missing:  # cannot happen: every path of one() records the item; kept as a tripwire, not a fallback
        raise RuntimeError(f"{task}: batch lost items {sorted(missing)[:5]}")
    # Input order, not completion order, so results read and diff stably.
    result = BatchResult(task, {k: outputs[k] for k in items if k in outputs},
                         {k: failures[k] for k in items if k in failures}, usage.since(before),
                         dict(provider or {}))
    logger.info("%s: %d ok, %d failed of %d; %s", task, len(outputs), len(failures), len(items),
                result.usage.as_dict())
    return result
