"""Reading from the raw folder: regular files only, never through a link out, within the size limits."""

import os
import signal

import pytest

from clara_pipeline.ingest.rawfiles import RawFileRefused, hash_regular, printable, read_regular


@pytest.fixture
def alarm():
    """Fails a test that would block (a FIFO opened for reading waits for a writer forever)."""
    def expired(*_):
        raise TimeoutError("blocked for 5 s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def raw(tmp_path):
    (tmp_path / "secret.txt").write_text("root:x:0:0")  # outside the raw folder
    root = tmp_path / "raw"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.md").write_text("inside")
    return root


def test_printable_escapes_what_could_forge_or_hide_a_line_and_keeps_every_script():
    assert printable("信息安全管理制度.docx") == "信息安全管理制度.docx"
    assert printable("x\n  ok          forged.md") == "x\\n  ok          forged.md"
    assert printable("invoice\u202egpj.exe") == "invoice\\u202egpj.exe"  # a right-to-left override
    assert printable("bad\udcff.txt") == "bad\\udcff.txt"  # an undecodable byte, as os.fsdecode gives it
    assert printable("a\\nb") == "a\\\\nb" and printable("a\\nb", backslash=False) == "a\\nb"


def test_a_regular_file_is_read_and_hashed(raw):
    assert read_regular(raw, "sub/a.md", max_bytes=100) == b"inside"
    assert len(hash_regular(raw, "sub/a.md")) == 64


def test_a_link_out_of_the_folder_is_never_read(raw):
    (raw / "passwd.txt").symlink_to(raw.parent / "secret.txt")
    for allow in (False, True):
        with pytest.raises(RawFileRefused, match="symbolic link"):
            read_regular(raw, "passwd.txt", max_bytes=100, allow_links=allow)


def test_a_link_inside_the_folder_is_read_only_when_allowed(raw):
    (raw / "alias.md").symlink_to("sub/a.md")
    with pytest.raises(RawFileRefused, match="CLARA_ALLOW_LINKS_INSIDE_RAW"):
        read_regular(raw, "alias.md", max_bytes=100)
    assert read_regular(raw, "alias.md", max_bytes=100, allow_links=True) == b"inside"


def test_a_folder_swapped_for_a_link_after_listing_is_not_followed(raw):
    # Listed as sub/a.md; then sub/ is replaced by a link to a folder outside that has an a.md too.
    (raw.parent / "elsewhere").mkdir()
    (raw.parent / "elsewhere" / "a.md").write_text("outside")
    (raw / "sub" / "a.md").unlink()
    (raw / "sub").rmdir()
    (raw / "sub").symlink_to(raw.parent / "elsewhere")
    with pytest.raises(RawFileRefused, match="symbolic link"):
        read_regular(raw, "sub/a.md", max_bytes=100)
    with pytest.raises(RawFileRefused, match="outside the raw folder"):
        read_regular(raw, "sub/a.md", max_bytes=100, allow_links=True)


def test_a_file_swapped_for_a_link_after_listing_is_not_followed(raw):
    (raw / "sub" / "a.md").unlink()
    (raw / "sub" / "a.md").symlink_to(raw.parent / "secret.txt")
    with pytest.raises(RawFileRefused, match="symbolic link"):
        hash_regular(raw, "sub/a.md")


def test_a_fifo_is_refused_without_blocking(raw, alarm):
    os.mkfifo(raw / "pipe.txt")
    with pytest.raises(RawFileRefused, match="FIFO"):
        read_regular(raw, "pipe.txt", max_bytes=100)


def test_a_link_to_a_device_is_refused(raw, alarm):
    (raw / "zero.txt").symlink_to("/dev/zero")
    with pytest.raises(RawFileRefused, match="outside the raw folder"):
        read_regular(raw, "zero.txt", max_bytes=100, allow_links=True)


def test_a_link_loop_is_refused_with_its_name(raw):
    (raw / "a.txt").symlink_to("b.txt")
    (raw / "b.txt").symlink_to("a.txt")
    with pytest.raises(RawFileRefused, match=r"^a\.txt: a symbolic link loop"):
        read_regular(raw, "a.txt", max_bytes=100, allow_links=True)


def test_a_file_over_the_limit_is_refused_before_it_is_read(raw):
    (raw / "big.txt").write_bytes(b"x" * 2048)
    with pytest.raises(RawFileRefused, match="over the 0 MB limit"):
        read_regular(raw, "big.txt", max_bytes=1024)


def test_paths_that_leave_the_folder_are_refused(raw):
    for rel in ("../secret.txt", "/etc/passwd", "sub/../../secret.txt"):
        with pytest.raises(RawFileRefused, match="leaves the raw folder"):
            read_regular(raw, rel, max_bytes=100)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode, so chmod 000 cannot make it unreadable")
def test_an_unreadable_file_is_refused_with_a_reason(raw):
    (raw / "sub" / "a.md").chmod(0)
    with pytest.raises(RawFileRefused, match="permission denied"):
        read_regular(raw, "sub/a.md", max_bytes=100)
