"""A BM25 (Okapi) index over chunk texts, for English and Chinese, in plain Python and numpy.

Scores follow Robertson's Okapi BM25 with the non-negative idf Lucene uses,
`idf(t) = ln(1 + (N - n_t + 0.5) / (n_t + 0.5))`, so a term in more than half the chunks still counts a little
instead of subtracting. Each posting stores its finished per-chunk weight, so a search is one numpy
scatter-add per query term: a few hundred microseconds over 10k chunks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from .text import CJK_CHARS, fold

K1 = 1.5
B = 0.75

# A run of CJK characters (group 1), or a run of other letters and digits that may carry decimals ("1.5",
# "v2.0.1") (group 2).
_RUN = re.compile(rf"([{CJK_CHARS}]+)|([^\W_{CJK_CHARS}]+(?:[.,]\d+[^\W_{CJK_CHARS}]*)*)")
_PARTS = re.compile(r"\d+(?:\.\d+)?|[^\W\d_]+")

# Function words that appear in nearly every English chunk: they add posting-list length, not signal.
STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from has have how if in into is it its of on or that the "
    "their then there these this to was were what when where which who why will with".split()
)


def tokenize(text: str) -> list[str]:
    """BM25 terms of `text`: lowercased words and numbers ("24v", "1.5", "5000"), and Chinese character bigrams.

    A word mixing digits and letters also yields its parts ("24v" -> "24v", "24", "v"), so a query written
    "24 V" still finds "24V". A Chinese run of one character is kept as that character.
    """
    terms: list[str] = []
    for cjk, word in _RUN.findall(fold(text)):
        if cjk:
            terms.extend([cjk] if len(cjk) == 1 else [cjk[i:i + 2] for i in range(len(cjk) - 1)])
            continue
        word = word.replace(",", "")
        if word in STOPWORDS:
            continue
        terms.append(word)
        if not word.isalpha() and not word.isdigit():  # mixed: "24v", "1.5mm", "v2"
            parts = _PARTS.findall(word)
            if len(parts) > 1:
                terms.extend(part for part in parts if part not in STOPWORDS)
    return terms


class BM25Index:
    """BM25 over a fixed list of texts; `search` returns (position in that list, score), best first.

    Postings are stored column-compressed: the chunks holding term t are `_chunks[_start[t]:_start[t + 1]]`,
    with their finished BM25 weights alongside in `_weights`.
    """

    def __init__(self, texts: Sequence[str], *, k1: float = K1, b: float = B):
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1, self.b = k1, b
        self.size = len(texts)
        self._vocabulary: dict[str, int] = {}
        term_ids, chunk_ids, tfs = [], [], []
        lengths = np.zeros(self.size, dtype=np.float64)
        for position, text in enumerate(texts):
            ids = [self._vocabulary.setdefault(term, len(self._vocabulary)) for term in tokenize(text)]
            lengths[position] = len(ids)
            distinct, counts = np.unique(np.array(ids, dtype=np.int64), return_counts=True)
            term_ids.append(distinct)
            chunk_ids.append(np.full(len(distinct), position, dtype=np.int64))
            tfs.append(counts)
        terms = np.concatenate(term_ids) if term_ids else np.zeros(0, dtype=np.int64)
        chunks = np.concatenate(chunk_ids) if chunk_ids else np.zeros(0, dtype=np.int64)
        tf = np.concatenate(tfs).astype(np.float64) if tfs else np.zeros(0)
        order = np.argsort(terms, kind="stable")  # by term, chunks ascending within a term
        terms, self._chunks, tf = terms[order], chunks[order], tf[order]
        document_frequency = np.bincount(terms, minlength=len(self._vocabulary)).astype(np.float64)
        self._start = np.concatenate([[0], np.cumsum(document_frequency)]).astype(np.int64)
        idf = np.log1p((self.size - document_frequency + 0.5) / (document_frequency + 0.5))
        average = float(lengths.mean()) if self.size else 0.0
        average = average if average > 0 else 1.0  # no terms anywhere: there are no postings to weigh
        saturation = k1 * (1.0 - b + b * lengths / average)  # per chunk
        self._weights = idf[terms] * tf * (k1 + 1.0) / (tf + saturation[self._chunks])

    @property
    def vocabulary_size(self) -> int:
        return len(self._vocabulary)

    def scores(self, query: str) -> np.ndarray:
        """The BM25 score of every text for `query` (shape: [number of texts]); 0 where no term is shared."""
        scores = np.zeros(self.size, dtype=np.float64)
        for term in dict.fromkeys(tokenize(query)):  # each distinct term once, in query order
            term_id = self._vocabulary.get(term)
            if term_id is not None:
                lo, hi = self._start[term_id], self._start[term_id + 1]
                scores[self._chunks[lo:hi]] += self._weights[lo:hi]  # chunks are distinct within a term
        return scores

    def search(self, query: str, top_n: int) -> list[tuple[int, float]]:
        """Up to `top_n` (position, score) pairs with a positive score, best first; equal scores in
        position order."""
        return top_scoring(self.scores(query), top_n, positive_only=True)


def top_scoring(scores: np.ndarray, top_n: int, *, positive_only: bool = False) -> list[tuple[int, float]]:
    """The `top_n` highest (index, score) pairs of `scores`, best first, ties broken by the lower index.

    Deterministic even with ties at the cut: every index scoring at least the `top_n`-th best is sorted
    by (-score, index) before the cut, so which of several equal scores survives never depends on the sort.
    """
    if top_n <= 0:
        return []
    candidates = np.flatnonzero(scores > 0) if positive_only else np.arange(len(scores))
    values = scores[candidates]
    if len(candidates) > top_n:
        threshold = np.partition(values, len(values) - top_n)[len(values) - top_n]
        keep = values >= threshold
        candidates, values = candidates[keep], values[keep]
    order = np.lexsort((candidates, -values))[:top_n]
    return [(int(candidates[i]), float(values[i])) for i in order]
