import multiprocessing
import sqlite3

from clara_pipeline.llm.cache import ResponseCache, cache_key


def put(cache: ResponseCache, key: str, output) -> None:
    cache.put(key, task="caption", endpoint="http://127.0.0.1:1/v1", model="m", prompt_version="v1", output=output,
              prompt_tokens=10, completion_tokens=5)


def test_round_trip_and_first_writer_wins(tmp_path):
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        key = cache_key("caption", "m", "v1", {"image_sha256": "ab" * 32})
        assert cache.get(key) is None
        put(cache, key, {"title": "first", "n": [1, 2]})
        put(cache, key, {"title": "second"})
        hit = cache.get(key)
        assert hit.output == {"title": "first", "n": [1, 2]}
        assert (hit.prompt_tokens, hit.completion_tokens) == (10, 5)
        assert cache.count("caption") == 1 and cache.count("other") == 0
    # survives reopening: it is on disk
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert cache.get(key).output["title"] == "first"


def test_key_covers_task_model_version_and_input():
    base = cache_key("caption", "m", "v1", {"a": 1, "b": 2})
    assert base == cache_key("caption", "m", "v1", {"b": 2, "a": 1})  # canonical: key order does not matter
    for other in (cache_key("synth", "m", "v1", {"a": 1, "b": 2}),
                  cache_key("caption", "m2", "v1", {"a": 1, "b": 2}),
                  cache_key("caption", "m", "v2", {"a": 1, "b": 2}),
                  cache_key("caption", "m", "v1", {"a": 1, "b": 3})):
        assert other != base


def test_parked_failures_are_kept_replaced_and_removed(tmp_path):
    key = cache_key("chunk_synthesis", "m", "v1", {"text": "x"})
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert cache.parked(key) is None and cache.count_parked() == 0
        cache.park(key, task="chunk_synthesis", model="m", prompt_version="v1", kind="invalid_output",
                   message="first", attempts=3)
        cache.park(key, task="chunk_synthesis", model="m", prompt_version="v1", kind="truncated",
                   message="second", attempts=3)
        assert (cache.parked(key).kind, cache.parked(key).message) == ("truncated", "second")
        assert cache.count_parked("chunk_synthesis") == 1 and cache.count_parked("caption") == 0
    with ResponseCache(tmp_path / "c.sqlite") as cache:  # on disk
        assert cache.parked(key).attempts == 3
        cache.unpark(key)
        assert cache.parked(key) is None


def test_a_version_1_file_gains_the_failures_table(tmp_path):
    with sqlite3.connect(tmp_path / "old.sqlite") as db:
        db.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, task TEXT NOT NULL, endpoint TEXT NOT NULL, "
                   "model TEXT NOT NULL, prompt_version TEXT NOT NULL, output TEXT NOT NULL, prompt_tokens INTEGER "
                   "NOT NULL, completion_tokens INTEGER NOT NULL, created_at REAL NOT NULL)")
    with ResponseCache(tmp_path / "old.sqlite") as cache:
        assert cache.count_parked() == 0


def test_wal_mode(tmp_path):
    ResponseCache(tmp_path / "c.sqlite").close()
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _writer(path: str, worker: int, n: int) -> None:
    with ResponseCache(path) as cache:
        for i in range(n):
            # Half the keys are shared by every worker (two runs computing the same answer), half are own.
            key = cache_key("t", "m", "v", {"i": i} if i % 2 else {"worker": worker, "i": i})
            put(cache, key, {"worker": worker, "i": i})
            assert cache.get(key) is not None


def test_several_processes_write_one_file(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    workers, n = 3, 200
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_writer, args=(path, w, n)) for w in range(workers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * workers
    with ResponseCache(path) as cache:
        assert cache.count() == workers * n // 2 + n // 2
