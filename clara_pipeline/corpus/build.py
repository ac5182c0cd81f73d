"""The corpus: the live enriched documents, chunked, with a manifest whose hash is the corpus's data version.

Dagster does not track staleness across 100+ upstream partitions, so everything downstream of the
per-document assets depends on this one unpartitioned asset instead: its data version changes exactly when a
document is added, removed or changed, or when chunking settings change.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from ..ingest.model import detect_language
from .chunking import ChunkingConfig, TokenCounter, chunk_id, chunk_text
from .enrich import strip_placeholders


@dataclass(frozen=True)
class EnrichedDocument:
    """A document's training text: figures replaced by their captions (documents/<key>/enriched.json)."""

    key: str
    source: str
    source_sha256: str
    lang: str
    title: str
    text: str
    captioned: int
    uncaptioned: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EnrichedDocument":
        return cls(**data)


@dataclass(frozen=True)
class CorpusChunk:
    chunk_id: str
    document: str  # partition key of the first document that has this text
    source: str
    lang: str
    index: int  # position within its document
    text: str
    tokens: int


@dataclass(frozen=True)
class Corpus:
    chunks: list[CorpusChunk]
    documents: list[dict]  # per document: key, source, sha256, lang, chunk ids (duplicates included)
    duplicate_chunks: int  # chunks whose text an earlier document already had
    config: ChunkingConfig
    tokenizer: str

    def manifest(self) -> dict:
        return {"tokenizer": self.tokenizer, "chunking": asdict(self.config), "documents": self.documents,
                "chunks": len(self.chunks), "duplicate_chunks": self.duplicate_chunks}

    @property
    def data_version(self) -> str:
        canonical = json.dumps(self.manifest(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def build_corpus(documents: Iterable[EnrichedDocument], count_tokens: TokenCounter, *, tokenizer: str,
                 config: ChunkingConfig = ChunkingConfig()) -> Corpus:
    """Chunks every document (in key order, so the result does not depend on the order given).

    A chunk whose exact text an earlier document already produced is listed under both documents but kept once.
    """
    seen: set[str] = set()
    chunks: list[CorpusChunk] = []
    listing = []
    duplicates = 0
    for doc in sorted(documents, key=lambda d: d.key):
        ids = []
        for index, text in enumerate(chunk_text(doc.text, count_tokens, config)):
            if not strip_placeholders(text):  # only placeholders of uncaptioned figures: nothing to learn from
                continue
            cid = chunk_id(text)
            ids.append(cid)
            if cid in seen:
                duplicates += 1
                continue
            seen.add(cid)
            lang = detect_language(text)
            chunks.append(CorpusChunk(cid, doc.key, doc.source, doc.lang if lang == "und" else lang, index, text,
                                      count_tokens(text)))
        listing.append({"key": doc.key, "source": doc.source, "sha256": doc.source_sha256, "lang": doc.lang,
                        "chunks": ids})
    return Corpus(chunks, listing, duplicates, config, tokenizer)


@functools.lru_cache(maxsize=4)
def token_counter(base_model: str) -> TokenCounter:
    """Counts tokens with the base model's tokenizer ("tiny": the real Qwen3 tokenizer, the same as Qwen3-4B's).

    Raises:
        BaseModelUnavailableError: when the tokenizer cannot be loaded.
    """
    from clara_model.base import load_tokenizer  # heavy import, only when a corpus is built

    tokenizer = load_tokenizer(base_model)
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))
