"""A small OpenAI-compatible server on 127.0.0.1 for tests and benchmarks, with fault injection.

    with LoopbackServer(latency_s=0.2, faults=FaultPlan(rates={"rate_limit": 0.1})) as server:
        config = LLMConfig(base_url=server.url, api_key="test-key")
        ...
        server.stats.total, server.stats.by_task, server.stats.by_fault, server.stats.max_in_flight

Endpoints: `POST /v1/chat/completions` (text and image_url parts; `response_format` json_schema,
json_object or none) and `POST /v1/embeddings`. Answers are deterministic and valid for the task the
prompt asks for: the task is recognised from the prompt (an image part: a caption; a `<passage>` block: a
chunk synthesis) and answered with the offline provider's logic on the input found in the prompt. `usage`
counts tokens roughly like a real tokenizer (about 4 characters or 1 CJK character per token, and 85 +
170 per 512-px tile for an image).

Latency is the whole time to answer (reading the request and making the answer included); handlers
await `asyncio.sleep`, so many requests wait at once. Faults, drawn per request (`FaultPlan`): a script
for the first requests in arrival order, then random rates from a seeded generator.

`reasoning_model=True` answers like OpenAI's o-series: a request with `max_tokens`, or a temperature other
than 1, gets the same 400 as there. `StalledServer` accepts connections and never answers (a hung process);
`closed_port()` gives a port nobody listens on.

`LoopbackProcess` runs the same server in a child process (for benchmarks); from a shell,
`python -m clara_pipeline.llm.loopback --latency 0.2` prints `LISTENING <base url>` and serves until
interrupted (point `CLARA_LLM_BASE_URL` at it to run the pipeline through HTTP without a real endpoint).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import logging
import math
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .errors import LLMError
from .offline import hashed_embedding, offline_caption, offline_synthesis
from .tasks import CaptionInput, ChunkInput

logger = logging.getLogger(__name__)

FAULTS = ("rate_limit", "server_error", "unavailable", "timeout", "bad_request", "malformed", "fenced", "truncated",
          "bad_pair")
_HTTP_FAULTS = {"rate_limit", "server_error", "unavailable", "timeout", "bad_request"}  # also for embeddings

_TAG_RE = {name: re.compile(rf"<{name}>(.*?)</{name}>", re.DOTALL)
           for name in ("document_language", "alt_text", "text_before", "text_after")}
_PASSAGE_RE = re.compile(r'<passage language="(\w+)" pairs="(\d+)">\n(.*?)\n</passage>', re.DOTALL)
_CJK_RE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass
class FaultPlan:
    """Which requests fail and how.

    `script` gives the fault (a FAULTS name, or None for a normal answer) of the first len(script)
    requests in arrival order; after it, each request draws from `rates` (fault -> probability; they must
    sum to at most 1). `rate_limit` answers 429 with `Retry-After: retry_after_s` (a fraction is sent as a
    decimal: real servers send whole seconds, tests want speed); `timeout` holds the request `hang_s`
    before answering, longer than the client waits.
    """

    rates: Mapping[str, float] = field(default_factory=dict)
    script: Sequence[str | None] = ()
    seed: int = 0
    retry_after_s: float = 1.0
    hang_s: float = 10.0

    def __post_init__(self) -> None:
        for name in [*self.rates, *(s for s in self.script if s is not None)]:
            if name not in FAULTS:
                raise ValueError(f"FaultPlan: unknown fault {name!r}; expected one of {FAULTS}")
        if sum(self.rates.values()) > 1.0 + 1e-9 or any(p < 0 for p in self.rates.values()):
            raise ValueError(f"FaultPlan.rates must be >= 0 and sum to at most 1, got {dict(self.rates)}")
        self._rng = random.Random(self.seed)
        self._position = 0

    def draw(self) -> str | None:
        if self._position < len(self.script):
            self._position += 1
            return self.script[self._position - 1]
        roll = self._rng.random()
        for name, p in sorted(self.rates.items()):
            if roll < p:
                return name
            roll -= p
        return None


@dataclass
class LoopbackStats:
    """What the server saw. Read it from the test thread; the server thread updates it under a lock."""

    total: int = 0
    by_task: Counter[str] = field(default_factory=Counter)
    by_fault: Counter[str] = field(default_factory=Counter)
    by_response_format: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each request
    auth_failures: int = 0
    temperatures: Counter[str] = field(default_factory=Counter)  # "task:temperature" ("task:none" if absent)
    token_parameters: Counter[str] = field(default_factory=Counter)  # "max_tokens" / "max_completion_tokens"
    models_probes: int = 0  # GET /v1/models


class LoopbackServer:
    """The server, on a thread, on an ephemeral port of 127.0.0.1. Use as a context manager."""

    def __init__(self, *, latency_s: float = 0.0, faults: FaultPlan | None = None, reject_json_schema: bool = False,
                 reject_json_object: bool = False, api_key: str | None = None, embedding_dim: int = 256,
                 reasoning_model: bool = False, reject_length_keywords: bool = False):
        self.latency_s = latency_s
        self.reasoning_model = reasoning_model
        self.reject_length_keywords = reject_length_keywords  # as OpenAI's strict mode: no maxLength/minLength
        self.faults = faults or FaultPlan()
        self.reject_json_schema = reject_json_schema
        self.reject_json_object = reject_json_object
        self.api_key = api_key  # when set, other keys get 401
        self.embedding_dim = embedding_dim
        self.stats = LoopbackStats()
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = LoopbackStats()

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self, port: int = 0) -> "LoopbackServer":
        """Serve on 127.0.0.1:`port` (0: a free port, the default; a given one brings an endpoint back where it
        was)."""
        app = Starlette(routes=[
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/embeddings", self._embeddings, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/loopback/stats", self._stats, methods=["GET"]),
        ])
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", port))
        self.port = self._socket.getsockname()[1]
        # log_config=None: leave the host process's logging configuration alone.
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name=f"loopback-llm-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"loopback server on 127.0.0.1:{self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                assert self._server is not None
                self._server.force_exit = True
                self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- handlers ------------------------------------------------------------------------------------------

    def _arrive(self, task: str) -> None:
        with self._lock:
            self.stats.total += 1
            self.stats.by_task[task] += 1
            self.stats.arrivals.append(time.monotonic())
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.stats.in_flight -= 1

    def _count_fault(self, fault: str) -> None:
        logger.debug("loopback: injecting %s", fault)
        with self._lock:
            self.stats.by_fault[fault] += 1

    def _authorised(self, request: Request) -> bool:
        if self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}":
            return True
        with self._lock:
            self.stats.auth_failures += 1
        return False

    async def _wait(self, started: float) -> None:
        """Sleeps until `latency_s` after `started`: the latency is the whole time to answer, so the work
        of reading the request and making the answer is part of it, as on a real server."""
        await asyncio.sleep(max(0.0, self.latency_s - (time.monotonic() - started)))

    async def _chat(self, request: Request) -> Response:
        started = time.monotonic()
        body = await request.json()
        messages = body.get("messages") or []
        task, text, image = _recognise(messages)
        self._arrive(task)
        try:
            if not self._authorised(request):
                return _error(401, "Incorrect API key provided.", "invalid_api_key")
            fmt = (body.get("response_format") or {}).get("type", "none")
            with self._lock:
                self.stats.by_response_format[fmt] += 1
                self.stats.temperatures[f"{task}:{body.get('temperature', 'none')}"] += 1
                for name in ("max_tokens", "max_completion_tokens"):
                    if name in body:
                        self.stats.token_parameters[name] += 1
            schema = json.dumps(((body.get("response_format") or {}).get("json_schema") or {}).get("schema", {}))
            if fmt == "json_schema" and self.reject_length_keywords and ("maxLength" in schema or "minLength" in schema):
                await self._wait(started)
                return _error(400, "Invalid schema for response_format: 'maxLength' is not permitted.",
                              "invalid_request_error", param="response_format")
            if self.reasoning_model and "max_tokens" in body:
                await self._wait(started)
                return _error(400, "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                                   "'max_completion_tokens' instead.", "unsupported_parameter", param="max_tokens")
            if self.reasoning_model and body.get("temperature", 1) != 1:
                await self._wait(started)
                return _error(400, f"Unsupported value: 'temperature' does not support {body['temperature']} with "
                                   "this model. Only the default (1) value is supported.", "unsupported_value",
                              param="temperature")
            if (fmt == "json_schema" and self.reject_json_schema) or (fmt == "json_object" and self.reject_json_object):
                await self._wait(started)
                return _error(400, f"response_format type '{fmt}' is not supported by this server.",
                              "invalid_request_error", param="response_format")
            fault = self.faults.draw()
            if fault in _HTTP_FAULTS:
                await self._wait(started)
                return await self._http_fault(fault)
            answer = _answer(task, text, image)
            content, finish = json.dumps(answer, ensure_ascii=False), "stop"
            if fault == "malformed":  # a Python dict instead of JSON: single quotes
                content = str(answer)
            elif fault == "fenced":
                content = f"Here is the JSON you asked for:\n```json\n{content}\n```\nLet me know if you need more."
            elif fault == "truncated":
                content, finish = content[: max(1, len(content) // 2)], "length"
            elif fault == "bad_pair" and task == "chunk_synthesis" and answer.get("qa_pairs"):
                # one pair that breaks a rule (it leans on "the text"), before the good ones: a model's slip
                slip = {**answer["qa_pairs"][0], "question": "According to the text, what is stated first?"}
                content = json.dumps({**answer, "qa_pairs": [slip, *answer["qa_pairs"]]}, ensure_ascii=False)
            if fault is not None:
                self._count_fault(fault)
            reply = {
                "id": f"chatcmpl-loopback-{self.stats.total}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "loopback"),
                "choices": [{"index": 0, "finish_reason": finish,
                             "message": {"role": "assistant", "content": content}}],
                "usage": _usage(_prompt_tokens(messages), _text_tokens(content)),
            }
            await self._wait(started)
            return JSONResponse(reply)
        finally:
            self._leave()

    async def _embeddings(self, request: Request) -> Response:
        started = time.monotonic()
        body = await request.json()
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        self._arrive("embedding")
        try:
            if not self._authorised(request):
                return _error(401, "Incorrect API key provided.", "invalid_api_key")
            fault = self.faults.draw()
            if fault in _HTTP_FAULTS:
                await self._wait(started)
                return await self._http_fault(fault)
            data = [{"object": "embedding", "index": i, "embedding": hashed_embedding(text, self.embedding_dim)}
                    for i, text in enumerate(inputs)]
            tokens = sum(_text_tokens(t) for t in inputs)
            await self._wait(started)
            return JSONResponse({"object": "list", "data": data, "model": body.get("model", "loopback"),
                                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
        finally:
            self._leave()

    async def _stats(self, request: Request) -> Response:
        with self._lock:
            stats = self.stats
            return JSONResponse({"total": stats.total, "by_task": dict(stats.by_task), "by_fault": dict(stats.by_fault),
                                 "by_response_format": dict(stats.by_response_format), "in_flight": stats.in_flight,
                                 "max_in_flight": stats.max_in_flight, "auth_failures": stats.auth_failures})

    async def _models(self, request: Request) -> Response:
        with self._lock:
            self.stats.models_probes += 1
        return JSONResponse({"object": "list", "data": [{"id": "loopback", "object": "model", "owned_by": "clara"}]})

    async def _http_fault(self, fault: str) -> Response:
        self._count_fault(fault)
        if fault == "rate_limit":
            seconds = self.faults.retry_after_s
            value = str(int(seconds)) if float(seconds).is_integer() else f"{seconds:.3f}"
            return _error(429, "Rate limit reached for requests (injected).", "rate_limit_exceeded",
                          headers={"retry-after": value})
        if fault == "server_error":
            return _error(500, "The server had an error while processing your request (injected).", "server_error")
        if fault == "unavailable":
            return _error(503, "The engine is currently overloaded (injected).", "server_error")
        if fault == "bad_request":
            return _error(400, "Invalid 'messages': rejected by the loopback server (injected).",
                          "invalid_request_error")
        # timeout: outlast the client; stop() ends the hang, so shutting down never waits for it
        deadline = time.monotonic() + self.faults.hang_s
        while time.monotonic() < deadline and not self._stopping:
            await asyncio.sleep(0.02)
        return _error(504, "Gateway timeout (injected, after hanging).", "timeout")


class StalledServer:
    """A TCP listener on 127.0.0.1 that accepts every connection and never answers: a hung server.

        with StalledServer() as server:
            config = LLMConfig(base_url=server.url, ...)
            server.connections  # how many connections were accepted
    """

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(128)
        self._socket.settimeout(0.1)
        self.port = self._socket.getsockname()[1]
        self.connections = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=f"stalled-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            self._held.append(conn)  # kept open, never read from or written to

    def __enter__(self) -> "StalledServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._socket.close()


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (bound once to get a free number, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- answers ---------------------------------------------------------------------------------------------

def _recognise(messages: list[dict[str, Any]]) -> tuple[str, str, str | None]:
    """(task, the first user message's text, its image data URL or None): an image means a caption, a
    `<passage>` block a chunk synthesis, anything else "other"."""
    user = next((m for m in messages if m.get("role") == "user"), {})
    content = user.get("content")
    parts = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
    text = "\n".join(p.get("text", "") for p in parts if p.get("type") == "text")
    image = next((p["image_url"]["url"] for p in parts if p.get("type") == "image_url"), None)
    if image is not None:
        return "caption", text, image
    return ("chunk_synthesis" if _PASSAGE_RE.search(text) else "other"), text, None


def _answer(task: str, text: str, image: str | None) -> dict[str, Any]:
    """The JSON answer a good model would give, derived from the input found in the prompt."""
    if task == "caption" and image is not None:
        return _caption_answer(text, image)
    passage = _PASSAGE_RE.search(text)
    if task == "chunk_synthesis" and passage is not None:
        return _synthesis_answer(passage.group(3), passage.group(1), int(passage.group(2)))
    return {"reply": text[:200]}


def _tag(text: str, name: str) -> str:
    match = _TAG_RE[name].search(text)
    return match.group(1) if match else ""


def _caption_answer(text: str, data_url: str) -> dict[str, Any]:
    lang = _tag(text, "document_language")
    data = base64.b64decode(data_url.split(",", 1)[1])
    try:
        item = CaptionInput(image=data, lang=lang if lang in ("en", "zh") else "und",
                            context_before=_tag(text, "text_before"), context_after=_tag(text, "text_after"),
                            alt_text=_tag(text, "alt_text"))
        return offline_caption(item).model_dump()
    except (LLMError, ValueError):
        return {"title": "", "text_in_image": "", "structure": "", "meaning": ""}  # a model at a loss


def _synthesis_answer(text: str, lang: str, n_pairs: int) -> dict[str, Any]:
    try:
        return offline_synthesis(ChunkInput(text, lang if lang in ("en", "zh") else "und", n_pairs)).model_dump()
    except (LLMError, ValueError):
        return {"qa_pairs": [], "paraphrase": ""}  # a model at a loss: fails validation, as it should


# -- usage -----------------------------------------------------------------------------------------------

def _text_tokens(text: str) -> int:
    cjk = len(_CJK_RE.findall(text))
    return max(1, cjk + math.ceil((len(text) - cjk) / 4))


def _image_tokens(data_url: str) -> int:
    try:
        with Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))) as image:
            width, height = image.size
    except (OSError, ValueError, IndexError):
        return 85
    scale = min(1.0, 2048 / max(width, height))  # OpenAI's high-detail accounting, roughly
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    return 85 + 170 * math.ceil(width * scale / 512) * math.ceil(height * scale / 512)


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    total = 0
    for message in messages:
        total += 4  # role and separators
        content = message.get("content")
        for part in (content if isinstance(content, list) else [{"type": "text", "text": content or ""}]):
            if part.get("type") == "image_url":
                total += _image_tokens(part["image_url"]["url"])
            else:
                total += _text_tokens(part.get("text", ""))
    return total


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _error(status: int, message: str, code: str, *, param: str | None = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": code, "param": param, "code": code}},
                        status_code=status, headers=dict(headers or {}))


# -- in a child process ----------------------------------------------------------------------------------

class LoopbackProcess:
    """The same server in a child process, with its own interpreter lock: for benchmarks, where the
    server's CPU work must not slow down the client being measured (a real endpoint is another machine).

    Stats come over HTTP (`stats()`); faults are given as rates (`--fault name=p`).
    """

    def __init__(self, *, latency_s: float = 0.0, rates: Mapping[str, float] | None = None, seed: int = 0,
                 reject_json_schema: bool = False):
        self.args = ["--latency", str(latency_s), "--seed", str(seed)]
        self.args += [arg for name, p in (rates or {}).items() for arg in ("--fault", f"{name}={p}")]
        if reject_json_schema:
            self.args.append("--reject-json-schema")
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> "LoopbackProcess":
        self._process = subprocess.Popen([sys.executable, "-m", "clara_pipeline.llm.loopback", *self.args],
                                         stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.startswith("LISTENING "):
            self._process.kill()
            raise RuntimeError(f"loopback process did not start (said {line!r})")
        self.url = line.split(" ", 1)[1]
        return self

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url.removesuffix("/v1") + "/loopback/stats", timeout=10) as reply:
            return json.loads(reply.read())

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m clara_pipeline.llm.loopback [--latency S] [--fault NAME=P ...]`: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description="OpenAI-compatible loopback server for tests and benchmarks")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each request waits")
    parser.add_argument("--fault", action="append", default=[], metavar="NAME=P", help=f"fault rate, NAME in {FAULTS}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reject-json-schema", action="store_true")
    args = parser.parse_args(argv)
    rates = {}
    for spec in args.fault:
        name, _, p = spec.partition("=")
        try:
            rates[name] = float(p)
        except ValueError:
            parser.error(f"--fault {spec!r}: expected NAME=PROBABILITY")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with LoopbackServer(latency_s=args.latency, faults=FaultPlan(rates=rates, seed=args.seed),
                        reject_json_schema=args.reject_json_schema) as server:
        print(f"LISTENING {server.url}", flush=True)
        while not stop.wait(0.5):
            pass


if __name__ == "__main__":
    main()
