"""Rankers: the corpus ordered by similarity to a question, the raw material of hard negatives.

A ranker is anything with a `name` and `rank(question, limit)`. Two ship here: `BM25Ranker` (the default,
needs nothing but the chunk texts) and `EmbeddingRanker` (cosine similarity of vectors the caller obtained
from an embeddings endpoint). The reference fell back from embeddings to random negatives silently when its
embedding calls failed (W-7); here a missing vector is an error that names it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from .bm25 import BM25Index, top_scoring
from .records import ChunkRecord


class Ranker(Protocol):
    """Orders corpus chunks (by position in the chunk list the ranker was built over) for a question."""

    name: str  # recorded in the dataset report: "bm25", "embeddings"

    def rank(self, question: str, limit: int) -> list[int]:
        """Up to `limit` chunk positions, most similar first; deterministic for equal scores."""
        ...


class BM25Ranker:
    """Chunks ranked by BM25 of their text against the question; chunks sharing no term are not ranked."""

    name = "bm25"

    def __init__(self, chunks: Sequence[ChunkRecord]):
        self.index = BM25Index([chunk.text for chunk in chunks])

    def rank(self, question: str, limit: int) -> list[int]:
        return [position for position, _ in self.index.search(question, limit)]


class EmbeddingRanker:
    """Chunks ranked by the cosine similarity of their embedding to the question's embedding.

    Args:
        chunks: the corpus, in the order the positions refer to.
        chunk_embeddings: a vector per chunk id; every chunk must have one.
        question_embeddings: a vector per question text; `rank` raises KeyError for a question without one.

    Raises:
        ValueError: a chunk without a vector, vectors of different lengths, or a zero or non-finite vector.
    """

    name = "embeddings"

    def __init__(self, chunks: Sequence[ChunkRecord], chunk_embeddings: Mapping[str, Sequence[float]],
                 question_embeddings: Mapping[str, Sequence[float]]):
        missing = [chunk.chunk_id for chunk in chunks if chunk.chunk_id not in chunk_embeddings]
        if missing:
            raise ValueError(f"{len(missing)} chunks have no embedding, e.g. {missing[:5]}")
        vectors = [chunk_embeddings[chunk.chunk_id] for chunk in chunks]
        dims = sorted({len(vector) for vector in vectors})
        if len(dims) > 1:
            odd = next(c.chunk_id for c, v in zip(chunks, vectors) if len(v) != len(vectors[0]))
            raise ValueError(f"chunk embeddings differ in length ({dims}); chunk {odd!r} has {dims[-1]} or fewer")
        dim = dims[0] if dims else 0
        matrix = np.array(vectors, dtype=np.float64).reshape(len(vectors), dim)
        self._matrix = _unit_rows(matrix, [c.chunk_id for c in chunks], "chunk")  # [chunks, dim]
        self._questions = question_embeddings

    def rank(self, question: str, limit: int) -> list[int]:
        if question not in self._questions:
            raise KeyError(f"no embedding for question {question[:80]!r}")
        vector = np.array(self._questions[question], dtype=np.float64)
        if vector.shape != (self._matrix.shape[1],):
            raise ValueError(f"question {question[:80]!r}: embedding has shape {vector.shape}, the chunks' "
                             f"have {self._matrix.shape[1]} dimensions")
        vector = _unit_rows(vector[None, :], [question[:80]], "question")[0]
        return [position for position, _ in top_scoring(self._matrix @ vector, limit)]


def _unit_rows(matrix: np.ndarray, names: Sequence[str], what: str) -> np.ndarray:
    """`matrix` with each row scaled to length 1; a zero or non-finite row is a ValueError naming it."""
    norms = np.linalg.norm(matrix, axis=1)
    bad = [names[i] for i in np.flatnonzero(~np.isfinite(norms) | (norms == 0))]
    if bad:
        raise ValueError(f"{what} embedding of {bad[0]!r} is zero or not finite ({len(bad)} such vectors)")
    return matrix / norms[:, None]
