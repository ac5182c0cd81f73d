"""The response cache: validated LLM outputs in one SQLite file, keyed by what was asked of which model,
and the items that failed validation ("parked"), so a known-bad item is not paid for on every run.

The key is sha256 over (task, model, prompt version, canonical input). Inputs are canonical JSON of the
task's `cache_input` (an image by its sha256, never its bytes). The endpoint is not in the key: the same
model name behind another URL (a proxy, another region, localhost vs 127.0.0.1) is the same model, and a
paid answer should not be bought twice. So do not share a cache file between a test server and real
runs under the same model name. The endpoint is stored beside each answer (without credentials) as
provenance; the API key never reaches this file.

Two tables. `responses` holds validated outputs. `failures` holds the items whose answers never validated
within their re-asks (invalid, truncated or refused: a model's verdict on that input, paid for), under
the same key; the client does not ask again for a parked item unless told to retry failures, and an
answer that validates later removes the entry. Outages (connection errors, timeouts, 5xx, 429) and
request errors (4xx) are never parked: they say nothing about the item. Several processes (concurrent
Dagster runs) may share one file: WAL mode lets readers work while one writer commits, each write is one
short transaction, a busy database is waited on (busy_timeout), and `INSERT OR IGNORE` makes two runs
that computed the same answer agree on the first one written. Calls are synchronous (on the event
loop): each is one indexed lookup or one small insert, well under a millisecond.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: the failures table (a version-1 file gains it on open)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    output TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created_at REAL NOT NULL
)
"""
_FAILURES_SCHEMA = """
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at REAL NOT NULL
)
"""


def canonical_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def cache_key(task: str, model: str, prompt_version: str, canonical_input: Any) -> str:
    """The cache address of one answer: what was asked (task, prompt version, input) of which model. The
    endpoint is not part of it (see the module docstring)."""
    material = canonical_json({"task": task, "model": model, "prompt_version": prompt_version,
                               "input": canonical_input})
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedResponse:
    output: Any  # the validated output as JSON data
    prompt_tokens: int  # what the original call cost (a hit costs nothing again)
    completion_tokens: int


@dataclass(frozen=True)
class ParkedFailure:
    """An item whose answers never validated: what went wrong, after how many requests, and when."""

    kind: str  # a FailureKind
    message: str
    attempts: int
    created_at: float


class ResponseCache:
    """A SQLite file of validated outputs. Open once per client; `close()` when done."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; each statement is its own short transaction.
        self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a crash may lose the last few answers, never corrupt the file.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._db.execute(_FAILURES_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise RuntimeError(f"{self.path}: cannot open the LLM response cache ({exc}); delete the file to "
                               "start an empty cache") from exc

    def get(self, key: str) -> CachedResponse | None:
        row = self._db.execute(
            "SELECT output, prompt_tokens, completion_tokens FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return CachedResponse(json.loads(row[0]), row[1], row[2])

    def put(self, key: str, *, task: str, endpoint: str, model: str, prompt_version: str, output: Any,
            prompt_tokens: int, completion_tokens: int) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO responses (key, task, endpoint, model, prompt_version, output, prompt_tokens, "
            "completion_tokens, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, task, endpoint, model, prompt_version, canonical_json(output), prompt_tokens,
             completion_tokens, time.time()))

    def delete(self, key: str) -> None:
        self._db.execute("DELETE FROM responses WHERE key = ?", (key,))

    # -- parked failures -----------------------------------------------------------------------------------

    def park(self, key: str, *, task: str, model: str, prompt_version: str, kind: str, message: str,
             attempts: int) -> None:
        """Records that the item under `key` failed validation; a later failure replaces the entry."""
        self._db.execute(
            "INSERT OR REPLACE INTO failures (key, task, model, prompt_version, kind, message, attempts, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (key, task, model, prompt_version, kind, message, attempts, time.time()))

    def parked(self, key: str) -> ParkedFailure | None:
        row = self._db.execute("SELECT kind, message, attempts, created_at FROM failures WHERE key = ?",
                               (key,)).fetchone()
        return None if row is None else ParkedFailure(*row)

    def unpark(self, key: str) -> None:
        self._db.execute("DELETE FROM failures WHERE key = ?", (key,))

    def count_parked(self, task: str | None = None) -> int:
        if task is None:
            return self._db.execute("SELECT COUNT(*) FROM failures").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM failures WHERE task = ?", (task,)).fetchone()[0]

    def count(self, task: str | None = None) -> int:
        if task is None:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM responses WHERE task = ?", (task,)).fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
