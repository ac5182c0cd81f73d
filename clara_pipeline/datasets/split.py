"""The held-out split: which questions are kept out of every training file, for evaluation.

A question is held out when a hash of its normalised text (and the seed) falls below the fraction. The
decision depends on nothing else, so it is stable when the corpus grows (a question never moves between
sides), the three dataset builders agree on it without sharing state, and two spellings of one question
("What is X?" and "what is x") land on the same side. The share held out is the fraction in expectation:
with few questions it varies like a coin toss would.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .config import derive_seed
from .records import QAPair
from .text import fold, squash


def question_key(question: str) -> str:
    """The normalised question the split is decided on (case, width, whitespace and punctuation ignored)."""
    return squash(question) or "".join(fold(question).split())


def is_held_out(question: str, *, fraction: float, seed: int) -> bool:
    """Whether `question` belongs to the evaluation side for this `fraction` and `seed`."""
    if not 0 <= fraction < 1:
        raise ValueError(f"held-out fraction must be in [0, 1), got {fraction}")
    return derive_seed(seed, "held-out", question_key(question)) < fraction * 2**64


@dataclass(frozen=True)
class QuestionSplit:
    train: tuple[QAPair, ...]
    held_out: tuple[QAPair, ...]

    @property
    def held_out_questions(self) -> list[str]:
        """The held-out questions, in input order (for `validate.find_problems(held_out_questions=...)`)."""
        return [pair.question for pair in self.held_out]


def split_pairs(pairs: Iterable[QAPair], *, fraction: float = 0.1, seed: int = 0) -> QuestionSplit:
    """The pairs divided into training and held-out, each in input order."""
    train, held_out = [], []
    for pair in pairs:
        (held_out if is_held_out(pair.question, fraction=fraction, seed=seed) else train).append(pair)
    return QuestionSplit(tuple(train), tuple(held_out))
