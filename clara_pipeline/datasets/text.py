"""Text normalisation for matching: folding, the squashed form, and whether a text contains an answer.

Matching is deliberately blunt in one direction. A negative document that contains the answer teaches the
model that the answer is not there (a false negative, reference W-8), while skipping a harmless candidate
only costs a slightly less hard negative; so when in doubt, `contains_answer` says yes. The one place it is
strict is numbers: "5" must not hit "15", or every chunk with a year or a part number would be skipped. That
holds for answers that are a number with at most a short unit ("5", "24 V", "5个"); in an answer whose words
carry it ("2 Lockout/tagout"), the number may continue one of the text's ("2.2 Lockout/tagout" contains it).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# CJK ideographs and kana: each character is one token (these scripts have no spaces between words).
CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_RE = re.compile(f"[{CJK_CHARS}]")

_NOT_WORD = re.compile(r"[\W_]+")
# Match tokens: one CJK character, a number (thousands separators allowed), or a run of other letters.
_MATCH_TOKEN = re.compile(rf"[{CJK_CHARS}]|\d+(?:,\d{{3}})*(?:\.\d+)?|[^\W\d_{CJK_CHARS}]+")
_LATIN_WORD = re.compile(r"[a-z]+")

SHORT_WORD_ANSWER = 3  # an answer of at most this many Latin letters ("on", "A") matches whole words only
# An answer with more letters than this besides its digits is matched by its words: its numbers may continue
# a longer number of the text (section "2 Lockout/tagout" in "2.2 Lockout/tagout"); "24V" or "5个" may not.
NUMBER_ANSWER_MAX_LETTERS = 3


def fold(text: str) -> str:
    """`text` in NFKC, case-folded: full-width letters, digits and punctuation become their ASCII forms."""
    return unicodedata.normalize("NFKC", text).casefold()


def squash(text: str) -> str:
    """The folded text without whitespace, punctuation or symbols: "24 V," and "２４Ｖ" both become "24v"."""
    return _NOT_WORD.sub("", fold(text))


def match_tokens(text: str) -> list[str]:
    """Folded tokens: single CJK characters, numbers without thousands separators ("5,000" -> "5000"), and
    runs of other letters."""
    return _tokens_of_folded(fold(text))


def _tokens_of_folded(folded: str) -> list[str]:
    return [token.replace(",", "") for token in _MATCH_TOKEN.findall(folded)]


@dataclass(frozen=True)
class MatchableText:
    """A text prepared once for many answer lookups (a corpus chunk is checked against every question)."""

    squashed: str
    tokens: str  # match tokens joined and framed by spaces: " a b c "
    compact: str  # folded, whitespace removed, punctuation kept: only for answers that are all punctuation

    @classmethod
    def of(cls, text: str) -> "MatchableText":
        folded = fold(text)
        return cls(_NOT_WORD.sub("", folded), f" {' '.join(_tokens_of_folded(folded))} ", "".join(folded.split()))


class AnswerMatcher:
    """Whether a text contains one answer, insensitive to case, width, whitespace and punctuation.

    The answer matches where its tokens occur in a row among the text's tokens, or where its squashed form
    occurs in the text's squashed form without starting or ending inside a longer number (answer "5" does
    not match "15", "1.5" or "5,000"), unless letters other than digits make up most of it (more than
    `NUMBER_ANSWER_MAX_LETTERS`: "2 Lockout/tagout" matches "2.2 Lockout/tagout"). An answer of at most
    `SHORT_WORD_ANSWER` Latin letters matches whole words only ("on" does not match "button"). Chinese
    numerals ("五") are not equated with digits.
    """

    def __init__(self, answer: str):
        self.answer = answer
        self._squashed = squash(answer)
        latin_only = bool(self._squashed) and _LATIN_WORD.fullmatch(self._squashed) is not None
        self._word = latin_only and len(self._squashed) <= SHORT_WORD_ANSWER
        self._tokens = f" {' '.join(match_tokens(answer))} "
        # An answer of punctuation or symbols only ("+", "—") squashes to nothing; compare folded text instead.
        self._raw = "" if self._squashed else "".join(fold(answer).split())
        self._numbers_strict = sum(not c.isdigit() for c in self._squashed) <= NUMBER_ANSWER_MAX_LETTERS

    def found_in(self, text: MatchableText | str) -> bool:
        if isinstance(text, str):
            text = MatchableText.of(text)
        if self._raw:
            return self._raw in text.compact
        if self._tokens in text.tokens:
            return True
        # Squashing joins neighbouring numbers ("in 2021, 5 units" -> "20215units"), which is why the token
        # match above comes first: it is what finds "5" there.
        if self._word:
            return False
        if not self._numbers_strict:
            return self._squashed in text.squashed
        return _occurs_outside_numbers(self._squashed, text.squashed)


def contains_answer(text: str, answer: str) -> bool:
    """Whether `text` contains `answer` under the rules of `AnswerMatcher`."""
    return AnswerMatcher(answer).found_in(text)


def _occurs_outside_numbers(needle: str, haystack: str) -> bool:
    """Whether `needle` occurs in `haystack` at a place that does not cut a number in two."""
    first_digit, last_digit = needle[0].isdigit(), needle[-1].isdigit()
    start = haystack.find(needle)
    while start >= 0:
        end = start + len(needle)
        cuts_before = first_digit and start > 0 and haystack[start - 1].isdigit()
        cuts_after = last_digit and end < len(haystack) and haystack[end].isdigit()
        if not (cuts_before or cuts_after):
            return True
        start = haystack.find(needle, start + 1)
    return False
