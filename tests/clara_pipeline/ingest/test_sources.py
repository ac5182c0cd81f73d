import os
import re

import pytest

from clara_pipeline.ingest import sources
from clara_pipeline.ingest.sources import (
    FileState,
    SourceNotFound,
    find_source,
    list_files,
    partition_key,
    plan_partitions,
    scan_folder,
    slugify,
)


def age(path, seconds=10):
    """Backdates a file's mtime, as if it had been copied in a while ago."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


@pytest.mark.parametrize("rel, slug", [
    ("Manuals/Setup Guide v2.PDF", "manuals_setup_guide_v2_pdf"),
    ("Über Café.md", "uber_cafe_md"),
    ("信息安全管理制度.docx", "doc_docx"),
    ("a,b|c.txt", "a_b_c_txt"),
])
def test_slugs(rel, slug):
    assert slugify(rel) == slug


def test_partition_keys_use_only_safe_characters():
    key = partition_key("Reports, 2024/Q1 | final (1).pdf", "ab" * 32)
    assert re.fullmatch(r"[a-z0-9_-]+", key) and key.endswith("-abababababab")


def test_listing_skips_hidden_lock_and_os_files(tmp_path):
    for name in ("a.pdf", ".hidden.pdf", "~$draft.docx", "Thumbs.db", "sub/b.md", ".git/config"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert list_files(tmp_path) == ["a.pdf", "sub/b.md"]


def test_scan_reuses_hashes_of_unchanged_files(tmp_path, monkeypatch):
    (tmp_path / "a.md").write_text("one")
    (tmp_path / "b.md").write_text("two")
    for p in tmp_path.iterdir():
        age(p)
    first = scan_folder(tmp_path)
    calls = []
    monkeypatch.setattr(sources, "sha256_file", lambda p: calls.append(p.name) or "f" * 64)
    (tmp_path / "b.md").write_text("two, edited")
    age(tmp_path / "b.md")
    second = scan_folder(tmp_path, first.files)
    assert calls == ["b.md"]
    assert second.files["a.md"] == first.files["a.md"]


def test_files_still_being_written_wait_for_the_next_scan(tmp_path):
    (tmp_path / "copying.pdf").write_text("partial")
    result = scan_folder(tmp_path, settle_s=60)
    assert result.files == {} and result.unhashed == ["copying.pdf"]


def test_plan_adds_new_deletes_gone_and_keeps_pending():
    scan = sources.ScanResult(
        files={"new.md": FileState(1, 1, "a" * 64), "kept.md": FileState(1, 1, "b" * 64)},
        unhashed=["busy.pdf"])
    existing = {partition_key("kept.md", "b" * 64), "old_md-cccccccccccc", "busy_pdf-dddddddddddd"}
    plan = plan_partitions(scan, existing)
    assert plan.add == [partition_key("new.md", "a" * 64)]
    assert plan.delete == ["old_md-cccccccccccc"]  # busy.pdf is not hashed yet: its key stays


def test_plan_caps_new_partitions_per_tick():
    scan = sources.ScanResult(files={f"{i:03}.md": FileState(1, 1, f"{i:064x}") for i in range(10)}, unhashed=[])
    plan = plan_partitions(scan, set(), max_new=4)
    assert len(plan.add) == 4 and plan.deferred == 6
    assert plan.add == [partition_key(f"{i:03}.md", f"{i:064x}") for i in range(4)]


def test_find_source_by_key_and_clear_errors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("hello")
    scan = scan_folder(tmp_path, settle_s=0)
    (key, rel), = scan.partition_keys.items()
    path, sha = find_source(tmp_path, key)
    assert path == tmp_path / "docs" / "guide.md" and sha == scan.files[rel].sha256
    (tmp_path / "docs" / "guide.md").write_text("hello, changed")
    with pytest.raises(SourceNotFound, match=r"docs/guide\.md .* no longer has the content of partition"):
        find_source(tmp_path, key)
    (tmp_path / "docs" / "guide.md").unlink()
    with pytest.raises(SourceNotFound, match=r"no file in .* matches partition .*deleted or renamed"):
        find_source(tmp_path, key)
