import asyncio

import pytest

from clara_pipeline.llm.ratelimit import RateLimiter


class FakeTime:
    """A clock that only moves when the limiter sleeps, so spacing is exact and the test takes no time."""

    def __init__(self):
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def grant_times(limiter: RateLimiter, fake: FakeTime, n: int) -> list[float]:
    async def main():
        times = []
        for _ in range(n):
            await limiter.acquire()
            times.append(fake.now)
        return times
    return asyncio.run(main())


def test_burst_then_evenly_spaced():
    fake = FakeTime()
    limiter = RateLimiter(600, burst=5, clock=fake.clock, sleep=fake.sleep)  # 10 per second
    times = grant_times(limiter, fake, 9)
    assert times[:5] == [0.0] * 5
    assert times[5:] == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_default_burst_is_one_second_of_permits():
    fake = FakeTime()
    limiter = RateLimiter(120, clock=fake.clock, sleep=fake.sleep)  # 2 per second
    assert limiter.capacity == 2
    assert grant_times(limiter, fake, 4) == pytest.approx([0.0, 0.0, 0.5, 1.0])


def test_pause_holds_every_permit_then_restarts_from_an_empty_bucket():
    fake = FakeTime()
    limiter = RateLimiter(600, burst=5, clock=fake.clock, sleep=fake.sleep)
    limiter.pause_for(2.0)
    times = grant_times(limiter, fake, 3)
    assert times == pytest.approx([2.1, 2.2, 2.3])


def test_concurrent_waiters_never_exceed_the_rate():
    fake = FakeTime()
    limiter = RateLimiter(60, burst=1, clock=fake.clock, sleep=fake.sleep)  # 1 per second

    async def main():
        times = []

        async def worker():
            await limiter.acquire()
            times.append(fake.now)
        await asyncio.gather(*(worker() for _ in range(5)))
        return sorted(times)
    times = asyncio.run(main())
    assert all(b - a >= 1.0 - 1e-9 for a, b in zip(times, times[1:]))


def test_refuses_nonsense():
    with pytest.raises(ValueError, match="per_minute"):
        RateLimiter(0)
