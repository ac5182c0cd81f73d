"""Reading and writing the corpus artifacts: enriched documents in, chunks and manifest out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict

from ..storage import ArtifactStore, encode_json, publish_together
from .build import Corpus, CorpusChunk, EnrichedDocument


def load_enriched(store: ArtifactStore, keys: Iterable[str]) -> tuple[list[EnrichedDocument], list[str]]:
    """The enriched documents of `keys`, and the keys that have none yet (not ingested, or failed)."""
    documents, missing = [], []
    for key in sorted(keys):
        path = store.enriched_document_path(key)
        if path.exists():
            documents.append(EnrichedDocument.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        else:
            missing.append(key)
    return documents, missing


def inputs_fingerprint(store: ArtifactStore, keys: Iterable[str]) -> str:
    """A hash of which documents are live and of their enriched text: changes exactly when the corpus would.

    Cheap (no tokenizer), so a schedule can ask "did anything change?" before starting a synthesis run.
    """
    h = hashlib.sha256()
    for key in sorted(keys):
        path = store.enriched_document_path(key)
        h.update(key.encode())
        h.update(hashlib.sha256(path.read_bytes()).digest() if path.exists() else b"missing")
    return h.hexdigest()


def write_corpus(store: ArtifactStore, corpus: Corpus, fingerprint: str) -> None:
    """Publishes chunks.jsonl and manifest.json together (storage.publish_together): never one without the other.

    Raises:
        ValueError: when the corpus has no chunks (nothing is written: the last good corpus stays).
        OSError: naming the file (Errno 28 when the disk is full); nothing was published.
    """
    if not corpus.chunks:
        raise ValueError(f"the corpus of {len(corpus.documents)} documents has no chunks (is every enriched text "
                         "empty?): nothing was published, the last good corpus stays")
    lines = "".join(json.dumps(asdict(c), ensure_ascii=False, sort_keys=True) + "\n" for c in corpus.chunks)
    manifest = {**corpus.manifest(), "data_version": corpus.data_version, "inputs_fingerprint": fingerprint}
    publish_together(store.root, {store.chunks_path: lines.encode("utf-8"),
                                  store.corpus_manifest_path: encode_json(manifest)})


def read_chunks(store: ArtifactStore) -> list[CorpusChunk]:
    path = store.chunks_path
    return [CorpusChunk(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]


def read_manifest(store: ArtifactStore) -> dict | None:
    path = store.corpus_manifest_path
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
