"""The raw-data folder: which files are documents, their partition keys, and finding a file by its key.

A partition key is `<slug>-<sha256[:12]>`: the slug of the file's path under the raw folder (so the
key reads like the file name) and the first 12 hex digits of the file's sha256 (so a changed file is a
new key and an unchanged one keeps its key). Keys use only `[a-z0-9_-]`: no commas, which Dagster's UI
cannot backfill, and no `|`, its multi-partition separator.

Listing is cheap: a file whose size and mtime have not changed keeps its recorded hash, and hashing new
files stops at a time budget (the rest waits for the next sensor tick).
"""

from __future__ import annotations

import os
import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..storage import sha256_file

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

    @property
    def partition_keys(self) -> dict[str, str]:
        """partition key -> relative path."""
        return {partition_key(rel, st.sha256): rel for rel, st in self.files.items()}


class SourceNotFound(Exception):
    """No file under the raw folder has the content a partition key names."""


def slugify(relative_path: str) -> str:
    """`Manuals/Setup Guide v2.PDF` -> `manuals_setup_guide_v2_pdf`; non-Latin names fall back to `doc`."""
    ascii_text = unicodedata.normalize("NFKD", relative_path).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    if len(slug) > _SLUG_MAX:  # keep the end: it holds the file name and extension
        slug = slug[-_SLUG_MAX:].lstrip("_")
    if not re.search(r"[a-z0-9]", slug.rsplit("_", 1)[0] if "_" in slug else ""):
        slug = f"doc_{slug}" if slug else "doc"
    return slug


def partition_key(relative_path: str, sha256: str) -> str:
    return f"{slugify(relative_path)}-{sha256[:12]}"


def is_document_candidate(name: str) -> bool:
    """Hidden files, Office lock files (`~$x.docx`) and OS litter are not documents; everything else is
    (an unsupported type still gets a partition, whose run fails with a message that says so)."""
    lowered = name.lower()
    return not (name.startswith(".") or name.startswith("~$") or lowered in _IGNORED_NAMES)


def list_files(root: Path) -> list[str]:
    """Relative posix paths of the candidate documents under `root`, sorted, recursively."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if is_document_candidate(name):
                out.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(out)


def scan_folder(root: Path, previous: dict[str, FileState] | None = None, *, hash_budget_s: float = 30.0,
                settle_s: float = 2.0) -> ScanResult:
    """Lists `root` and hashes new or changed files, reusing `previous` hashes when size and mtime match.

    A file modified less than `settle_s` seconds ago may still be being copied: it waits for the next
    scan. Files that vanish between listing and hashing are simply absent from the result.
    """
    previous = previous or {}
    files: dict[str, FileState] = {}
    unhashed: list[str] = []
    deadline = time.monotonic() + hash_budget_s
    for rel in list_files(root):
        path = root / rel
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        known = previous.get(rel)
        if known and known.size == st.st_size and known.mtime_ns == st.st_mtime_ns:
            files[rel] = known
            continue
        if time.monotonic() > deadline or time.time() - st.st_mtime < settle_s:
            unhashed.append(rel)
            continue
        try:
            files[rel] = FileState(st.st_size, st.st_mtime_ns, sha256_file(path))
        except FileNotFoundError:
            continue
    return ScanResult(files, unhashed)


def find_source(root: Path, key: str) -> tuple[Path, str]:
    """Returns (path, sha256) of the file under `root` whose slug and content match partition `key`.

    Only files whose slug matches are hashed, so this is cheap even for a large folder.

    Raises:
        SourceNotFound: the file was deleted, renamed or changed since the key was made.
    """
    slug, _, digest = key.rpartition("-")
    candidates = [rel for rel in list_files(root) if slugify(rel) == slug]
    for rel in candidates:
        try:
            sha = sha256_file(root / rel)
        except FileNotFoundError:
            continue
        if sha.startswith(digest):
            return root / rel, sha
    if candidates:
        raise SourceNotFound(
            f"{', '.join(candidates)} in {root} no longer has the content of partition {key} (sha256 {digest}...): "
            "it changed after it was listed; its new version has its own partition")
    raise SourceNotFound(
        f"no file in {root} matches partition {key}: it was deleted or renamed after it was listed; "
        "the raw_data_sensor removes the partition on its next tick")


@dataclass(frozen=True)
class PartitionPlan:
    add: list[str]  # new keys, in path order, at most `max_new`
    delete: list[str]  # keys whose file is gone or changed
    deferred: int  # new keys left for a later tick


def plan_partitions(scan: ScanResult, existing: set[str], *, max_new: int = 100) -> PartitionPlan:
    """Which dynamic partitions to add and delete so that the set matches the folder.

    Keys of files not hashed yet are neither added nor deleted: a file still being copied must not lose
    its partition just because this scan did not get to it.
    """
    wanted = scan.partition_keys
    pending_slugs = {slugify(rel) for rel in scan.unhashed}
    new = [k for k, rel in sorted(wanted.items(), key=lambda kv: kv[1]) if k not in existing]
    gone = sorted(k for k in existing - wanted.keys() if k.rpartition("-")[0] not in pending_slugs)
    return PartitionPlan(add=new[:max_new], delete=gone, deferred=max(0, len(new) - max_new))
