"""What the LLM layer talks to and how hard it may push: endpoint, models, limits, prices.

| variable                         | default       | what                                                      |
|----------------------------------|---------------|-----------------------------------------------------------|
| `CLARA_LLM_BASE_URL`             | (unset)       | OpenAI-compatible endpoint; unset means the offline provider |
| `CLARA_LLM_API_KEY`              | `OPENAI_API_KEY` | bearer key; may be empty for local servers (vLLM, Ollama) |
| `CLARA_LLM_MODEL`                | `gpt-4o-mini` | chat model (chunk synthesis)                              |
| `CLARA_VLM_MODEL`                | the chat model | vision model (captions)                                  |
| `CLARA_EMBEDDING_MODEL`          | (unset)       | embedding model; unset means no embeddings (BM25 negatives) |
| `CLARA_LLM_MAX_CONCURRENCY`      | `8`           | HTTP requests in flight at once                           |
| `CLARA_LLM_RPM`                  | `600`         | requests per minute; `0` means no limit                   |
| `CLARA_LLM_TIMEOUT_S`            | `60`          | per-request deadline                                      |
| `CLARA_LLM_MAX_RETRIES`          | `6`           | retries of one request on 429/5xx/timeouts/connection errors |
| `CLARA_LLM_MAX_REASKS`           | `2`           | re-asks after an invalid or truncated answer              |
| `CLARA_LLM_TEMPERATURE`          | (per task)    | sampling temperature for every task; unset: captions 0.2, QA synthesis 0.7 |
| `CLARA_LLM_PRICE_INPUT_PER_1M`   | (unset)       | price per 1M prompt tokens, for the cost report           |
| `CLARA_LLM_PRICE_OUTPUT_PER_1M`  | (unset)       | price per 1M completion tokens                            |

An endpoint is configured only by `CLARA_LLM_BASE_URL`: an `OPENAI_API_KEY` that happens to be set for
other tools never makes a run start paying. For OpenAI itself set `CLARA_LLM_BASE_URL=https://api.openai.com/v1`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Callable, Mapping, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

ENV_BASE_URL = "CLARA_LLM_BASE_URL"
ENV_API_KEY = "CLARA_LLM_API_KEY"
ENV_OPENAI_API_KEY = "OPENAI_API_KEY"
ENV_MODEL = "CLARA_LLM_MODEL"
ENV_VLM_MODEL = "CLARA_VLM_MODEL"
ENV_EMBEDDING_MODEL = "CLARA_EMBEDDING_MODEL"
ENV_MAX_CONCURRENCY = "CLARA_LLM_MAX_CONCURRENCY"
ENV_RPM = "CLARA_LLM_RPM"
ENV_TIMEOUT_S = "CLARA_LLM_TIMEOUT_S"
ENV_MAX_RETRIES = "CLARA_LLM_MAX_RETRIES"
ENV_MAX_REASKS = "CLARA_LLM_MAX_REASKS"
ENV_TEMPERATURE = "CLARA_LLM_TEMPERATURE"
ENV_PRICE_INPUT = "CLARA_LLM_PRICE_INPUT_PER_1M"
ENV_PRICE_OUTPUT = "CLARA_LLM_PRICE_OUTPUT_PER_1M"

DEFAULT_MODEL = "gpt-4o-mini"


class LLMConfigError(ValueError):
    """A configuration value that cannot be used; the message names the variable or field and the value."""


@dataclass(frozen=True, repr=False)
class LLMConfig:
    """An OpenAI-compatible endpoint and the limits the client keeps to.

    `api_key` is excluded from `repr()` and from `describe()`, which show `base_url` without credentials
    or query string; nothing in this package logs or stores the key.
    """

    base_url: str
    api_key: str = field(default="")
    model: str = DEFAULT_MODEL
    vlm_model: str | None = None  # None: the chat model, which must then accept images
    embedding_model: str | None = None  # None: no embeddings from the endpoint
    max_concurrency: int = 8
    requests_per_minute: float | None = 600.0  # None: no client-side rate limit
    timeout_s: float = 60.0
    max_retries: int = 6  # transient failures (429, 5xx, timeouts, connection) of one request
    max_reasks: int = 2  # invalid or truncated answers of one item
    temperature: float | None = None  # None: each task's own (captions 0.2: follow the figure; QA 0.7: varied questions)
    price_input_per_1m: float | None = None
    price_output_per_1m: float | None = None
    backoff_base_s: float = 0.5  # first backoff ceiling; doubles per retry (full jitter below it)
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0  # a longer Retry-After is obeyed up to this, with a warning
    embedding_batch_size: int = 64  # texts per embeddings request
    unreachable_after_s: float = 10.0  # the circuit breaker gives up on an endpoint that answers nothing this long

    def __post_init__(self) -> None:
        _check_url(self.base_url, "LLMConfig.base_url")
        for name in ("model", "vlm_model", "embedding_model"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise LLMConfigError(f"LLMConfig.{name} must be a model name, got an empty string")
        _check(self.max_concurrency >= 1, "LLMConfig.max_concurrency", self.max_concurrency, "an integer >= 1")
        if self.requests_per_minute is not None:
            _check(self.requests_per_minute > 0, "LLMConfig.requests_per_minute", self.requests_per_minute,
                   "a number > 0, or None for no limit")
        _check(self.timeout_s > 0, "LLMConfig.timeout_s", self.timeout_s, "a number of seconds > 0")
        _check(self.max_retries >= 0, "LLMConfig.max_retries", self.max_retries, "an integer >= 0")
        _check(self.max_reasks >= 0, "LLMConfig.max_reasks", self.max_reasks, "an integer >= 0")
        if self.temperature is not None:
            _check(0 <= self.temperature <= 2, "LLMConfig.temperature", self.temperature, "a number in 0..2, or None")
        _check(self.unreachable_after_s >= 0, "LLMConfig.unreachable_after_s", self.unreachable_after_s,
               "seconds >= 0")
        for name in ("price_input_per_1m", "price_output_per_1m"):
            value = getattr(self, name)
            if value is not None:
                _check(value >= 0, f"LLMConfig.{name}", value, "a price >= 0")
        _check(self.backoff_base_s >= 0, "LLMConfig.backoff_base_s", self.backoff_base_s, "seconds >= 0")
        _check(self.backoff_max_s >= self.backoff_base_s, "LLMConfig.backoff_max_s", self.backoff_max_s,
               f"seconds >= backoff_base_s ({self.backoff_base_s})")
        _check(self.max_retry_after_s >= 0, "LLMConfig.max_retry_after_s", self.max_retry_after_s, "seconds >= 0")
        _check(self.embedding_batch_size >= 1, "LLMConfig.embedding_batch_size", self.embedding_batch_size,
               "an integer >= 1")

    def __repr__(self) -> str:
        shown = [f"base_url={self.endpoint!r}"]
        shown += [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name not in ("base_url", "api_key")]
        return f"LLMConfig({', '.join(shown)})"

    def temperature_for(self, task: str, task_default: float) -> float:
        """The temperature sent for `task`: the configured one, else the task's own."""
        return task_default if self.temperature is None else self.temperature

    @property
    def vision_model(self) -> str:
        return self.vlm_model or self.model

    @property
    def endpoint(self) -> str:
        """The base URL without user info, query or fragment: safe to log, store and hash."""
        return safe_endpoint(self.base_url)

    @property
    def prices_known(self) -> bool:
        return self.price_input_per_1m is not None and self.price_output_per_1m is not None

    def describe(self) -> dict[str, object]:
        """Everything but the key, for logs and materialization metadata."""
        return {
            "endpoint": self.endpoint,
            "api_key": "set" if self.api_key else "not set",
            "model": self.model,
            "vlm_model": self.vision_model,
            "embedding_model": self.embedding_model or "none",
            "max_concurrency": self.max_concurrency,
            "requests_per_minute": self.requests_per_minute or "unlimited",
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "max_reasks": self.max_reasks,
            "temperature": "per task" if self.temperature is None else self.temperature,
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "LLMConfig | None":
        """The configured endpoint, or None when `CLARA_LLM_BASE_URL` is unset (use the offline provider).

        Raises:
            LLMConfigError: a variable is set to a value that cannot be used; the message names it.
        """
        env = os.environ if environ is None else environ
        base_url = env.get(ENV_BASE_URL, "").strip()
        if not base_url:
            return None
        _check_url(base_url, ENV_BASE_URL)
        api_key = env.get(ENV_API_KEY) or env.get(ENV_OPENAI_API_KEY) or ""
        defaults = cls(base_url=base_url)
        rpm = _parse(env, ENV_RPM, float, defaults.requests_per_minute, lambda v: v >= 0, "a number >= 0 (0: no limit)")
        return cls(
            base_url=base_url,
            api_key=api_key.strip(),
            model=_name(env, ENV_MODEL) or DEFAULT_MODEL,
            vlm_model=_name(env, ENV_VLM_MODEL),
            embedding_model=_name(env, ENV_EMBEDDING_MODEL),
            max_concurrency=_parse(env, ENV_MAX_CONCURRENCY, int, defaults.max_concurrency, lambda v: v >= 1,
                                   "an integer >= 1"),
            requests_per_minute=rpm or None,
            timeout_s=_parse(env, ENV_TIMEOUT_S, float, defaults.timeout_s, lambda v: v > 0, "seconds > 0"),
            max_retries=_parse(env, ENV_MAX_RETRIES, int, defaults.max_retries, lambda v: v >= 0, "an integer >= 0"),
            max_reasks=_parse(env, ENV_MAX_REASKS, int, defaults.max_reasks, lambda v: v >= 0, "an integer >= 0"),
            temperature=_parse(env, ENV_TEMPERATURE, float, defaults.temperature, lambda v: 0 <= v <= 2,
                               "a number in 0..2"),
            price_input_per_1m=_parse(env, ENV_PRICE_INPUT, float, None, lambda v: v >= 0, "a price >= 0"),
            price_output_per_1m=_parse(env, ENV_PRICE_OUTPUT, float, None, lambda v: v >= 0, "a price >= 0"),
        )


def safe_endpoint(url: str) -> str:
    """`url` without credentials (user:password@), query string or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _check(ok: bool, where: str, value: object, expected: str) -> None:
    if not ok:
        raise LLMConfigError(f"{where}: expected {expected}, got {value!r}")


def _check_url(url: str, where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Echo only the safe form: a URL may carry credentials.
        shown = safe_endpoint(url) if parts.hostname else "<not a URL>"
        raise LLMConfigError(f"{where}: expected an http(s) URL such as https://api.openai.com/v1, got {shown!r}")


def _name(env: Mapping[str, str], var: str) -> str | None:
    value = env.get(var, "").strip()
    return value or None


def _parse(env: Mapping[str, str], var: str, kind: Callable[[str], T], default: T,
           valid: Callable[[T], bool], expected: str) -> T:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise LLMConfigError(f"{var}={raw!r}: expected {expected}") from None
    if isinstance(value, float) and not math.isfinite(value) or not valid(value):
        raise LLMConfigError(f"{var}={raw!r}: expected {expected}")
    return value
