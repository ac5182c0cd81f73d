"""The circuit breaker, over real sockets: a closed port, a server that accepts and stalls, a dead endpoint
that comes back. An outage ends the batch with one message and marks no item as failed."""

import logging
import time

import pytest

from clara_pipeline.llm import EndpointUnreachable, ResponseCache, run_chunk_synthesis
from clara_pipeline.llm.loopback import StalledServer, closed_port

from .helpers import fast_config
from .test_client import chunks


def dead_config(url: str, **overrides):
    # The production retry budget (6 retries with backoff from 0.5 s): without the breaker, each item would
    # spend it. unreachable_after_s is shortened so the tests stay fast; the default is 10 s.
    values = dict(base_url=url, model="chat-model", requests_per_minute=None, timeout_s=20.0, max_retries=6,
                  backoff_base_s=0.5, backoff_max_s=30.0, unreachable_after_s=1.5)
    values.update(overrides)
    from clara_pipeline.llm import LLMConfig
    return LLMConfig(**values)


def test_a_closed_port_stops_the_batch_once_with_a_message_that_says_what_to_check(tmp_path, caplog):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    started = time.monotonic()
    with caplog.at_level(logging.WARNING), pytest.raises(EndpointUnreachable) as raised:
        run_chunk_synthesis(chunks(10), config=dead_config(url), cache_path=tmp_path / "c.sqlite")
    elapsed = time.monotonic() - started
    error = raised.value
    assert elapsed < 5, elapsed
    assert url in str(error) and "GET /models" in str(error) and "CLARA_LLM_BASE_URL" in str(error)
    assert "nothing was marked as failed" in str(error)
    assert error.requests == 0 and 2 <= error.probes <= 8  # found out before any chat request
    # one message, not one per item
    assert sum("cannot be reached" in r.getMessage() for r in caplog.records) == 1
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert cache.count_parked() == 0 and cache.count() == 0


def test_the_next_client_in_the_same_process_gives_up_after_one_probe():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    with pytest.raises(EndpointUnreachable):
        run_chunk_synthesis(chunks(2), config=dead_config(url))
    started = time.monotonic()
    with pytest.raises(EndpointUnreachable, match="already unreachable earlier") as raised:
        run_chunk_synthesis(chunks(2), config=dead_config(url))
    assert time.monotonic() - started < 1.0 and raised.value.probes == 1


def test_a_server_that_accepts_and_stalls_stops_the_batch_long_before_the_request_timeout():
    with StalledServer() as server:
        started = time.monotonic()
        with pytest.raises(EndpointUnreachable, match="no answer in time"):
            run_chunk_synthesis(chunks(6), config=dead_config(server.url, timeout_s=60.0))
        elapsed = time.monotonic() - started
        assert server.connections >= 1
    assert elapsed < 8, elapsed  # probes time out after 3 s; the requests' own timeout is 60 s


def test_an_endpoint_that_comes_back_gets_every_item_and_nothing_was_parked(loopback, tmp_path):
    server = loopback()
    dead = server.url.replace(str(server.port), str(closed_port()))
    items = chunks(4)
    with pytest.raises(EndpointUnreachable):
        run_chunk_synthesis(items, config=dead_config(dead), cache_path=tmp_path / "c.sqlite")
    result = run_chunk_synthesis(items, config=fast_config(server), cache_path=tmp_path / "c.sqlite")
    assert len(result.outputs) == 4 and not result.failures


def test_a_request_that_loses_its_connection_is_retried_when_the_probe_answers(loopback):
    # A slow answer is not an outage: the request times out, the probe gets an answer, the retry succeeds.
    from clara_pipeline.llm.loopback import FaultPlan
    server = loopback(faults=FaultPlan(script=["timeout"], hang_s=3))
    result = run_chunk_synthesis(chunks(1), config=fast_config(server, timeout_s=0.5))
    assert len(result.outputs) == 1 and result.usage.retries_by_cause == {"timeout": 1}
    assert server.stats.models_probes >= 2  # the first request's check, and the one after the timeout
