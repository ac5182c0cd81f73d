"""The one exception the LLM layer raises for an item, and the stable names of what went wrong."""

from __future__ import annotations

from dataclasses import dataclass


class FailureKind:
    """Stable `kind` values of `LLMError` and `ItemFailure` (used as metadata keys; never rename)."""

    RATE_LIMITED = "rate_limited"  # 429 on every try
    SERVER_ERROR = "server_error"  # 5xx (or 408/409) on every try
    TIMEOUT = "timeout"  # no answer within timeout_s on every try
    CONNECTION = "connection"  # could not connect on every try
    HTTP_ERROR = "http_error"  # a 4xx that retrying cannot fix (400, 401, 403, 404, 413, 422...)
    INVALID_OUTPUT = "invalid_output"  # answers that never parsed or validated within max_reasks
    TRUNCATED = "truncated"  # the last answer was cut at max_tokens (finish_reason "length")
    REFUSED = "refused"  # content filter or an explicit refusal
    INVALID_INPUT = "invalid_input"  # the item cannot be sent (image too small, undecodable, missing)
    INSUFFICIENT_CONTENT = "insufficient_content"  # offline: too little text to derive questions from
    UNEXPECTED = "unexpected"  # a bug or an error of an unknown type; the message has the exception

    TRANSIENT = frozenset({RATE_LIMITED, SERVER_ERROR, TIMEOUT, CONNECTION})


class LLMError(Exception):
    """An item that could not be completed. str() says what, for which item and after how many tries."""

    def __init__(self, kind: str, message: str, *, attempts: int = 0, status_code: int | None = None,
                 parked: bool = False):
        self.kind = kind
        self.message = message
        self.attempts = attempts
        self.status_code = status_code
        self.parked = parked  # True: failed in an earlier run and not asked again (see cache.py)
        super().__init__(message)


@dataclass(frozen=True)
class ItemFailure:
    """One item of a batch that has no output, and why. Transient failures are retried on the next run;
    an item whose answers never validated is parked (`parked` True from the next run on) until retried."""

    key: str
    kind: str
    message: str
    attempts: int = 0
    status_code: int | None = None
    parked: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"key": self.key, "kind": self.kind, "message": self.message, "attempts": self.attempts,
                "status_code": self.status_code, "parked": self.parked}
