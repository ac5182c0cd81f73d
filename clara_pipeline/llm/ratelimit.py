"""A requests-per-minute limiter for asyncio: a token bucket that a server's Retry-After can also pause."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable


class RateLimiter:
    """Hands out at most `per_minute` permits a minute, at most `burst` of them back to back.

    The bucket holds up to `burst` permits and refills continuously at `per_minute / 60` per second, so a
    client that was idle may send `burst` requests at once and is then spaced evenly. Waiters are served
    in arrival order (they queue on one lock). `pause_for(seconds)` empties the bucket until then: when
    the server answers 429 with Retry-After, every worker of this client holds off, not only the one that
    was refused.
    """

    def __init__(self, per_minute: float, burst: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        if per_minute <= 0:
            raise ValueError(f"RateLimiter.per_minute must be > 0, got {per_minute!r}")
        self.rate = per_minute / 60.0  # permits per second
        # Default burst: one second's worth of permits (at least one), a smooth limiter.
        self.capacity = float(burst) if burst is not None else max(1.0, self.rate)
        if self.capacity < 1:
            raise ValueError(f"RateLimiter.burst must be >= 1, got {burst!r}")
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.capacity, self._tokens + max(0.0, now - self._updated) * self.rate)
        self._updated = max(self._updated, now)

    async def acquire(self) -> float:
        """Waits for a permit; returns the seconds waited."""
        start = self._clock()
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await self._sleep(self._paused_until - now)
                    continue
                self._refill(now)
                if self._tokens >= 1 - 1e-9:  # tolerance: float sums of refills land a hair under 1
                    self._tokens = max(0.0, self._tokens - 1)
                    return self._clock() - start
                await self._sleep((1 - self._tokens) / self.rate)

    def pause_for(self, seconds: float) -> None:
        """No permit is handed out for `seconds` from now (a longer earlier pause is kept)."""
        now = self._clock()
        self._paused_until = max(self._paused_until, now + seconds)
        # The pause replaces the burst: after it, permits restart from an empty bucket.
        self._refill(now)
        self._tokens = 0.0
        self._updated = self._paused_until
