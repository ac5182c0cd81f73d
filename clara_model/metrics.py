"""Evaluation metrics: answer quality (EM, token F1, cover-EM) and retrieval (recall@k, precision@k).

Answers are compared after SQuAD normalisation (lowercase, no punctuation, no articles, single spaces; "True" /
"False" read as yes / no). Every metric takes the best score over all gold aliases; the paper's numbers compare
with the first gold answer only, which `score_answers(..., first_gold_only=True)` reproduces.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)
_BOOLEANS = {"True": "yes", "False": "no"}
_CLOSED_ANSWERS = {"yes", "no", "noanswer"}


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
