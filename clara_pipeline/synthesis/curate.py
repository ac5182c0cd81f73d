"""Curating synthesized QA pairs: every kept pair is supported by its chunk, self-contained and unique.

The reference wrote whatever the LLM returned: answers it invented, questions that only make sense next to the
passage ("according to the text..."), and the same question once per chunk that mentioned the topic. Each
filter here counts what it drops, so the metadata says what the LLM got wrong.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..datasets.records import QAPair
from ..datasets.split import question_key
from ..datasets.text import fold

# Phrases that make a question depend on a passage the model will not see at question time.
_NOT_SELF_CONTAINED = re.compile(
    r"according to the (text|passage|document|chunk|context|excerpt|above)|in the (text|passage|excerpt|chunk) "
    r"(above|below|provided)|the (above|following) (text|passage)|as (mentioned|stated|described) (above|in the text)|"
    r"根据(上文|本文|文中|原文|这段|该段|以上)|(上文|本文|文中|原文|这段文字|该段落)(中|里)?(提到|所述|指出|描述)",
    re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[a-z0-9]+(?:[.'-][a-z0-9]+)*")
_CJK = re.compile(r"[\u3400-\u9fff]")
_STOP = frozenset("a an the of to in on at by for with and or is are was were be it its this that these those as "
                  "from than then which what who whom when where how why do does did can could should would will "
                  "must may not no yes it they them their there has have had about approximately".split())


@dataclass
class CurationReport:
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    by_type: Counter = field(default_factory=Counter)


def normalize(text: str) -> str:
    """Case-, width- and whitespace-insensitive form (NFKC folds full-width digits and letters)."""
    return " ".join(fold(text).split())


def _content_tokens(text: str) -> list[str]:
    text = normalize(text)
    # A 5-character prefix stands in for a stemmer: "typical" matches "typically", "rated" "rating".
    words = [w[:5] for w in _WORD.findall(text) if w not in _STOP]
    cjk = _CJK.findall(text)
    bigrams = [a + b for a, b in zip(cjk, cjk[1:])] if len(cjk) > 1 else cjk
    return words + bigrams


def answer_supported(answer: str, chunk: str, min_overlap: float = 0.6) -> bool:
    """True when the chunk backs the answer: every number in the answer occurs in the chunk, and at least
    `min_overlap` of the answer's content words (Chinese: character bigrams) occur in it."""
    norm_answer, norm_chunk = normalize(answer), normalize(chunk)
    if not norm_answer:
        return False
    if norm_answer in norm_chunk:
        return True
    chunk_numbers = set(_NUMBER.findall(norm_chunk))
    if any(n not in chunk_numbers for n in _NUMBER.findall(norm_answer)):
        return False  # an invented figure is the commonest hallucination
    tokens = _content_tokens(answer)
    if not tokens:
        return False
    chunk_tokens = set(_content_tokens(chunk))
    return sum(t in chunk_tokens for t in tokens) / len(tokens) >= min_overlap


def curate(pairs_by_chunk: Mapping[str, Iterable[QAPair]], chunk_texts: Mapping[str, str],
           *, min_overlap: float = 0.6) -> tuple[list[QAPair], CurationReport]:
    """Returns the pairs worth training on, in chunk order, and what was dropped and why.

    The pairs are the LLM's, as `ChunkSynthesis` validated them; each kept pair is returned with its chunk's
    id and its texts stripped.

    Duplicates are judged across the whole corpus, by the same question key as the held-out split: the
    first chunk (in the given order) keeps a question.
    """
    report = CurationReport()
    seen: set[str] = set()
    kept: list[QAPair] = []
    for cid, pairs in pairs_by_chunk.items():
        for pair in pairs:
            question, answer = pair.question.strip(), pair.answer.strip()  # never blank: QAPair refuses that
            if _NOT_SELF_CONTAINED.search(question):
                report.dropped["not_self_contained"] += 1
            elif not answer_supported(answer, chunk_texts[cid], min_overlap):
                report.dropped["unsupported"] += 1
            elif question_key(question) in seen:
                report.dropped["duplicate_question"] += 1
            else:
                seen.add(question_key(question))
                kept.append(QAPair(cid, pair.qa_type, question, answer))  # the same type, tied to its chunk
                report.by_type[pair.qa_type] += 1
    report.kept = len(kept)
    return kept, report
