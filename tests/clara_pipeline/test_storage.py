import os

import pytest

from clara_pipeline import storage
from clara_pipeline.storage import ImageStore, write_bytes_atomic, write_json_atomic


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "a" / "out.json"
    write_json_atomic(target, {"v": 1})
    write_json_atomic(target, {"v": 2})
    assert target.read_text().strip().replace(" ", "").replace("\n", "") == '{"v":2}'
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    write_bytes_atomic(target, b"good")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(storage.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomic(target, b"half-written replacement")
    assert target.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_image_store_dedups_and_verifies(tmp_path):
    store = ImageStore(tmp_path)
    sha = store.put(b"\x89PNG fake", "png")
    path = store.path_for(sha, "png")
    mtime = path.stat().st_mtime_ns
    assert store.put(b"\x89PNG fake", "png") == sha and path.stat().st_mtime_ns == mtime
    assert store.verify(sha, "png") is None
    path.write_bytes(b"tampered")
    assert "corrupt" in store.verify(sha, "png")
    path.unlink()
    assert "missing" in store.verify(sha, "png")
