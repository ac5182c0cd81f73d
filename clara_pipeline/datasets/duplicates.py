"""Near-duplicate groups of a corpus: chunks whose 3-token shingle sets have a Jaccard similarity >= 0.8.

Two documents that hold the same manual (a PDF and its DOCX), or a policy copied into two folders with one
line changed, give chunks that are the same text to a reader. Such a chunk must never be a negative for a
question about its twin, and two of them must never share a row. The reference checked none of this (W-13).

Shingles are runs of `size` consecutive match tokens (`text.match_tokens`: a Latin word, a number, or one
CJK character), so the measure works for Chinese, which has no spaces, and ignores case, width, punctuation
and layout differences between two extractions of one document. Token shingles rather than character
5-grams: character 5-grams of English are few and shared by most chunks, which makes the exact join below
compare most pairs of a homogeneous corpus; three consecutive words are rare.

The groups are computed once per corpus, exactly: an all-pairs comparison would be 50M pairs at 10k chunks,
so candidate pairs come from prefix filtering (Chaudhuri et al. 2006; Bayardo et al. 2007). Order every
set's shingles by corpus frequency, rarest first; two sets with Jaccard >= t must then share a shingle
among the first `|S| - ceil(t |S|) + 1` of each. Only pairs sharing such a prefix shingle are compared, and
the comparison is exact. Groups are the connected components of the similarity relation, so a chain of
near-duplicates is one group even where its two ends are less similar than the threshold: the safe side.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np

from .text import fold, match_tokens

_MULTIPLIER = np.uint64(0x100000001B3)  # the 64-bit FNV prime: a polynomial rolling hash of token hashes
_MAX_RANK = (1 << 24) - 1  # frequencies above this share one rank (24 bits of the 64-bit sort key)
_EPSILON = 1e-9  # guards ceil(t * n) and t * union against float round-off (0.8 * 5 = 4.000000000000001)


def shingles(text: str, size: int = 3) -> np.ndarray:
    """The distinct hashed `size`-token shingles of `text`, sorted (uint64).

    A text of fewer than `size` tokens is one shingle; a text without tokens (only punctuation) is its
    folded, stripped self, so two such texts match only when they are equal.
    """
    return _shingles_of(_tokens(text), size)


def _tokens(text: str) -> list[str]:
    return match_tokens(text) or ["".join(fold(text).split())]


def _shingles_of(tokens: list[str], size: int) -> np.ndarray:
    codes = np.array([zlib.crc32(token.encode("utf-8")) for token in tokens], dtype=np.uint64)
    if len(codes) == 0:
        return np.zeros(0, dtype=np.uint64)
    width = min(size, len(codes))
    hashes = np.zeros(len(codes) - width + 1, dtype=np.uint64)
    for offset in range(width):  # uint64 arithmetic wraps modulo 2**64, which is the hash we want
        hashes = hashes * _MULTIPLIER + codes[offset:len(codes) - width + 1 + offset]
    hashes = _mix(hashes)
    hashes.sort()
    return hashes[np.concatenate(([True], hashes[1:] != hashes[:-1]))]


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads the rolling hash so that its low and high bits are both usable."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a & b| / |a | b| of two sorted shingle arrays (1.0 for two empty ones)."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    common = len(np.intersect1d(a, b, assume_unique=True))
    return common / (len(a) + len(b) - common)


def near_duplicate_groups(texts: Sequence[str], threshold: float = 0.8, shingle_size: int = 3) -> np.ndarray:
    """A group id per text (shape: [len(texts)]): texts joined by a chain of pairs with shingle Jaccard >=
    `threshold` share one id, the smallest index in their group.

    Raises:
        ValueError: when `threshold` is not in (0, 1] or `shingle_size` < 1.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
    if shingle_size < 1:
        raise ValueError(f"shingle size must be >= 1, got {shingle_size}")
    parent = np.arange(len(texts))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    # Texts with identical tokens are one group before any shingling: the join below sees each text once.
    first_of: dict[str, int] = {}
    distinct: list[int] = []
    sets: list[np.ndarray] = []
    for i, text in enumerate(texts):
        tokens = _tokens(text)
        key = " ".join(tokens)
        if key in first_of:
            union(first_of[key], i)
        else:
            first_of[key] = i
            distinct.append(i)
            sets.append(_shingles_of(tokens, shingle_size))
    for a, b in _candidate_pairs(sets, threshold):
        i, j = distinct[a], distinct[b]
        if find(i) == find(j):
            continue  # already joined through a chain: no need to compare
        common = len(np.intersect1d(sets[a], sets[b], assume_unique=True))
        if common >= threshold * (len(sets[a]) + len(sets[b]) - common) - _EPSILON:
            union(i, j)
    return np.array([find(i) for i in range(len(texts))], dtype=np.int64)


def _candidate_pairs(sets: list[np.ndarray], threshold: float) -> list[tuple[int, int]]:
    """Pairs (a, b), a < b, of sets that share a shingle in their prefixes and could reach `threshold` by size.

    Every pair with Jaccard >= threshold is among them (the prefix-filtering argument in the module doc).
    """
    if len(sets) < 2:
        return []
    # Frequencies are counted in hash buckets (about two per shingle): a collision only merges two shingles'
    # counts, and the order stays one function of the shingle for every set, which is all the filter needs.
    everything = np.concatenate(sets)
    mask = np.uint64((1 << min(24, max(10, (2 * len(everything)).bit_length()))) - 1)
    counts = np.bincount((everything & mask).astype(np.int64), minlength=int(mask) + 1)
    rank = np.minimum(counts, _MAX_RANK).astype(np.uint64)
    prefix_keys, prefix_owners = [], []
    for owner, shingle_set in enumerate(sets):
        # Sort key: (frequency, hash), packed into 64 bits: rarest first, ties by the hash's top 40 bits.
        keys = np.sort((rank[(shingle_set & mask).astype(np.int64)] << np.uint64(40))
                       | (shingle_set >> np.uint64(24)))
        prefix = len(keys) - math.ceil(threshold * len(keys) - _EPSILON) + 1
        prefix_keys.append(keys[:prefix])
        prefix_owners.append(np.full(min(prefix, len(keys)), owner, dtype=np.int64))
    keys, owners = np.concatenate(prefix_keys), np.concatenate(prefix_owners)
    order = np.argsort(keys, kind="stable")
    keys, owners = keys[order], owners[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(keys)) + 1]).astype(np.int64)
    ends = np.concatenate([starts[1:], [len(keys)]]).astype(np.int64)
    shared = np.flatnonzero(ends - starts >= 2)  # most prefix shingles belong to one set only
    sizes = [len(s) for s in sets]
    pairs: set[tuple[int, int]] = set()
    for group in shared:
        members = owners[starts[group]:ends[group]].tolist()
        for x, a in enumerate(members):
            for b in members[x + 1:]:
                if a == b:  # two shingles of one set with the same 64-bit key: not a pair
                    continue
                # Size filter: Jaccard <= min/max, so sets of very different sizes cannot be near-duplicates.
                if min(sizes[a], sizes[b]) >= threshold * max(sizes[a], sizes[b]) - _EPSILON:
                    pairs.add((a, b))
    return sorted(pairs)
