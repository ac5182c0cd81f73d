"""Evaluation metrics: answer quality (EM, token F1, cover-EM), retrieval (recall@k, precision@k), and the
predictions that are no answer at all (empty or degenerate).

Answers are compared after SQuAD normalisation (lowercase, no punctuation, no articles, single spaces; "True" /
"False" read as yes / no). Every metric takes the best score over all gold aliases; the paper's numbers compare
with the first gold answer only, which `score_answers(..., first_gold_only=True)` reproduces.

An empty or degenerate prediction scores 0 like a wrong answer; `flag_predictions` tells them apart, so that a
model that writes nothing (or "la la la") is not mistaken for one that answers badly.
"""

from __future__ import annotations

import enum
import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)
_BOOLEANS = {"True": "yes", "False": "no"}
_CLOSED_ANSWERS = {"yes", "no", "noanswer"}
# One unit (a character, a word, a phrase) three or more times in a row, making up the whole text.
_REPEATED_UNIT = re.compile(r"(.+?)(?:\s*\1){2,}", re.DOTALL)
MIN_ROWS_FOR_SAME_ANSWER = 5  # below this, one answer for most rows can be chance


class PredictionFlag(str, enum.Enum):
    """Why a prediction is no answer. EMPTY is counted apart; the others are "degenerate"."""

    EMPTY = "empty"  # nothing but whitespace
    NO_WORDS = "no_words"  # only punctuation and articles: nothing is left after normalisation (".", "the")
    REPEATED = "repeated"  # one unit 3+ times in a row, the whole text: "aaaa", "la la la", "Paris Paris Paris"
    SAME_FOR_MOST = "same_for_most"  # the same normalised answer for more than half of >= 5 questions


def normalize_answer(text: str) -> str:
    """Return `text` lowercased, without punctuation and articles, with single spaces."""
    text = _BOOLEANS.get(text.strip(), text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(gold) for gold in _non_empty(golds)))


def cover_exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when every token of some normalised gold answer appears in the normalised prediction (the paper's
    "accuracy"), else 0.0."""
    pred_tokens = set(normalize_answer(prediction).split())
    return float(any(set(normalize_answer(g).split()) <= pred_tokens for g in _non_empty(golds)))


def f1_score(prediction: str, golds: Sequence[str]) -> float:
    """Return the best token-level F1 of the prediction against the gold answers.

    A yes / no / noanswer on either side scores 0 unless both sides are the same, as in the SQuAD/HotpotQA script.
    """
    return max(_f1(normalize_answer(prediction), normalize_answer(gold)) for gold in _non_empty(golds))


def score_answers(
    predictions: Sequence[str], golds: Sequence[Sequence[str]], *, first_gold_only: bool = False
) -> dict[str, float]:
    """Return mean em, f1 and cover_em (and the count n) of `predictions` against each row's gold aliases.

    Raises:
        ValueError: when the lengths differ or there is nothing to score.
    """
    if len(predictions) != len(golds) or not predictions:
        raise ValueError(f"need as many gold lists as predictions (>0): {len(predictions)} vs {len(golds)}")
    rows = [list(g[:1]) if first_gold_only else list(g) for g in golds]
    n = len(predictions)
    return {
        "em": sum(exact_match(p, g) for p, g in zip(predictions, rows)) / n,
        "f1": sum(f1_score(p, g) for p, g in zip(predictions, rows)) / n,
        "cover_em": sum(cover_exact_match(p, g) for p, g in zip(predictions, rows)) / n,
        "n": float(n),
    }


def flag_predictions(predictions: Sequence[str]) -> list[PredictionFlag | None]:
    """Return, for each prediction, why it is no answer (a `PredictionFlag`), or None for a real attempt.

    Checked in this order, the first that applies wins:
    - EMPTY: nothing but whitespace.
    - NO_WORDS: nothing left after `normalize_answer` (only punctuation and articles: ".", "!!!!", "the the").
    - REPEATED: after collapsing whitespace, the whole text is one unit repeated at least 3 times ("aaa",
      "la la la", "Paris Paris Paris", "的的的"); a text without letters ("111", "10 10 10") is not flagged,
      since numbers can repeat digits legitimately.
    - SAME_FOR_MOST: with at least `MIN_ROWS_FOR_SAME_ANSWER` predictions, a normalised answer that more than
      half of them give: every prediction with it is flagged, right or wrong (the model ignores the question).
      On yes/no questions a model answering the majority class everywhere is flagged too, which is intended.
    """
    flags: list[PredictionFlag | None] = []
    for prediction in predictions:
        text = " ".join(prediction.split())
        if not text:
            flags.append(PredictionFlag.EMPTY)
        elif not normalize_answer(text):
            flags.append(PredictionFlag.NO_WORDS)
        elif any(ch.isalpha() for ch in text) and _REPEATED_UNIT.fullmatch(text):
            flags.append(PredictionFlag.REPEATED)
        else:
            flags.append(None)
    if len(predictions) >= MIN_ROWS_FOR_SAME_ANSWER:
        counts = Counter(normalize_answer(p) for p, flag in zip(predictions, flags) if flag is None)
        common = {answer for answer, n in counts.items() if n > len(predictions) / 2}
        flags = [PredictionFlag.SAME_FOR_MOST if flag is None and normalize_answer(p) in common else flag
                 for p, flag in zip(predictions, flags)]
    return flags


def count_flags(flags: Sequence[PredictionFlag | None]) -> tuple[int, int]:
    """Return (empty, degenerate): how many flags are EMPTY, and how many are one of the other kinds."""
    empty = sum(flag is PredictionFlag.EMPTY for flag in flags)
    return empty, sum(flag is not None for flag in flags) - empty


def recall_at_k(selected: Sequence[int], positives: Sequence[int], k: int) -> float:
    """Return |top-k of `selected` (best first) and `positives`| / |positives|.

    Raises:
        ValueError: when there is no positive (recall is undefined) or k < 1.
    """
    if not positives:
        raise ValueError("recall needs at least one positive index")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return len(set(selected[:k]) & set(positives)) / len(set(positives))


def precision_at_k(selected: Sequence[int], positives: Sequence[int], k: int) -> float:
    """Return |top-k of `selected` and `positives`| / k."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return len(set(selected[:k]) & set(positives)) / k


def score_retrieval(
    selected: Sequence[Sequence[int]], positives: Sequence[Sequence[int]], ks: Sequence[int] = (1, 3, 5)
) -> dict[str, float]:
    """Return mean recall@k and precision@k over the rows that have a pos_index (their count is n).

    Rows without positives are left out rather than counted as 0 (the original's averages mixed them in); with
    none at all only n (0) is returned. Keys: "n", "recall@1", "precision@1", ...
    """
    if len(selected) != len(positives):
        raise ValueError(f"{len(selected)} selections but {len(positives)} pos_index lists")
    pairs = [(s, p) for s, p in zip(selected, positives) if p]
    result: dict[str, float] = {"n": float(len(pairs))}
    if not pairs:
        return result  # nothing to average: no metric rather than a made-up 0
    for k in ks:
        result[f"recall@{k}"] = sum(recall_at_k(s, p, k) for s, p in pairs) / len(pairs)
        result[f"precision@{k}"] = sum(precision_at_k(s, p, k) for s, p in pairs) / len(pairs)
    return result


def _f1(pred: str, gold: str) -> float:
    if (pred in _CLOSED_ANSWERS or gold in _CLOSED_ANSWERS) and pred != gold:
        return 0.0
    common = Counter(pred.split()) & Counter(gold.split())
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred.split()), same / len(gold.split())
    return 2 * precision * recall / (precision + recall)


def _non_empty(golds: Sequence[str]) -> Sequence[str]:
    if isinstance(golds, str):
        raise TypeError("golds must be a sequence of answers, not a single string")
    if not golds:
        raise ValueError("at least one gold answer is needed")
    return golds
