"""What the dataset builders are asked to do: one frozen dataclass, and the seeds derived from it.

Every random choice (a row's document order, the random fill of its negatives, which questions are held out)
comes from a seed derived from `DatasetConfig.seed` and the identity of the thing being decided: the row's
chunk id and question, never its position in a list. So adding or removing one QA pair changes nothing
about any other row, and the same inputs give byte-identical files.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

DEFAULT_INSTRUCT_DOCS = 5  # generation_top_k of stage 2 (k)
DEFAULT_E2E_DOCS = 20  # candidates per stage-3 row (N >= k)


@dataclass(frozen=True)
class DatasetConfig:
    """Settings shared by the three dataset builders; pass the same one to all three, or the held-out split
    of one dataset would not be the split of another."""

    seed: int = 0
    held_out_fraction: float = 0.1  # share of questions kept out of every training file, for evaluation
    near_duplicate_threshold: float = 0.8  # shingle Jaccard at or above which two chunks count as one text
    shingle_size: int = 3  # tokens per shingle (a word, a number, or one CJK character each)
    hard_pool: int = 100  # top-ranked chunks tried as hard negatives before the seeded random fill

    def __post_init__(self) -> None:
        if not 0 <= self.held_out_fraction < 1:
            raise ValueError(f"DatasetConfig.held_out_fraction must be in [0, 1), got {self.held_out_fraction}")
        if not 0 < self.near_duplicate_threshold <= 1:
            raise ValueError("DatasetConfig.near_duplicate_threshold must be in (0, 1], "
                             f"got {self.near_duplicate_threshold}")
        if self.shingle_size < 1:
            raise ValueError(f"DatasetConfig.shingle_size must be >= 1, got {self.shingle_size}")
        if self.hard_pool < 0:
            raise ValueError(f"DatasetConfig.hard_pool must be >= 0, got {self.hard_pool}")

    def rng(self, purpose: str, *identity: object) -> random.Random:
        """A generator seeded by this config's seed, what it is for, and the identity of what it decides."""
        return random.Random(derive_seed(self.seed, purpose, *identity))


def derive_seed(seed: int, purpose: str, *identity: object) -> int:
    """A 64-bit integer from sha256 of the parts: stable across processes, machines and Python versions
    (unlike `hash()`, which is salted per process)."""
    text = "\x1f".join(str(part) for part in (seed, purpose, *identity))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
