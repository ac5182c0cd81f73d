"""The async client for an OpenAI-compatible endpoint: bounded, rate-limited, retried, validated, cached.

One item (`run`) goes: cache lookup -> prompt (images prepared off the event loop) -> request -> parse and
validate -> cache. Around every request: a concurrency slot (semaphore), a rate-limit permit, a deadline,
the circuit breaker (breaker.py: an endpoint that cannot be reached stops the batch once, within about
10 s), and our retry loop for transient failures (429, 5xx, timeouts, connection errors) with full-jitter
backoff that honours Retry-After. The SDK's own retries are off, so one request is never multiplied.
An answer that does not parse or validate is re-asked, with the problem in the message, up to
`max_reasks` times; a 4xx that retrying cannot fix fails the item at once. An item whose answers never
validated is parked in the cache (cache.py) and not asked again, unless `retry_failed` is set.

Reasoning models (OpenAI's o-series and newer) take `max_completion_tokens` instead of `max_tokens` and
only their default temperature: when the server's 400 names either parameter, the request is sent again
without it, and the model is remembered, as for `response_format`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Awaitable, Callable, Mapping, Sequence, TypeVar

import openai
import pydantic
from openai.types.chat import ChatCompletion

from .batch import BatchResult, run_batch
from .breaker import CircuitBreaker
from .cache import ResponseCache, cache_key
from .config import LLMConfig
from .errors import FailureKind, LLMError
from .ratelimit import RateLimiter
from .retry import (DeadlineExceeded, backoff_delay, classify, is_length_keyword_rejection,
                    is_response_format_rejection, refused_parameter)
from .structured import MODES, OutputInvalid, parse_output, response_format
from .tasks import Task
from .usage import UsageStats
from .vision import ImageRejected

logger = logging.getLogger(__name__)

I = TypeVar("I")
O = TypeVar("O", bound=pydantic.BaseModel)
R = TypeVar("R")

EMBEDDING_TASK = "embedding"
EMBEDDING_VERSION = "embedding-v1"
# Failures that are the model's verdict on this input (paid for, and likely again): parked in the cache.
# Outages (connection, timeout, 5xx, 429) and request errors (4xx) say nothing about the item: never parked.
PARKED_KINDS = frozenset({FailureKind.INVALID_OUTPUT, FailureKind.TRUNCATED, FailureKind.REFUSED})
PROBE_TIMEOUT_S = 3.0  # a GET /models that takes longer counts as no answer (capped by timeout_s)

REASK_INVALID = ("Your previous reply could not be used: {problem}. Reply again with only the corrected JSON "
                 "object, following every rule.")
REASK_TRUNCATED = ("Your previous reply was cut off before the JSON object was complete (the output token "
                   "limit was reached). Reply again with a complete JSON object; keep every field shorter.")


class EmbeddingsUnavailable(RuntimeError):
    """embed() was called but no embedding model is configured (CLARA_EMBEDDING_MODEL)."""


class LLMClient:
    """Runs tasks against one endpoint. Create it inside the event loop that uses it; `aclose()` at the end.

    Args:
        cache: where validated outputs and parked failures are kept across runs; None disables both.
        retry_failed: ask again for items parked by an earlier run (default: report them as failed, unpaid).
        seed: seeds the backoff jitter (tests); None draws from the OS.
    """

    def __init__(self, config: LLMConfig, *, cache: ResponseCache | None = None, retry_failed: bool = False,
                 seed: int | None = None):
        self.config = config
        self.cache = cache
        self.retry_failed = retry_failed
        self.usage = UsageStats()
        self._openai = openai.AsyncOpenAI(
            # Local servers (vLLM, Ollama) need no key, but the SDK insists on a non-empty one.
            api_key=config.api_key or "not-needed",
            base_url=config.base_url,
            max_retries=0,  # we retry ourselves; see retry.py
            timeout=config.timeout_s,
        )
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._limiter = RateLimiter(config.requests_per_minute) if config.requests_per_minute else None
        self._rng = random.Random(seed)
        self._modes: dict[str, str] = {}  # model -> structured-output mode that the server accepts
        self._refused: dict[str, set[str]] = {}  # model -> parameters it refused ("max_tokens", "temperature")
        self._no_lengths: set[str] = set()  # models whose server refused maxLength/minLength in the schema
        self.breaker = CircuitBreaker(config.endpoint, self._probe, give_up_after_s=config.unreachable_after_s)

    def structured_mode(self, model: str) -> str:
        return self._modes.get(model, MODES[0])

    def describe(self) -> dict[str, Any]:
        return {**self.config.describe(), "structured_output": {m: self.structured_mode(m) for m in
                                                                 sorted({self.config.model, self.config.vision_model})}}

    async def aclose(self) -> None:
        await self.breaker.aclose()
        await self._openai.close()

    async def _probe(self) -> None:
        """Returns when the endpoint gave any HTTP answer to GET /models; raises when it gave none."""
        timeout = min(PROBE_TIMEOUT_S, self.config.timeout_s)
        try:
            await asyncio.wait_for(self._openai.models.list(timeout=timeout), timeout)
        except openai.APIStatusError:
            return  # 401, 404, 500...: an answer; whether chat works is for the real request to find out

    # -- one item ------------------------------------------------------------------------------------------

    async def run(self, task: Task[I, O], item: I) -> O:
        """The validated output of `task` for `item`, from the cache or the endpoint.

        Raises:
            LLMError: the item failed; `kind` says how (see FailureKind), the message says where.
        """
        model = self.config.vision_model if task.vision else self.config.model
        context = task.validation_context(item)
        key = None
        if self.cache is not None:
            key = cache_key(task.name, model, task.prompt_version, task.cache_input(item))
            hit = self.cache.get(key)
            if hit is not None:
                try:
                    output = task.output_model.model_validate(hit.output, context=context)
                except pydantic.ValidationError:
                    # Only possible if the rules changed without a prompt-version bump: ask again.
                    logger.warning("%s: cached output no longer validates; asking again (bump prompt_version "
                                   "when rules change)", task.name)
                else:
                    self.usage.cache_hits += 1
                    return output
            parked = self.cache.parked(key)
            if parked is not None and not self.retry_failed:
                self.usage.items_parked += 1
                raise LLMError(parked.kind, f"{task.name} ({model}): not asked again: it failed on "
                                            f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(parked.created_at))} "
                                            f"({parked.message}); retry with retry_failed (clara run --retry-failed)",
                               parked=True)
        try:
            return await self._ask(task, item, model, context, key)
        except LLMError as exc:
            if self.cache is not None and key is not None and exc.kind in PARKED_KINDS:
                self.cache.park(key, task=task.name, model=model, prompt_version=task.prompt_version, kind=exc.kind,
                                message=exc.message, attempts=exc.attempts)
            raise

    async def _ask(self, task: Task[I, O], item: I, model: str, context: dict[str, Any], key: str | None) -> O:
        """The endpoint's validated answer, re-asked up to `max_reasks` times; stored in the cache."""
        messages = await self._messages(task, item)
        attempts = 0
        prompt_tokens = completion_tokens = 0
        for ask in range(self.config.max_reasks + 1):
            completion, sent = await self._complete(task, model, messages)
            attempts += sent
            if completion.usage is not None:
                spent_in, spent_out = completion.usage.prompt_tokens or 0, completion.usage.completion_tokens or 0
                prompt_tokens += spent_in
                completion_tokens += spent_out
                self.usage.add_tokens(spent_in, spent_out, self.config.price_input_per_1m,
                                      self.config.price_output_per_1m)
            if not completion.choices:
                problem, kind, content = "the reply has no choices", FailureKind.INVALID_OUTPUT, None
            else:
                choice = completion.choices[0]
                content = choice.message.content
                if choice.finish_reason == "content_filter" or (choice.message.refusal and not content):
                    raise LLMError(FailureKind.REFUSED, f"{task.name} ({model}): refused: "
                                   f"{choice.message.refusal or 'content filter'}", attempts=attempts)
                try:
                    output = parse_output(content, task.output_model, context)
                except OutputInvalid as exc:
                    truncated = choice.finish_reason == "length"
                    kind = FailureKind.TRUNCATED if truncated else FailureKind.INVALID_OUTPUT
                    problem = f"cut off at max_tokens ({exc})" if truncated else str(exc)
                else:
                    if self.cache is not None and key is not None:
                        self.cache.put(key, task=task.name, endpoint=self.config.endpoint, model=model,
                                       prompt_version=task.prompt_version, output=output.model_dump(mode="json"),
                                       prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
                        self.cache.unpark(key)
                    return output
            if ask == self.config.max_reasks:
                break
            self.usage.reasks += 1
            logger.debug("%s: re-asking (%s): %s", task.name, kind, problem)
            feedback = REASK_TRUNCATED if kind == FailureKind.TRUNCATED else REASK_INVALID.format(problem=problem)
            messages = [*messages, {"role": "assistant", "content": content or ""},
                        {"role": "user", "content": feedback}]
        raise LLMError(kind, f"{task.name} ({model}): no valid answer after {self.config.max_reasks} re-asks; "
                             f"last problem: {problem}", attempts=attempts)

    async def _messages(self, task: Task[I, O], item: I) -> list[dict[str, Any]]:
        try:
            if task.vision:  # decoding and re-encoding an image takes milliseconds of CPU: off the loop
                return await asyncio.to_thread(task.build_messages, item)
            return task.build_messages(item)
        except ImageRejected as exc:
            raise LLMError(FailureKind.INVALID_INPUT, f"{task.name}: image rejected ({exc.code}): {exc.reason}") from None
        except (OSError, ValueError) as exc:
            raise LLMError(FailureKind.INVALID_INPUT, f"{task.name}: cannot build the request: {exc}") from None

    async def _complete(self, task: Task[I, O], model: str, messages: list[dict[str, Any]]) -> tuple[Any, int]:
        """One chat completion in the best structured-output mode the server accepts; (completion, requests)."""
        attempts = 0
        while True:
            sent_mode: list[str] = []

            def call() -> Awaitable[ChatCompletion]:
                # Read the mode when the request is sent (inside its concurrency slot), not when it was
                # queued: requests queued behind the one that found json_schema rejected use the fallback.
                mode = self.structured_mode(model)
                sent_mode.append(mode)
                refused = self._refused.get(model, set())
                body: dict[str, Any] = {"model": model, "messages": messages}
                if "temperature" not in refused:
                    body["temperature"] = self.config.temperature_for(task.name, task.temperature)
                body["max_completion_tokens" if "max_tokens" in refused else "max_tokens"] = task.max_tokens
                fmt = response_format(mode, task.name, task.output_model, lengths=model not in self._no_lengths)
                if fmt is not None:
                    body["response_format"] = fmt
                return self._post_chat(body)

            try:
                completion, sent = await self._request(task.name, call)
                return completion, attempts + sent
            except LLMError as exc:
                attempts += exc.attempts
                mode = sent_mode[-1] if sent_mode else MODES[-1]
                cause = exc.__cause__
                if (cause is not None and mode == "json_schema" and model not in self._no_lengths
                        and is_length_keyword_rejection(cause)):
                    self._no_lengths.add(model)
                    logger.info("%s refused the length limits in the JSON schema for %s; sending it without them",
                                self.config.endpoint, model)
                    continue
                parameter = refused_parameter(cause) if cause is not None else None
                if parameter is not None and parameter not in self._refused.get(model, set()):
                    self._refused.setdefault(model, set()).add(parameter)
                    logger.info("%s: %s does not take %s; sending %s from now on", self.config.endpoint, model,
                                parameter, "max_completion_tokens" if parameter == "max_tokens" else "no temperature")
                    continue
                if cause is None or not is_response_format_rejection(cause) or mode == MODES[-1]:
                    exc.attempts = attempts
                    raise
                fallback = MODES[MODES.index(mode) + 1]
                # Concurrent requests may all be refused at once: move on from the mode this one used, once.
                if MODES.index(self.structured_mode(model)) < MODES.index(fallback):
                    self._modes[model] = fallback
                    logger.info("%s rejected response_format %s for %s; using %s from now on",
                                self.config.endpoint, mode, model, fallback)

    async def _post_chat(self, body: dict[str, Any]) -> ChatCompletion:
        # The SDK's documented route for raw requests (`client.post`): same auth, errors, timeouts and
        # typed `ChatCompletion` as `chat.completions.create`, without its walk over every node of the
        # messages and the JSON schema to convert typed params, which plain dicts do not need. That walk
        # cost about 0.6 ms of CPU per request (bench/llm.py), paid on the event loop for every request.
        return await self._openai.post("/chat/completions", cast_to=ChatCompletion, body=body,
                                       options={"timeout": self.config.timeout_s})

    # -- one request, retried ------------------------------------------------------------------------------

    async def _request(self, task_name: str, call: Callable[[], Awaitable[R]]) -> tuple[R, int]:
        """`call()`'s result and the number of requests it took.

        Raises:
            LLMError: a non-retryable error (its `__cause__` is the SDK exception), or a transient one that
                outlasted `max_retries`.
        """
        attempts = 0
        breaker = self.breaker
        while True:
            attempts += 1
            if not breaker.verified:
                await breaker.check()  # EndpointUnreachable ends the batch: see breaker.py
            try:
                async with self._slots:
                    if self._limiter is not None:
                        await self._limiter.acquire()
                    breaker.raise_if_open()
                    self.usage.http_requests += 1
                    self.usage.requests_by_task[task_name] += 1
                    try:
                        result = await breaker.guard(call(), self.config.timeout_s)
                    except asyncio.TimeoutError:
                        raise DeadlineExceeded(f"no complete answer within {self.config.timeout_s:g} s") from None
                    breaker.answered()
                    return result, attempts  # type: ignore[return-value]
            except (openai.APIError, DeadlineExceeded) as exc:
                transient = classify(exc)
                if isinstance(exc, openai.APIStatusError):
                    breaker.answered()
                elif transient is not None and transient.cause in (FailureKind.CONNECTION, FailureKind.TIMEOUT):
                    breaker.unreachable(self._describe_error(task_name, exc))
                    await breaker.check()  # probes: raises EndpointUnreachable, or the retry goes ahead
                if transient is None:
                    raise LLMError(FailureKind.HTTP_ERROR, self._describe_error(task_name, exc), attempts=attempts,
                                   status_code=getattr(exc, "status_code", None)) from exc
                if attempts > self.config.max_retries:
                    raise LLMError(transient.cause, f"{self._describe_error(task_name, exc)} (gave up after "
                                                    f"{attempts} attempts)", attempts=attempts,
                                   status_code=getattr(exc, "status_code", None)) from exc
                delay = backoff_delay(attempts - 1, self.config.backoff_base_s, self.config.backoff_max_s, self._rng)
                if transient.retry_after_s is not None:
                    if transient.retry_after_s > self.config.max_retry_after_s:
                        logger.warning("%s asked to wait %.0f s; waiting %.0f s (max_retry_after_s)",
                                       self.config.endpoint, transient.retry_after_s, self.config.max_retry_after_s)
                    delay = max(delay, min(transient.retry_after_s, self.config.max_retry_after_s))
                    if transient.cause == FailureKind.RATE_LIMITED and self._limiter is not None:
                        self._limiter.pause_for(delay)
                self.usage.retries_by_cause[transient.cause] += 1
                logger.debug("%s: %s; retry %d in %.2f s", task_name, transient.cause, attempts, delay)
                await asyncio.sleep(delay)

    def _describe_error(self, task_name: str, exc: BaseException) -> str:
        if isinstance(exc, openai.APIStatusError):
            text = f"{task_name}: HTTP {exc.status_code} from {self.config.endpoint}: {exc.message}"
        elif isinstance(exc, openai.APITimeoutError):
            text = f"{task_name}: {self.config.endpoint} did not answer within {self.config.timeout_s:g} s"
        elif isinstance(exc, openai.APIConnectionError):
            text = f"{task_name}: cannot connect to {self.config.endpoint}: {exc.message}"
        else:
            text = f"{task_name}: {self.config.endpoint}: {exc}"
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        """`text` with the API key masked, in case a server echoes it in an error body."""
        key = self.config.api_key
        return text.replace(key, "***") if key else text

    # -- many items ----------------------------------------------------------------------------------------

    async def run_batch(self, task: Task[I, O], items: Mapping[str, I]) -> BatchResult[O]:
        """Every item's output or failure (see `run_batch` in batch.py); never raises for one bad item."""
        result = await run_batch(items, lambda item: self.run(task, item), task=task.name, usage=self.usage,
                                 window=4 * self.config.max_concurrency)
        result.provider = self.describe()  # after the batch: it says which structured-output mode worked
        return result

    # -- embeddings ----------------------------------------------------------------------------------------

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order, from the configured embedding model (cached per text).

        Raises:
            EmbeddingsUnavailable: no embedding model is configured.
            LLMError: a request failed for good; no partial result is returned.
        """
        model = self.config.embedding_model
        if not model:
            raise EmbeddingsUnavailable("no embedding model configured; set CLARA_EMBEDDING_MODEL")
        vectors: list[list[float] | None] = [None] * len(texts)
        keys = [cache_key(EMBEDDING_TASK, model, EMBEDDING_VERSION, {"text": t}) for t in texts]
        missing = []
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                vectors[i] = hit.output
                self.usage.cache_hits += 1
            else:
                missing.append(i)
        size = self.config.embedding_batch_size
        await asyncio.gather(*(self._embed_batch(model, texts, keys, vectors, missing[s:s + size])
                               for s in range(0, len(missing), size)))
        lost = [i for i, v in enumerate(vectors) if v is None]
        if lost:  # cannot happen: a failed request raises above; a tripwire, not a fallback
            raise RuntimeError(f"{EMBEDDING_TASK}: no vector for texts {lost[:5]}")
        return vectors  # type: ignore[return-value]

    async def _embed_batch(self, model: str, texts: Sequence[str], keys: list[str],
                           vectors: list[list[float] | None], indices: list[int]) -> None:
        inputs = [texts[i] for i in indices]
        response, _ = await self._request(EMBEDDING_TASK, lambda: self._openai.embeddings.create(
            model=model, input=inputs, timeout=self.config.timeout_s))
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(inputs):
            raise LLMError(FailureKind.INVALID_OUTPUT, f"{EMBEDDING_TASK}: asked for {len(inputs)} vectors, "
                                                       f"{self.config.endpoint} returned {len(data)}")
        tokens = response.usage.prompt_tokens if response.usage is not None else 0
        self.usage.add_tokens(tokens, 0, self.config.price_input_per_1m, self.config.price_output_per_1m)
        for i, item in zip(indices, data):
            vectors[i] = list(item.embedding)
            if self.cache is not None:
                self.cache.put(keys[i], task=EMBEDDING_TASK, endpoint=self.config.endpoint, model=model,
                               prompt_version=EMBEDDING_VERSION, output=vectors[i],
                               prompt_tokens=tokens // len(indices), completion_tokens=0)

