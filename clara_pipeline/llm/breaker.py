"""The circuit breaker: when the endpoint cannot be reached, stop the step once, instead of failing every item.

Without it a closed port cost every item its full retry budget (7 tries each: 476 connection attempts and
82 s for 10 documents) and printed the same message once per item. Now:

- Before the first request, and after any request that could not connect or timed out, the endpoint is
  probed with `GET <base_url>/models` (free on every OpenAI-compatible server). Any HTTP answer, even a
  404 or a 401, means the server is there; only a connection error or no answer within `probe_timeout_s`
  counts against it. Probes repeat with a short backoff until the endpoint answers or `give_up_after_s`
  has passed; then the breaker opens.
- While requests are in flight and no answer has come back for `stall_after_s`, a watchdog probes too, so a
  server that accepts connections and then stalls is found out without waiting for each request's timeout.
- Concurrent requests share one probe sequence (single flight); once the breaker is open, every waiting and
  in-flight request raises the same `EndpointUnreachable`, and `run_batch` lets it end the batch: the step
  fails with one message, and no item is recorded as failed (an outage says nothing about the items).
- A breaker that opened is remembered per endpoint for `REMEMBER_S` in this process: the next client (the
  next document's step in `clara run`) tries one probe, not a whole sequence, before giving up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

logger = logging.getLogger(__name__)

REMEMBER_S = 120.0  # how long an endpoint found unreachable makes the next client give up after one probe
_UNREACHABLE_SINCE: dict[str, float] = {}  # endpoint -> time.monotonic() its breaker opened, in this process


class EndpointUnreachable(RuntimeError):
    """The endpoint did not answer for the breaker's whole probing time; the message says what to check."""

    def __init__(self, message: str, *, endpoint: str, requests: int, probes: int, elapsed_s: float):
        self.endpoint = endpoint
        self.requests = requests  # requests that failed to connect or timed out before the breaker opened
        self.probes = probes
        self.elapsed_s = elapsed_s
        super().__init__(message)


class CircuitBreaker:
    """Tracks whether `endpoint` answers; `probe()` must return when any HTTP answer came back and raise when
    none did (connection refused, reset, timeout). Create inside the event loop that uses it."""

    def __init__(self, endpoint: str, probe: Callable[[], Awaitable[None]], *, give_up_after_s: float = 10.0,
                 stall_after_s: float = 5.0):
        self.endpoint = endpoint
        self._probe = probe
        self.give_up_after_s = give_up_after_s
        self.stall_after_s = stall_after_s
        self.verified = False  # True once any probe or request got an answer
        self.probes = 0
        self.failed_requests = 0  # requests that could not connect or timed out
        self.in_flight = 0
        self.last_answer = time.monotonic()
        self.opened = asyncio.Event()
        self.error: EndpointUnreachable | None = None
        self._checking: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._last_problem = ""

    # -- what the client reports -----------------------------------------------------------------------------

    def answered(self) -> None:
        """An HTTP answer (any status) came back: the endpoint is there."""
        self.verified = True
        self.last_answer = time.monotonic()
        _UNREACHABLE_SINCE.pop(self.endpoint, None)

    def unreachable(self, problem: str) -> None:
        """A request could not connect or got no answer in time."""
        self.failed_requests += 1
        self._last_problem = problem

    def raise_if_open(self) -> None:
        if self.error is not None:
            raise self.error

    # -- checking --------------------------------------------------------------------------------------------

    async def check(self) -> None:
        """Returns once the endpoint answered a probe; raises EndpointUnreachable when it never did within
        `give_up_after_s` (and from then on, at once). Concurrent callers share one probe sequence."""
        self.raise_if_open()
        if self._checking is None or self._checking.done():
            self._checking = asyncio.ensure_future(self._probe_until_answered())
        await asyncio.shield(self._checking)

    async def _probe_until_answered(self) -> None:
        started = time.monotonic()
        remembered = _UNREACHABLE_SINCE.get(self.endpoint)
        budget = 0.0 if remembered is not None and started - remembered < REMEMBER_S else self.give_up_after_s
        delay = 0.25
        while True:
            self.probes += 1
            try:
                await self._probe()
            except Exception as exc:  # noqa: BLE001 - any failure to get an answer counts against the endpoint
                self._last_problem = _plain_cause(exc)
            else:
                self.answered()
                return
            elapsed = time.monotonic() - started
            if elapsed + delay > budget:
                self._open(elapsed, remembered is not None and budget == 0.0)
            await asyncio.sleep(delay)
            delay = min(2 * delay, 2.0)

    def _open(self, elapsed_s: float, remembered: bool) -> None:
        tried = f"{self.probes} probe{'s' if self.probes != 1 else ''} of GET /models"
        if self.failed_requests:
            tried = f"{self.failed_requests} request{'s' if self.failed_requests != 1 else ''} and {tried}"
        since = " (it was already unreachable earlier in this run)" if remembered else ""
        message = (f"the LLM endpoint {self.endpoint} cannot be reached{since}: {tried} over {elapsed_s:.1f} s "
                   f"got no answer (last: {self._last_problem or 'no answer'}). Check that the server is running "
                   f"and listening at that address, that CLARA_LLM_BASE_URL is right (scheme, host, port, /v1), "
                   f"and that no firewall or proxy is in the way; then run again (nothing was marked as failed).")
        self.error = EndpointUnreachable(message, endpoint=self.endpoint, requests=self.failed_requests,
                                         probes=self.probes, elapsed_s=elapsed_s)
        _UNREACHABLE_SINCE[self.endpoint] = time.monotonic()
        self.opened.set()
        logger.error("%s", message)
        raise self.error

    # -- guarding requests -----------------------------------------------------------------------------------

    async def guard(self, request: Awaitable[object], timeout_s: float) -> object:
        """`request`'s result, unless the breaker opens first (EndpointUnreachable) or `timeout_s` passes
        (asyncio.TimeoutError). While it runs, a watchdog probes the endpoint when nothing has answered for
        `stall_after_s`."""
        self.raise_if_open()
        self._start_watchdog()
        task = asyncio.ensure_future(request)
        opened = asyncio.ensure_future(self.opened.wait())
        self.in_flight += 1
        try:
            done, _ = await asyncio.wait({task, opened}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                return task.result()
            task.cancel()
            self.raise_if_open()
            raise asyncio.TimeoutError
        finally:
            self.in_flight -= 1
            opened.cancel()
            if not task.done():
                task.cancel()

    def _start_watchdog(self) -> None:
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while self.error is None:
            await asyncio.sleep(min(1.0, self.stall_after_s))
            quiet = time.monotonic() - self.last_answer
            if self.in_flight and quiet >= self.stall_after_s:
                try:
                    await self.check()
                except EndpointUnreachable:
                    return
                self.last_answer = time.monotonic()  # probed fine: a slow answer, not a stall; wait again

    async def aclose(self) -> None:
        for task in (self._watchdog, self._checking):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, EndpointUnreachable):
                    pass


def _plain_cause(exc: BaseException) -> str:
    """A short description of why a probe got no answer."""
    text = f"{type(exc).__name__}"
    cause = exc.__cause__ or exc.__context__
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    detail = str(cause) if cause is not None and str(cause) else str(exc)
    if isinstance(exc, asyncio.TimeoutError) or "Timeout" in text:
        return "no answer in time"
    return detail or text
