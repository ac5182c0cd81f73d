"""Reading files under the raw-data folder: regular files only, nothing outside the folder, within a size limit.

Anyone who can write to the raw folder decides what the pipeline reads, so a file is opened component by
component from the folder with `O_NOFOLLOW` (`openat`): a symbolic link, or a folder swapped for a link after
the listing, fails with ELOOP instead of being followed. The opened descriptor is checked with `fstat` to be a
regular file (a FIFO would block a reader forever, `/dev/zero` never ends); `O_NONBLOCK` keeps the open itself
from waiting on a FIFO. With `allow_links`, a link is resolved first and read only when its target lies
inside the folder; the target is then opened the same way.

File names are shown through `printable`: a newline in a name must not start a forged line of output.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MB = 1024 * 1024


@dataclass(frozen=True)
class RawFilePolicy:
    """What may be read from the raw folder, and how much. Not part of any cache key: a limit decides whether a
    file is read at all, never what its extraction says."""

    allow_links: bool = False  # read symbolic links whose target lies inside the raw folder
    # A PDF, DOCX or image larger than this is refused. 200 MB covers scanned manuals; the bytes are held in
    # memory once while the file is extracted.
    max_file_bytes: int = 200 * MB
    # A .txt / .md file larger than this is refused: decoding, splitting and the document JSON take about
    # 12x the file's size in memory (a 32 MB text peaks near 0.4 GB; 200 MB took 3.3 GB).
    max_text_bytes: int = 32 * MB
    # What a DOCX's parts may take once inflated and parsed (its XML counted at 25x, the size of its lxml tree):
    # 1 GB admits about 40 MB of XML, several thousand pages; a 1.6 MB zip bomb inflates to 1 GB of XML.
    max_archive_memory_bytes: int = 1024 * MB
    # A PDF page whose content streams inflate beyond this is skipped: MuPDF keeps every glyph of a page in
    # memory, about 66x the content's size for pure text (16 MB peaked at 1.1 GB); ordinary pages hold
    # 10-500 KB, dense drawings a few MB. A PDF whose pages together inflate beyond 32x this is refused.
    max_page_content_bytes: int = 8 * MB

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_text_bytes", "max_archive_memory_bytes", "max_page_content_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"RawFilePolicy.{name} must be > 0, got {getattr(self, name)}")


class RawFileRefused(Exception):
    """A raw-folder entry that is not read; `reason` says why in the user's words."""

    def __init__(self, rel: str, reason: str):
        self.rel = rel
        self.reason = reason
        super().__init__(f"{printable(rel)}: {reason}")


def printable(text: str, *, backslash: bool = True) -> str:
    """`text` with control, format (bidi) and separator characters and undecodable bytes escaped as in a
    Python literal, and `\\` doubled (unless `backslash` is False: for text whose names are escaped already).

    Letters of every script stay as they are: `信息安全.docx` prints as is, a newline as `\\n`.
    """
    out = []
    for ch in text:
        if ch == "\\" and backslash:
            out.append("\\\\")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn"):
            code = ord(ch)
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch) or
                       (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"))
        else:
            out.append(ch)
    return "".join(out)


def kind_of(mode: int) -> str:
    """'a FIFO', 'a socket', ... for an lstat/fstat mode that is not a regular file."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "not a regular file"


def link_refusal(root: Path, rel: str, allow_links: bool) -> str | None:
    """Why the symbolic link `rel` under `root` is not read, or None when it may be (allowed, points inside)."""
    if not allow_links:
        return ("a symbolic link, not followed (set CLARA_ALLOW_LINKS_INSIDE_RAW=1 to read links whose target "
                "lies inside the raw folder)")
    try:
        resolve_inside(root, rel)
    except RawFileRefused as refused:
        return refused.reason
    return None


def resolve_inside(root: Path, rel: str) -> str:
    """The path, relative to `root`, that the link `rel` finally points to.

    Raises:
        RawFileRefused: a link loop, a dangling link, or a target outside `root`.
    """
    try:
        target = Path(os.path.realpath(root / rel, strict=True))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RawFileRefused(rel, "a symbolic link loop") from None
        raise RawFileRefused(rel, f"a symbolic link whose target cannot be reached ({exc.strerror})") from None
    real_root = Path(os.path.realpath(root))
    if not target.is_relative_to(real_root):
        raise RawFileRefused(rel, "a symbolic link to a file outside the raw folder; not read")
    return target.relative_to(real_root).as_posix()


def open_regular(root: Path, rel: str, *, allow_links: bool = False) -> int:
    """A read-only descriptor of the regular file `rel` under `root`, reached without following any link.

    Raises:
        FileNotFoundError: the file (or a folder on its way) does not exist.
        RawFileRefused: a link (not allowed, or pointing outside), a special file, a path leaving `root`,
            or no permission to read it.
    """
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or any(p in ("..", ".") for p in parts):
        raise RawFileRefused(rel, "the path leaves the raw folder; not read")
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            next_fd = _open_step(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd, root, rel, allow_links)
            if next_fd is None:  # an allowed link on the way: open its target instead
                os.close(dir_fd)
                dir_fd = -1
                return open_regular(root, resolve_inside(root, rel), allow_links=False)
            os.close(dir_fd)
            dir_fd = next_fd
        fd = _open_step(parts[-1], os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY, dir_fd, root, rel, allow_links)
        if fd is None:
            os.close(dir_fd)
            dir_fd = -1
            return open_regular(root, resolve_inside(root, rel), allow_links=False)
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise RawFileRefused(rel, f"{kind_of(st.st_mode)}, not a regular file; not read")
    return fd


def _open_step(name: str, flags: int, dir_fd: int, root: Path, rel: str, allow_links: bool) -> int | None:
    """Opens one path component without following a link; None when it is a link that `allow_links` lets
    through (the caller resolves the whole path instead)."""
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(name, dir_fd):
            if allow_links:
                return None
            raise RawFileRefused(rel, link_refusal(root, rel, False)) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise RawFileRefused(rel, "cannot be read: permission denied") from None
        if exc.errno == errno.ENOENT:
            raise
        raise RawFileRefused(rel, f"cannot be opened ({exc.strerror})") from None


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def read_regular(root: Path, rel: str, *, max_bytes: int, allow_links: bool = False) -> bytes:
    """The bytes of the regular file `rel` under `root` (see `open_regular`), at most `max_bytes`.

    Raises:
        FileNotFoundError, RawFileRefused: as `open_regular`; also a file over `max_bytes`, or an I/O error.
    """
    fd = open_regular(root, rel, allow_links=allow_links)
    try:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise RawFileRefused(rel, too_large(size, max_bytes))
        chunks, total = [], 0
        while chunk := os.read(fd, min(8 * MB, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # it grew while being read
                raise RawFileRefused(rel, too_large(total, max_bytes))
        return b"".join(chunks)
    except OSError as exc:
        raise RawFileRefused(rel, f"cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)


def hash_regular(root: Path, rel: str, *, allow_links: bool = False) -> str:
    """sha256 of the regular file `rel` under `root`, read in chunks (see `open_regular` for what is refused)."""
    fd = open_regular(root, rel, allow_links=allow_links)
    h = hashlib.sha256()
    try:
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
    except OSError as exc:
        raise RawFileRefused(rel, f"cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    return h.hexdigest()


def too_large(size: int, limit: int) -> str:
    return (f"the file is {size / MB:,.1f} MB, over the {limit / MB:,.0f} MB limit for this type "
            "(CLARA_MAX_FILE_MB for documents and images, CLARA_MAX_TEXT_MB for .txt/.md)")
