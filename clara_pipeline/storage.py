"""Artifact storage: one root folder, atomic writes, a content-addressed image store.

Every artifact is written to a temporary file in the destination folder and renamed over the target, so
a reader sees either the old complete file or the new complete file, never a truncated one, and a crash
mid-write leaves the previous artifact intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Writes `data` to `path` via a temporary sibling and a rename.

    `durable=False` skips the fsync: right for content-addressed files, whose integrity is re-checkable
    from their name, where an fsync per small file would dominate the cost.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json_atomic(path: Path, obj: Any) -> bytes:
    """Writes `obj` as UTF-8 JSON (stable key order) atomically and returns the bytes written."""
    data = json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8") + b"\n"
    write_bytes_atomic(path, data)
    return data


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


_EXTENSIONS = {"png": ".png", "jpeg": ".jpg"}


class ImageStore:
    """Images under `<root>/<sha[:2]>/<sha>.<ext>`: written once, shared by every document that has them."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path_for(self, sha256: str, fmt: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}{_EXTENSIONS[fmt]}"

    def put(self, data: bytes, fmt: str) -> str:
        """Stores `data` (a normalized PNG/JPEG) unless already present; returns its sha256."""
        sha = sha256_bytes(data)
        path = self.path_for(sha, fmt)
        if not path.exists():
            write_bytes_atomic(path, data, durable=False)
        return sha

    def verify(self, sha256: str, fmt: str) -> str | None:
        """Returns None when the stored file exists with the right content, else what is wrong."""
        path = self.path_for(sha256, fmt)
        if not path.exists():
            return f"{path} is missing"
        actual = sha256_file(path)
        if actual != sha256:
            return f"{path} is corrupt (sha256 {actual[:12]}..., expected {sha256[:12]}...)"
        return None


def hash_only_sink(data: bytes, fmt: str) -> str:
    """An image sink that stores nothing (for `clara extract` without an image folder)."""
    return sha256_bytes(data)


class ArtifactStore:
    """The layout of everything the pipeline writes under one root folder."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def images(self) -> ImageStore:
        return ImageStore(self.root / "images")

    def document_dir(self, partition_key: str) -> Path:
        return self.root / "documents" / partition_key

    def extracted_document_path(self, partition_key: str) -> Path:
        return self.document_dir(partition_key) / "extracted.json"

    def document_images_path(self, partition_key: str) -> Path:
        return self.document_dir(partition_key) / "images.json"

    def captions_path(self, partition_key: str) -> Path:
        return self.document_dir(partition_key) / "captions.json"

    def enriched_document_path(self, partition_key: str) -> Path:
        return self.document_dir(partition_key) / "enriched.json"

    @property
    def corpus_dir(self) -> Path:
        return self.root / "corpus"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def llm_cache_path(self) -> Path:
        return self.root / "cache" / "llm_responses.sqlite"

