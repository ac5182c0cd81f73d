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
    ("信息安全管理制度.docx", "信息安全管理制度_docx"),
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
    monkeypatch.setattr(sources, "hash_regular", lambda root, rel, **kw: calls.append(rel) or "f" * 64)
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


def _slug_before_unicode_names(relative_path: str) -> str:
    """The slug as it was made before non-Latin names were kept: every ASCII or accented-Latin name must keep it."""
    import unicodedata

    ascii_text = unicodedata.normalize("NFKD", relative_path).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    if len(slug) > 48:
        slug = slug[-48:].lstrip("_")
    if not re.search(r"[a-z0-9]", slug.rsplit("_", 1)[0] if "_" in slug else ""):
        slug = f"doc_{slug}" if slug else "doc"
    return slug


@pytest.mark.parametrize("rel", [
    "Manuals/Setup Guide v2.PDF", "Über Café.md", "a,b|c.txt", "Tom’s guide – v2 (final).pdf", "ＡＢＣ.txt",
    "x" * 80 + "/report.docx", "...pdf", "2024/Q1 [draft] {old}.md", "Crème brûlée.md",
])
def test_ascii_and_accented_latin_names_keep_their_keys(rel):
    assert slugify(rel) == _slug_before_unicode_names(rel)


@pytest.mark.parametrize("rel, slug", [
    ("信息安全管理制度.docx", "信息安全管理制度_docx"),
    ("手册/安装 指南.PDF", "手册_安装_指南_pdf"),
    ("Отчёт 2024.pdf", "отчет_2024_pdf"),
    ("Report 信息安全.docx", "report_信息安全_docx"),
    ("한국어 문서.md", "한국어_문서_md"),
])
def test_non_latin_names_stay_readable_in_keys(rel, slug):
    assert slugify(rel) == slug
    key = partition_key(rel, "ab" * 32)
    # Dagster's own rules for a partition key, and the characters its UI gives a meaning to
    from dagster._core.definitions.partitions.utils.base import raise_error_on_invalid_partition_key_substring

    raise_error_on_invalid_partition_key_substring([key])
    assert not set(key) & set(",|[](){}.:/ \\\t\n")


def test_listing_skips_links_and_special_files_and_says_why(tmp_path):
    raw = tmp_path / "raw"
    (raw / "docs").mkdir(parents=True)
    (tmp_path / "passwd").write_text("root:x:0:0")
    (raw / "docs" / "guide.md").write_text("# Guide")
    (raw / "passwd.txt").symlink_to(tmp_path / "passwd")
    (raw / "alias.md").symlink_to("docs/guide.md")
    (raw / "linked_folder").symlink_to(tmp_path)
    (raw / "loop.md").symlink_to("loop.md")
    os.mkfifo(raw / "pipe.txt")

    listing = sources.list_entries(raw)
    assert listing.files == ["docs/guide.md"]
    assert set(listing.skipped) == {"passwd.txt", "alias.md", "linked_folder", "loop.md", "pipe.txt"}
    assert "symbolic link, not followed" in listing.skipped["passwd.txt"]
    assert "FIFO" in listing.skipped["pipe.txt"] and "folder" in listing.skipped["linked_folder"]

    allowed = sources.list_entries(raw, allow_links=True)
    assert allowed.files == ["alias.md", "docs/guide.md"]  # only the link that stays inside
    assert "outside the raw folder" in allowed.skipped["passwd.txt"] and "loop" in allowed.skipped["loop.md"]

    scan = scan_folder(raw, settle_s=0, allow_links=True)
    assert set(scan.files) == {"alias.md", "docs/guide.md"} and "pipe.txt" in scan.skipped


def test_same_content_and_slug_are_one_document_and_the_copy_is_reported(tmp_path):
    (tmp_path / "a b.md").write_text("same")
    (tmp_path / "a_b.md").write_text("same")
    scan = scan_folder(tmp_path, settle_s=0)
    assert list(scan.partition_keys.values()) == ["a b.md"]
    assert "same content and partition key as a b.md" in scan.skipped["a_b.md"]
    key, = scan.partition_keys
    assert find_source(tmp_path, key)[0] == tmp_path / "a b.md"


def _scan(*names):
    return sources.ScanResult(files={n: FileState(1, 1, f"{i:064x}") for i, n in enumerate(names)}, unhashed=[])


def test_an_empty_folder_removes_nothing():
    existing = {partition_key(f"{n}.md", f"{i:064x}") for i, n in enumerate("abc")}
    plan = plan_partitions(_scan(), existing)
    assert plan.delete == [] and sorted(plan.held_back) == sorted(existing)
    assert "holds no documents" in plan.message and "unmounted" in plan.message


def test_removal_over_the_share_is_held_back_all_or_nothing():
    names = [f"{n}.md" for n in "abcdefghij"]
    existing = {partition_key(n, f"{i:064x}") for i, n in enumerate(names)}
    within = plan_partitions(_scan(*names[:5]), existing, max_remove_share=0.5)  # 5 of 10 gone: allowed
    assert len(within.delete) == 5 and not within.held_back
    over = plan_partitions(_scan(*names[:4]), existing, max_remove_share=0.5)  # 6 of 10 gone: none removed
    assert over.delete == [] and len(over.held_back) == 6
    assert "6 of 10 documents are gone" in over.message and "CLARA_MAX_REMOVE_SHARE" in over.message
    assert len(plan_partitions(_scan(*names[:4]), existing, max_remove_share=1.0).delete) == 6


def test_a_changed_file_replaces_its_old_key_even_when_removals_are_held_back():
    existing = {partition_key("a.md", "f" * 64), partition_key("b.md", "e" * 64), partition_key("c.md", "d" * 64)}
    plan = plan_partitions(_scan("a.md"), existing, max_remove_share=0.5)  # a.md changed; b and c vanished
    assert plan.delete == [partition_key("a.md", "f" * 64)]
    assert sorted(plan.held_back) == sorted([partition_key("b.md", "e" * 64), partition_key("c.md", "d" * 64)])


def test_an_unreadable_entry_holds_back_removals():
    scan = sources.ScanResult(files={"a.md": FileState(1, 1, "a" * 64)}, unhashed=[], unreadable=["locked"])
    plan = plan_partitions(scan, {partition_key("a.md", "a" * 64), "gone_md-bbbbbbbbbbbb"})
    assert plan.delete == [] and plan.held_back == ["gone_md-bbbbbbbbbbbb"]
