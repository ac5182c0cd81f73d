"""Hard negatives: the chunks most like a question that do not answer it.

For a question whose positive is chunk P, candidates come first from a ranker (BM25 by default, embeddings
when given), best first, at most `hard_pool` of them; if those run out before the row is full, from a
seeded random order of the whole corpus. Every candidate passes the same filters, and the first failing
one is counted as the reason it was skipped:

- `positive`: it is P.
- `near_duplicate_of_positive`: it is in P's near-duplicate group (see `duplicates`): the same text twice.
- `near_duplicate_of_negative`: it is in the group of a negative already chosen for this row.
- `contains_answer`: its text contains the answer (see `text.AnswerMatcher`), so it is not a negative.

The reference took the k-1 most similar chunks with none of these checks (W-8), or an unseeded random
sample (W-9), and wrote short rows when the corpus was small (W-5). Here a row gets its negatives in a
deterministic order or reports that it cannot.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from .config import DatasetConfig
from .duplicates import near_duplicate_groups
from .ranking import BM25Ranker, Ranker
from .records import ChunkRecord
from .text import AnswerMatcher, MatchableText

SKIP_REASONS = ("positive", "near_duplicate_of_positive", "near_duplicate_of_negative", "contains_answer")


@dataclass(frozen=True)
class NegativeChoice:
    """The negatives chosen for one question: chunk positions, hard ones first, then random ones."""

    chunks: tuple[int, ...]
    hard: int  # how many of `chunks` came from the ranker; the rest came from the random fill
    skipped: Counter = field(default_factory=Counter)  # reason -> candidates skipped for it

    @property
    def random(self) -> int:
        return len(self.chunks) - self.hard


class NegativePicker:
    """Chooses negatives among `chunks` for questions about them.

    Building one computes the corpus's near-duplicate groups (about a second per 10k chunks) and, without a
    `ranker`, a BM25 index; reuse it for every question of a dataset.
    """

    def __init__(self, chunks: Sequence[ChunkRecord], ranker: Ranker | None = None, *,
                 config: DatasetConfig = DatasetConfig()):
        self.chunks = list(chunks)
        self.config = config
        self.ranker = ranker if ranker is not None else BM25Ranker(self.chunks)
        self.groups = near_duplicate_groups([chunk.text for chunk in self.chunks], config.near_duplicate_threshold,
                                            config.shingle_size)
        self._matchable: dict[int, MatchableText] = {}

    @property
    def near_duplicate_chunks(self) -> int:
        """How many chunks have at least one near-duplicate elsewhere in the corpus."""
        sizes = Counter(self.groups.tolist())
        return sum(size for size in sizes.values() if size > 1)

    def pick(self, positive: int, question: str, answer: str, count: int) -> NegativeChoice:
        """Up to `count` negatives for `question` (answered by `answer` in chunk `positive`), fewer only when
        the whole corpus has no more chunks that pass the filters.

        The random fill is seeded by the config's seed, the positive's chunk id and the question, so a
        question gets the same negatives whatever else is in the dataset, and a request for fewer negatives
        gets a prefix of a request for more (stage 2's k-1 are the first of stage 3's N-1).
        """
        matcher = AnswerMatcher(answer)
        chosen: list[int] = []
        chosen_groups = {int(self.groups[positive])}
        tried: set[int] = set()
        skipped: Counter = Counter()

        def consider(candidate: int) -> None:
            tried.add(candidate)
            group = int(self.groups[candidate])
            if candidate == positive:
                skipped["positive"] += 1
            elif group == self.groups[positive]:
                skipped["near_duplicate_of_positive"] += 1
            elif group in chosen_groups:
                skipped["near_duplicate_of_negative"] += 1
            elif matcher.found_in(self._prepared(candidate)):
                skipped["contains_answer"] += 1
            else:
                chosen.append(candidate)
                chosen_groups.add(group)

        if count > 0:
            for candidate in self.ranker.rank(question, self.config.hard_pool):
                consider(candidate)
                if len(chosen) == count:
                    break
        hard = len(chosen)
        if len(chosen) < count:
            rng = self.config.rng("random-negatives", self.chunks[positive].chunk_id, question)
            for candidate in _lazy_permutation(len(self.chunks), rng):
                if candidate not in tried:
                    consider(candidate)
                    if len(chosen) == count:
                        break
        return NegativeChoice(tuple(chosen), hard, skipped)

    def _prepared(self, position: int) -> MatchableText:
        prepared = self._matchable.get(position)
        if prepared is None:
            prepared = self._matchable[position] = MatchableText.of(self.chunks[position].text)
        return prepared


def _lazy_permutation(n: int, rng: random.Random) -> Iterator[int]:
    """A uniformly random permutation of range(n), produced one element at a time (Fisher-Yates with the
    swaps kept in a dict), so taking the first few costs O(few), not O(n)."""
    moved: dict[int, int] = {}
    for i in range(n):
        j = rng.randrange(i, n)
        value = moved.get(j, j)
        moved[j] = moved.get(i, i)
        yield value
