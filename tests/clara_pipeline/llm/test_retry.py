import email.utils
import random

import httpx2
import openai
import pytest

from clara_pipeline.llm.errors import FailureKind
from clara_pipeline.llm.retry import (DeadlineExceeded, backoff_delay, classify, is_response_format_rejection,
                                      retry_after)


def status_error(status: int, headers=None, body=None) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    cls = {400: openai.BadRequestError, 429: openai.RateLimitError}.get(status, openai.APIStatusError)
    if status >= 500:
        cls = openai.InternalServerError
    return cls(f"Error code: {status}", response=response, body=body)


def test_retry_after_seconds_milliseconds_and_dates():
    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({"retry-after": "0.25"}) == 0.25
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5  # the precise one wins
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after({"Retry-After": date}, now=now) == pytest.approx(30.0)
    assert retry_after({"Retry-After": email.utils.formatdate(now - 30, usegmt=True)}, now=now) == 0.0
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None


def test_backoff_is_full_jitter_under_a_growing_cap():
    rng = random.Random(0)
    for retry, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (10, 30.0)]:
        delays = [backoff_delay(retry, 0.5, 30.0, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > 0.8 * cap  # spread over the whole range, not a fixed wait


def test_classification_by_type_and_status():
    assert classify(status_error(429, {"retry-after": "2"})) == classify(status_error(429, {"retry-after": "2"}))
    assert classify(status_error(429, {"retry-after": "2"})).retry_after_s == 2.0
    assert classify(status_error(429)).cause == FailureKind.RATE_LIMITED
    assert classify(status_error(503)).cause == FailureKind.SERVER_ERROR
    assert classify(status_error(408)).cause == FailureKind.SERVER_ERROR
    assert classify(DeadlineExceeded("late")).cause == FailureKind.TIMEOUT
    request = httpx2.Request("POST", "http://127.0.0.1/v1")
    assert classify(openai.APITimeoutError(request=request)).cause == FailureKind.TIMEOUT
    assert classify(openai.APIConnectionError(request=request)).cause == FailureKind.CONNECTION
    for status in (400, 401, 403, 404, 422):
        assert classify(status_error(status)) is None
    # The message is never searched: a 400 that says "500" is still not retried.
    assert classify(status_error(400, body={"message": "field 500 timeout"})) is None


def test_response_format_rejections_are_recognised():
    assert is_response_format_rejection(status_error(400, body={"param": "response_format", "message": "x"}))
    assert is_response_format_rejection(status_error(400, body={"message": "json_schema is not supported"}))
    assert not is_response_format_rejection(status_error(400, body={"message": "messages is required"}))
    assert not is_response_format_rejection(status_error(500, body={"message": "response_format"}))
