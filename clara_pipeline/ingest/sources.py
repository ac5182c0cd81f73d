"""The raw-data folder: which files are documents, their partition keys, and finding a file by its key.

A partition key is `<slug>-<sha256[:12]>`: the slug of the file's path under the raw folder (so the
key reads like the file name) and the first 12 hex digits of the file's sha256 (so a changed file is a
new key and an unchanged one keeps its key). A slug holds lower-case letters and digits of any script
and `_`: no commas, which Dagster's UI cannot backfill, no `|`, its multi-partition separator, no brackets
or dots (its range syntax). An ASCII name keeps the ASCII slug it always had; `信息安全管理制度.docx` becomes
`信息安全管理制度_docx`.

Only regular files are documents: symbolic links (unless `allow_links` lets through those that stay inside
the folder), FIFOs, sockets and devices are skipped, and so is an entry that cannot be read; each skip is
reported with its reason (`ScanResult.skipped`), never dropped silently. Two files with the same content
and the same slug would have the same key: the first (in path order) is the document, the other is
reported as a duplicate.

Listing is cheap: a file whose size and mtime have not changed keeps its recorded hash, and hashing new
files stops at a time budget (the rest waits for the next sensor tick).
"""

from __future__ import annotations

import os
import re
import stat
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from .rawfiles import RawFileRefused, hash_regular, kind_of, link_refusal, printable

_IGNORED_NAMES = {"thumbs.db", "desktop.ini", ".ds_store"}
_SLUG_MAX = 48


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class ScanResult:
    files: dict[str, FileState]  # relative posix path -> state, for every file hashed so far
    unhashed: list[str]  # files seen but not hashed within the time budget
    skipped: dict[str, str] = field(default_factory=dict)  # relative path -> why it is not a document
    unreadable: list[str] = field(default_factory=list)  # files and folders that could not be read this time

    @property
    def partition_keys(self) -> dict[str, str]:
        """partition key -> relative path (the first path, when two files share content and slug)."""
        keys: dict[str, str] = {}
        for rel in sorted(self.files):
            keys.setdefault(partition_key(rel, self.files[rel].sha256), rel)
        return keys


class SourceNotFound(Exception):
    """No file under the raw folder has the content a partition key names."""


def slugify(relative_path: str) -> str:
    """`Manuals/Setup Guide v2.PDF` -> `manuals_setup_guide_v2_pdf`, `手册/安装.pdf` -> `手册_安装_pdf`.

    Accents are dropped and other non-ASCII symbols vanish, as they always did, so ASCII and accented Latin
    names keep their keys; letters and digits of other scripts are kept (they used to vanish, leaving `doc`).
    """
    folded = "".join(c for c in unicodedata.normalize("NFKD", relative_path.lower()) if not unicodedata.combining(c))
    kept = unicodedata.normalize("NFC", "".join(c for c in folded if c.isascii() or c.isalnum()))
    slug = re.sub(r"[^0-9a-z\u0080-\U0010ffff]+", "_", kept).strip("_")
    if len(slug) > _SLUG_MAX:  # keep the end: it holds the file name and extension
        slug = slug[-_SLUG_MAX:].lstrip("_")
    if not any(c.isalnum() for c in (slug.rsplit("_", 1)[0] if "_" in slug else "")):
        slug = f"doc_{slug}" if slug else "doc"
    return slug


def partition_key(relative_path: str, sha256: str) -> str:
    return f"{slugify(relative_path)}-{sha256[:12]}"


def is_document_candidate(name: str) -> bool:
    """Hidden files, Office lock files (`~$x.docx`) and OS litter are not documents; everything else is
    (an unsupported type still gets a partition, whose run fails with a message that says so)."""
    lowered = name.lower()
    return not (name.startswith(".") or name.startswith("~$") or lowered in _IGNORED_NAMES)


@dataclass(frozen=True)
class Listing:
    files: list[str]  # relative posix paths of regular files (and of allowed links), sorted
    skipped: dict[str, str]  # relative path -> why it is not listed
    unreadable: list[str]  # folders that could not be listed


def list_entries(root: Path, *, allow_links: bool = False) -> Listing:
    """The candidate documents under `root`, recursively, and every entry left out with its reason.

    Only regular files are listed; links are not followed into folders; a link to a file is listed only
    when `allow_links` is set and its target is a file inside `root`.
    """
    files, skipped, unreadable = [], {}, []

    def on_error(exc: OSError) -> None:
        rel = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "."
        unreadable.append(rel)
        skipped[rel] = f"folder cannot be listed ({exc.strerror})"

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            if os.path.islink(here / d):
                skipped[(here / d).relative_to(root).as_posix()] = "a symbolic link to a folder; not followed"
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            if not is_document_candidate(name):
                continue
            rel = (here / name).relative_to(root).as_posix()
            try:
                mode = os.lstat(here / name).st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISREG(mode):
                files.append(rel)
            elif stat.S_ISLNK(mode):
                refusal = link_refusal(root, rel, allow_links)
                if refusal is None:
                    files.append(rel)
                else:
                    skipped[rel] = refusal
            else:
                skipped[rel] = f"{kind_of(mode)}, not a regular file; not read"
    return Listing(sorted(files), dict(sorted(skipped.items())), sorted(unreadable))


def list_files(root: Path, *, allow_links: bool = False) -> list[str]:
    """Relative posix paths of the candidate documents under `root`, sorted, recursively."""
    return list_entries(root, allow_links=allow_links).files


def scan_folder(root: Path, previous: dict[str, FileState] | None = None, *, hash_budget_s: float = 30.0,
                settle_s: float = 2.0, allow_links: bool = False) -> ScanResult:
    """Lists `root` and hashes new or changed files, reusing `previous` hashes when size and mtime match.

    A file modified less than `settle_s` seconds ago may still be being copied: it waits for the next
    scan. Files that vanish between listing and hashing are simply absent from the result; a file that
    cannot be read is reported in `skipped` and `unreadable`.
    """
    previous = previous or {}
    listing = list_entries(root, allow_links=allow_links)
    files: dict[str, FileState] = {}
    unhashed: list[str] = []
    skipped = dict(listing.skipped)
    unreadable = list(listing.unreadable)
    deadline = time.monotonic() + hash_budget_s
    for rel in listing.files:
        path = root / rel
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            skipped[rel] = f"cannot be read ({exc.strerror})"
            unreadable.append(rel)
            continue
        known = previous.get(rel)
        if known and known.size == st.st_size and known.mtime_ns == st.st_mtime_ns:
            files[rel] = known
            continue
        if time.monotonic() > deadline or time.time() - st.st_mtime < settle_s:
            unhashed.append(rel)
            continue
        try:
            files[rel] = FileState(st.st_size, st.st_mtime_ns, hash_regular(root, rel, allow_links=allow_links))
        except FileNotFoundError:
            continue
        except RawFileRefused as refused:
            skipped[rel] = refused.reason
            unreadable.append(rel)
    result = ScanResult(files, unhashed, skipped, sorted(unreadable))
    keys = result.partition_keys
    for rel, state in files.items():
        first = keys[partition_key(rel, state.sha256)]
        if first != rel:
            skipped[rel] = (f"the same content and partition key as {printable(first)}, which is ingested; "
                            "this copy is not (rename one of them to keep both)")
    return ScanResult(files, unhashed, dict(sorted(skipped.items())), sorted(unreadable))


def find_source(root: Path, key: str, *, allow_links: bool = False) -> tuple[Path, str]:
    """Returns (path, sha256) of the file under `root` whose slug and content match partition `key`.

    Only files whose slug matches are hashed, so this is cheap even for a large folder. Of two files with
    the same slug and content, the first in path order is the one (as in `ScanResult.partition_keys`).

    Raises:
        SourceNotFound: the file was deleted, renamed or changed since the key was made, or can no longer
            be read.
    """
    slug, _, digest = key.rpartition("-")
    candidates = [rel for rel in list_files(root, allow_links=allow_links) if slugify(rel) == slug]
    refused = []
    for rel in candidates:
        try:
            sha = hash_regular(root, rel, allow_links=allow_links)
        except FileNotFoundError:
            continue
        except RawFileRefused as exc:
            refused.append(str(exc))
            continue
        if sha.startswith(digest):
            return root / rel, sha
    if refused:
        raise SourceNotFound(f"partition {key}: " + "; ".join(refused))
    if candidates:
        raise SourceNotFound(
            f"{', '.join(map(printable, candidates))} in {printable(str(root))} no longer has the content of partition "
            f"{key} (sha256 {digest}...): it changed after it was listed; its new version has its own partition")
    raise SourceNotFound(
        f"no file in {printable(str(root))} matches partition {key}: it was deleted or renamed after it was listed; "
        "the raw_data_sensor removes the partition on its next tick")


@dataclass(frozen=True)
class PartitionPlan:
    add: list[str]  # new keys, in path order, at most `max_new`
    delete: list[str]  # keys whose file is gone or changed
    deferred: int  # new keys left for a later tick
    held_back: list[str] = field(default_factory=list)  # keys whose file is gone, but not removed this pass
    hold_reason: str = ""  # why they were held back, in the user's words

    @property
    def message(self) -> str:
        """One line for the log when removals were held back, else ''."""
        return f"{len(self.held_back)} partition(s) kept: {self.hold_reason}" if self.held_back else ""


def plan_partitions(scan: ScanResult, existing: set[str], *, max_new: int = 100,
                    max_remove_share: float = 0.5) -> PartitionPlan:
    """Which dynamic partitions to add and delete so that the set matches the folder.

    Keys of files not hashed yet, or not readable this time, are neither added nor deleted: a file still
    being copied must not lose its partition just because this scan did not get to it.

    Removal is guarded, because an empty or half-mounted share looks like deleted files: nothing is removed
    when the folder holds no documents or an entry in it could not be read, nor when the files that are
    gone (not replaced by a new version under the same name) are more than `max_remove_share` of the
    existing partitions (at least one may always go). It is all or nothing: removing a share per pass
    would empty the instance in a few sensor ticks. The old key of a file replaced by a new version is
    always removed.
    """
    wanted = scan.partition_keys
    pending_slugs = {slugify(rel) for rel in scan.unhashed + scan.unreadable}
    new = [k for k, rel in sorted(wanted.items(), key=lambda kv: kv[1]) if k not in existing]
    gone = sorted(k for k in existing - wanted.keys() if k.rpartition("-")[0] not in pending_slugs)
    plan = PartitionPlan(add=new[:max_new], delete=gone, deferred=max(0, len(new) - max_new))
    present_slugs = {slugify(rel) for rel in scan.files}
    vanished = [k for k in gone if k.rpartition("-")[0] not in present_slugs]  # not just a new version
    reason = ""
    if not vanished:
        return plan
    if not scan.files and not scan.unhashed:
        reason = ("the raw folder holds no documents; an empty folder is often an unmounted share, so nothing "
                  "is removed (delete the partitions in the UI if the documents really are gone)")
    elif scan.unreadable:
        reason = (f"{len(scan.unreadable)} entr{'y' if len(scan.unreadable) == 1 else 'ies'} of the raw folder "
                  f"could not be read ({printable(scan.unreadable[0])}...), so no document is removed this pass")
    elif len(vanished) > max(1, int(max_remove_share * len(existing))):
        reason = (f"{len(vanished)} of {len(existing)} documents are gone from the raw folder, more than the "
                  f"{max_remove_share:.0%} one pass may remove (CLARA_MAX_REMOVE_SHARE); if they really were "
                  "deleted, run once with a higher share")
    if reason:
        replaced = [k for k in gone if k not in vanished]  # their file is there, with new content: safe to drop
        return PartitionPlan(add=plan.add, delete=replaced, deferred=plan.deferred, held_back=vanished,
                             hold_reason=reason)
    return plan


def skipped_lines(scan: ScanResult, limit: int = 20) -> list[str]:
    """One line per entry of the folder that is not a document: `<escaped path>: <reason>` (at most `limit`)."""
    lines = [f"{printable(rel)}: {reason}" for rel, reason in list(scan.skipped.items())[:limit]]
    if len(scan.skipped) > limit:
        lines.append(f"... and {len(scan.skipped) - limit} more")
    return lines
