"""What a run of LLM calls cost: calls, cache hits, retries, re-asks, failures, tokens, money, time."""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class UsageStats:
    """Counters accumulated by a client or provider; `since(earlier)` gives the share of one batch.

    `http_requests` counts every request sent (first tries, retries and re-asks); `items_*` count the
    items of batches. Tokens are those the server reported, including for answers that were then
    rejected and re-asked: they were paid for. Cache hits cost nothing and add no tokens. `wall_time_s`
    adds up the wall time of batches (two batches run side by side both count their time).
    """

    http_requests: int = 0
    cache_hits: int = 0
    items_ok: int = 0
    items_failed: int = 0
    items_parked: int = 0  # failed items not asked again: parked by an earlier run (a subset of items_failed)
    reasks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None  # None when no prices are configured
    wall_time_s: float = 0.0
    retries_by_cause: Counter[str] = field(default_factory=Counter)
    failures_by_kind: Counter[str] = field(default_factory=Counter)
    requests_by_task: Counter[str] = field(default_factory=Counter)

    @property
    def retries(self) -> int:
        return sum(self.retries_by_cause.values())

    def add_tokens(self, prompt: int, completion: int, price_in_per_1m: float | None,
                   price_out_per_1m: float | None) -> None:
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        if price_in_per_1m is not None and price_out_per_1m is not None:
            cost = (prompt * price_in_per_1m + completion * price_out_per_1m) / 1e6
            self.cost_usd = (self.cost_usd or 0.0) + cost

    def snapshot(self) -> "UsageStats":
        return copy.deepcopy(self)

    def since(self, earlier: "UsageStats") -> "UsageStats":
        """The counts added after `earlier` (a snapshot of this object) was taken."""
        cost = None
        if self.cost_usd is not None:
            cost = self.cost_usd - (earlier.cost_usd or 0.0)
        return UsageStats(
            http_requests=self.http_requests - earlier.http_requests,
            cache_hits=self.cache_hits - earlier.cache_hits,
            items_ok=self.items_ok - earlier.items_ok,
            items_failed=self.items_failed - earlier.items_failed,
            items_parked=self.items_parked - earlier.items_parked,
            reasks=self.reasks - earlier.reasks,
            prompt_tokens=self.prompt_tokens - earlier.prompt_tokens,
            completion_tokens=self.completion_tokens - earlier.completion_tokens,
            cost_usd=cost,
            wall_time_s=self.wall_time_s - earlier.wall_time_s,
            retries_by_cause=self.retries_by_cause - earlier.retries_by_cause,
            failures_by_kind=self.failures_by_kind - earlier.failures_by_kind,
            requests_by_task=self.requests_by_task - earlier.requests_by_task,
        )

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly and flat enough for Dagster metadata (`dg.MetadataValue.json` or one entry each)."""
        return {
            "http_requests": self.http_requests,
            "cache_hits": self.cache_hits,
            "items_ok": self.items_ok,
            "items_failed": self.items_failed,
            "items_parked": self.items_parked,
            "retries": self.retries,
            "retries_by_cause": dict(sorted(self.retries_by_cause.items())),
            "reasks": self.reasks,
            "failures_by_kind": dict(sorted(self.failures_by_kind.items())),
            "requests_by_task": dict(sorted(self.requests_by_task.items())),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
            "wall_time_s": round(self.wall_time_s, 3),
        }
