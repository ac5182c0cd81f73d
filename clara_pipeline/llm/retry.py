"""Which request failures are worth another try, and how long to wait before it.

One retry loop, ours: the SDK's own retries are switched off (`max_retries=0`), because the reference
nested its string-matching retries inside the SDK's and could send 9 requests for one image. Errors are
classified by type and status code, never by searching their message for "500".
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Mapping

import openai

from .errors import FailureKind

# 408 Request Timeout and 409 Conflict are the server asking for another try (the SDK retries them too).
_RETRYABLE_4XX = {408, 409, 429}


class DeadlineExceeded(Exception):
    """Our own per-request deadline passed (a backstop to the HTTP client's timeouts, which are per read
    and would let a server that trickles bytes keep a request open indefinitely)."""


@dataclass(frozen=True)
class Transient:
    """A failure another try may fix: its cause (a FailureKind) and the server's Retry-After, if any."""

    cause: str
    retry_after_s: float | None = None


def classify(exc: BaseException) -> Transient | None:
    """Returns the transient cause of `exc`, or None when retrying cannot help."""
    if isinstance(exc, (openai.APITimeoutError, DeadlineExceeded)):  # APITimeoutError is an APIConnectionError
        return Transient(FailureKind.TIMEOUT)
    if isinstance(exc, openai.APIConnectionError):
        return Transient(FailureKind.CONNECTION)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 429:
            return Transient(FailureKind.RATE_LIMITED, retry_after(exc.response.headers))
        if status >= 500 or status in _RETRYABLE_4XX:
            return Transient(FailureKind.SERVER_ERROR, retry_after(exc.response.headers))
    return None


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, else `Retry-After` (seconds or an HTTP date).

    Returns None when neither header is present or parseable; never a negative number.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(retry: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max_s, base_s * 2**retry)] (retry counts from 0).

    Full jitter spreads the retries of many concurrent items evenly instead of sending them back in waves.
    """
    return rng.uniform(0.0, min(max_s, base_s * (2 ** retry)))


def is_response_format_rejection(exc: BaseException) -> bool:
    """True when a 400/422 says the server does not accept the `response_format` we sent.

    Servers word this differently (OpenAI names the parameter in `param`; vLLM, DashScope and others only
    mention it in the message), so both are looked at; any other 400 is a real client error.
    """
    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 422):
        return False
    if (exc.param or "").startswith("response_format"):
        return True
    text = f"{exc.message} {exc.body}".lower()
    return any(word in text for word in ("response_format", "json_schema", "json_object", "structured output"))


def is_length_keyword_rejection(exc: BaseException) -> bool:
    """True when a 400/422 refuses the string length keywords of our JSON schema (OpenAI's strict mode:
    "'maxLength' is not permitted")."""
    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 422):
        return False
    text = f"{exc.message} {exc.body}".lower()
    return "maxlength" in text or "minlength" in text


# Parameters reasoning models (OpenAI's o-series and newer) refuse, and what the client does instead.
ADAPTABLE_PARAMETERS = ("max_tokens", "temperature")


def refused_parameter(exc: BaseException) -> str | None:
    """"max_tokens" or "temperature" when a 400 says the model does not take that parameter (or that value
    of it), else None.

    OpenAI answers `max_tokens` on a reasoning model with param "max_tokens" and "Use 'max_completion_tokens'
    instead", and a temperature other than 1 with param "temperature" and "Only the default (1) value is
    supported"; servers that leave `param` empty are recognised by those words in the message.
    """
    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 422):
        return None
    param = (exc.param or "").strip()
    if param in ADAPTABLE_PARAMETERS:
        return param
    text = f"{exc.message} {exc.body}".lower()
    if "max_completion_tokens" in text and "max_tokens" in text.replace("max_completion_tokens", ""):
        return "max_tokens"
    if "temperature" in text and any(word in text for word in ("unsupported", "not supported", "does not support",
                                                               "only the default")):
        return "temperature"
    return None
