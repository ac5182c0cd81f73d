"""Ingesting one raw file into the artifact store, idempotently, and the checks on the result.

`ingest_file` is what the Dagster asset calls: it extracts the file, stores its figures in the
content-addressed image store and writes `documents/<key>/extracted.json` atomically. A second call for
the same content, extractor version and settings returns the stored result without re-extracting. A
failed extraction raises before anything is written, so an earlier good artifact is never lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..storage import ArtifactStore, write_json_atomic
from .extract import ExtractionConfig, extract_document
from .model import EXTRACTOR_VERSION, MARKER_RE, ExtractedDocument, image_marker
from .rawfiles import RawFilePolicy


@dataclass(frozen=True)
class IngestOutcome:
    document: ExtractedDocument
    data_version: str  # sha256 of the document's canonical JSON
    path: Path
    cached: bool
    seconds: float


def cache_key(config: ExtractionConfig) -> str:
    """Changes whenever the extractor or its settings could produce different output."""
    return f"v{EXTRACTOR_VERSION}-{hashlib.sha256(repr(config).encode()).hexdigest()[:12]}"


def document_data_version(document: ExtractedDocument) -> str:
    canonical = json.dumps(document.to_dict(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_extracted(store: ArtifactStore, key: str) -> tuple[ExtractedDocument, str] | None:
    """Returns (document, cache key) stored for partition `key`, or None if there is none."""
    path = store.extracted_document_path(key)
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return ExtractedDocument.from_dict(data["document"]), data["cache_key"]


def ingest_file(path: Path, *, root: Path, key: str, sha256: str, store: ArtifactStore,
                config: ExtractionConfig = ExtractionConfig(), policy: RawFilePolicy = RawFilePolicy()) -> IngestOutcome:
    """Extracts `path` (whose content has `sha256`) as partition `key`, or returns the stored result.

    Raises:
        ExtractionError: the file cannot be extracted; nothing is written.
    """
    started = time.perf_counter()
    wanted = cache_key(config)
    stored = load_extracted(store, key)
    if stored is not None and stored[1] == wanted and stored[0].source_sha256 == sha256 \
            and not unresolved_markers(stored[0], store):
        return IngestOutcome(stored[0], document_data_version(stored[0]), store.extracted_document_path(key),
                             True, time.perf_counter() - started)
    images = store.images
    document = extract_document(path, root=root, sink=images.put, config=config, source_sha256=sha256, policy=policy)
    out = store.extracted_document_path(key)
    write_json_atomic(out, {"cache_key": wanted, "document": document.to_dict()})
    return IngestOutcome(document, document_data_version(document), out, False, time.perf_counter() - started)


# -- the document's figures, ready for captioning ------------------------------------------------------

def image_manifest(document: ExtractedDocument, store: ArtifactStore, context_chars: int = 400) -> list[dict]:
    """One entry per figure: its record, stored path (relative to the artifact root) and surrounding text.

    The text just before and after a figure's first marker (other markers removed) is what a caption
    model needs to know what the figure is about.
    """
    entries = []
    for image in document.images:
        marker = image_marker(image.id)
        start = document.text.find(marker)
        before = after = ""
        if start >= 0:
            end = start + len(marker)
            before = _clean(document.text[max(0, start - context_chars * 2): start])[-context_chars:]
            after = _clean(document.text[end: end + context_chars * 2])[:context_chars]
        entry = {**dataclasses.asdict(image), "path": store.images.path_for(image.sha256, image.format).relative_to(store.root).as_posix(),
                 "context_before": before, "context_after": after, "lang": document.lang}
        entries.append(entry)
    return entries


def images_data_version(document: ExtractedDocument) -> str:
    return hashlib.sha256(" ".join(sorted(i.sha256 for i in document.images)).encode()).hexdigest()


def _clean(text: str) -> str:
    """Other figures' markers removed, runs of spaces collapsed; line breaks kept (headings, caption lines)."""
    text = re.sub(r"[ \t]+", " ", MARKER_RE.sub(" ", text))
    return re.sub(r"\s*\n\s*", "\n", text).strip()


# -- checks ----------------------------------------------------------------------------------------------

def unresolved_markers(document: ExtractedDocument, store: ArtifactStore) -> list[str]:
    """Problems with the document's figures: a marker without a record, a record whose stored file is
    missing or corrupt, a record no marker points to. Empty when everything resolves."""
    problems = []
    known = {i.id: i for i in document.images}
    in_text = set(MARKER_RE.findall(document.text))
    for image_id in sorted(in_text - known.keys()):
        problems.append(f"marker {image_id} has no image record")
    for image_id in sorted(known.keys() - in_text):
        problems.append(f"image {image_id} is recorded but no marker places it")
    for image in document.images:
        problem = store.images.verify(image.sha256, image.format)
        if problem:
            problems.append(f"image {image.id}: {problem}")
    return problems


def text_chars(document: ExtractedDocument) -> int:
    """Characters of real text, markers and whitespace excluded."""
    return len("".join(MARKER_RE.sub("", document.text).split()))
