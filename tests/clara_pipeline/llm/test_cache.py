import multiprocessing
import sqlite3

from clara_pipeline.llm.cache import ResponseCache, cache_key


def put(cache: ResponseCache, key: str, output) -> None:
    cache.put(key, task="caption", endpoint="http://127.0.0.1:1/v1", model="m", prompt_version="v1", output=output,
              prompt_tokens=10, completion_tokens=5)


def test_round_trip_and_first_writer_wins(tmp_path):
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        key = cache_key("caption", "http://h/v1", "m", "v1", {"image_sha256": "ab" * 32})
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
    base = cache_key("caption", "http://h/v1", "m", "v1", {"a": 1, "b": 2})
    assert base == cache_key("caption", "http://h/v1", "m", "v1", {"b": 2, "a": 1})  # canonical: key order does not matter
    for other in (cache_key("synth", "http://h/v1", "m", "v1", {"a": 1, "b": 2}),
                  cache_key("caption", "http://h/v1", "m2", "v1", {"a": 1, "b": 2}),
                  cache_key("caption", "http://h/v1", "m", "v2", {"a": 1, "b": 2}),
                  cache_key("caption", "http://h/v1", "m", "v1", {"a": 1, "b": 3}),
                  cache_key("caption", "http://other/v1", "m", "v1", {"a": 1, "b": 2})):
        assert other != base


def test_wal_mode(tmp_path):
    ResponseCache(tmp_path / "c.sqlite").close()
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _writer(path: str, worker: int, n: int) -> None:
    with ResponseCache(path) as cache:
        for i in range(n):
            # Half the keys are shared by every worker (two runs computing the same answer), half are own.
            key = cache_key("t", "http://h/v1", "m", "v", {"i": i} if i % 2 else {"worker": worker, "i": i})
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
