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


# -- publishing sets of files together -------------------------------------------------------------------------

import errno
import subprocess
import sys
import textwrap
import uuid

from clara_pipeline.storage import ArtifactStore, STAGING_DIR, publish_together, recover_publications
from tests.clara_pipeline.tmpfs import mounted_tmpfs


def _set(store: ArtifactStore, tag: str) -> dict:
    return {store.dataset_path("pretrain"): f"pretrain {tag}\n".encode(),
            store.dataset_path("e2e"): f"e2e {tag}\n".encode(),
            store.datasets_state_path: f"state {tag}\n".encode()}


def _contents(files) -> set[bytes]:
    return {path.read_bytes() for path in files}


def test_a_set_is_published_whole_and_leaves_no_staging(tmp_path):
    store = ArtifactStore(tmp_path)
    publish_together(store.root, _set(store, "old"))
    published = publish_together(store.root, _set(store, "new"))
    assert sorted(published) == sorted(_set(store, "new"))
    assert _contents(published) == {b"pretrain new\n", b"e2e new\n", b"state new\n"}
    assert os.listdir(tmp_path / STAGING_DIR) == ["publish.lock"]


def test_disk_full_part_way_publishes_nothing_and_names_the_file(tmp_path, monkeypatch):
    store = ArtifactStore(tmp_path)
    publish_together(store.root, _set(store, "old"))
    real, calls = storage._write_all, []

    def full_on_second(handle, data):
        calls.append(data)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(handle, data)

    monkeypatch.setattr(storage, "_write_all", full_on_second)
    with pytest.raises(OSError) as raised:
        publish_together(store.root, _set(store, "new"))
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(store.dataset_path("e2e"))
    assert "[Errno 28] No space left on device" in str(raised.value) and "end_to_end.jsonl" in str(raised.value)
    assert _contents(_set(store, "x")) == {b"pretrain old\n", b"e2e old\n", b"state old\n"}
    assert os.listdir(tmp_path / STAGING_DIR) == ["publish.lock"]


def test_a_failed_check_discards_the_staged_set(tmp_path):
    store = ArtifactStore(tmp_path)
    publish_together(store.root, _set(store, "old"))
    with pytest.raises(ValueError, match="no rows"):
        with store.publication() as pub:
            for dest, data in _set(store, "new").items():
                pub.write_bytes(dest, data)
            raise ValueError("pretrain has no rows")
    assert _contents(_set(store, "x")) == {b"pretrain old\n", b"e2e old\n", b"state old\n"}
    assert os.listdir(tmp_path / STAGING_DIR) == ["publish.lock"]


def test_a_path_outside_the_root_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not under the artifacts root"):
        publish_together(tmp_path / "artifacts", {tmp_path / "elsewhere.json": b"{}"})


CRASH_BETWEEN_RENAMES = textwrap.dedent("""
    import os, sys
    from clara_pipeline import storage
    store = storage.ArtifactStore(sys.argv[1])
    real, moved = os.replace, []
    def replace(src, dst):
        if "/files/" in str(src):  # a staged file being published
            moved.append(dst)
            if len(moved) == 2:
                os._exit(9)  # killed after one file of the set was published
        real(src, dst)
    storage.os.replace = replace
    storage.publish_together(store.root, {store.dataset_path("pretrain"): b"pretrain new\\n",
                                          store.dataset_path("e2e"): b"e2e new\\n",
                                          store.datasets_state_path: b"state new\\n"})
""")


def test_a_crash_between_renames_is_finished_on_the_next_start(tmp_path):
    store = ArtifactStore(tmp_path)
    publish_together(store.root, _set(store, "old"))
    child = subprocess.run([sys.executable, "-c", CRASH_BETWEEN_RENAMES, str(tmp_path)], capture_output=True)
    assert child.returncode == 9, child.stderr.decode()
    assert len(_contents(_set(store, "x")) & {b"pretrain new\n", b"e2e new\n", b"state new\n"}) == 1  # mixed set
    assert len(recover_publications(store.root)) == 1
    assert _contents(_set(store, "x")) == {b"pretrain new\n", b"e2e new\n", b"state new\n"}
    assert os.listdir(tmp_path / STAGING_DIR) == ["publish.lock"]
    assert recover_publications(store.root) == []


def test_recovery_removes_a_dead_writers_staging_but_not_a_live_ones(tmp_path):
    store = ArtifactStore(tmp_path)
    dead = tmp_path / STAGING_DIR / uuid.uuid4().hex / "files" / "datasets"
    dead.mkdir(parents=True)
    (dead / "pretrain.jsonl").write_bytes(b"half")
    (dead.parents[1] / ".owner").touch()  # its owner's lock went with the process
    with store.publication() as live:
        live.write_bytes(store.dataset_path("pretrain"), b"being written\n")
        assert recover_publications(store.root) == []
        assert sorted(os.listdir(tmp_path / STAGING_DIR)) == [live.id]
        live.commit()
    assert store.dataset_path("pretrain").read_bytes() == b"being written\n"


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 1 MiB tmpfs (needs root and a container that lets it mount; skipped otherwise)."""
    with mounted_tmpfs(tmp_path / "tmpfs", "1m") as mount:
        yield mount


def test_a_real_full_disk_publishes_nothing(small_tmpfs):
    store = ArtifactStore(small_tmpfs / "artifacts")
    publish_together(store.root, _set(store, "old"))
    new = {**_set(store, "new"), store.dataset_path("instruct"): b"x" * (2 << 20)}  # 2 MiB on a 1 MiB disk
    with pytest.raises(OSError) as raised:
        publish_together(store.root, new)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(store.dataset_path("instruct"))
    assert _contents(_set(store, "x")) == {b"pretrain old\n", b"e2e old\n", b"state old\n"}
    assert not store.dataset_path("instruct").exists()
    assert os.listdir(store.root / STAGING_DIR) == ["publish.lock"]


RACE = textwrap.dedent("""
    import sys
    from clara_pipeline import storage
    store, tag = storage.ArtifactStore(sys.argv[1]), sys.argv[2]
    for i in range(40):
        storage.recover_publications(store.root)  # as every step's store() does
        storage.publish_together(store.root, {store.dataset_path("pretrain"): f"pretrain {tag}{i}\\n".encode(),
                                              store.dataset_path("e2e"): f"e2e {tag}{i}\\n".encode(),
                                              store.datasets_state_path: f"state {tag}{i}\\n".encode()})
""")


def test_two_processes_publishing_the_same_set_leave_one_whole_set(tmp_path):
    store = ArtifactStore(tmp_path)
    children = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path), tag], stderr=subprocess.PIPE)
                for tag in ("a", "b")]
    for child in children:
        assert child.wait(timeout=120) == 0, child.stderr.read().decode()
    versions = {path.read_bytes().split()[1] for path in _set(store, "x")}
    assert len(versions) == 1 and versions <= {b"a39", b"b39"}
    assert os.listdir(tmp_path / STAGING_DIR) == ["publish.lock"]
