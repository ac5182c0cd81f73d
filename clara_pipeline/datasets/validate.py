"""The dataset validator behind the asset checks: every problem of a JSONL file, as `file:line: reason`.

A row passes when the trainer's own reader accepts it (`clara_model.data.parse_row`, so the datasets are
checked by exactly the rules training applies) and none of the rules below finds anything. Each problem has a
kind, so a check can show observed against expected (zero) per kind:

| kind | what is wrong |
|---|---|
| invalid_json | the line is not UTF-8 JSON |
| schema | the trainer's reader rejects the row (wrong types, missing fields, ...) |
| pos_index | stage 2/3: pos_index missing, empty, not integers, repeated, or out of range |
| doc_count | not exactly `n_docs` documents (when `n_docs` is given) |
| duplicate_doc | two documents of one row are the same text (whitespace aside) |
| empty_text | a blank question, answer or document, or an empty list of them |
| image_marker | a raw `[IMAGE_REF: ...]` marker or image id left in a text |
| file_path | a path to an image file, into the artifact store, or under a `forbidden_paths` root, in a text |
| held_out_question | a question of the held-out split in a training file |
| no_rows | the file holds no rows at all |

Texts are the questions, answers (every alias the trainer reads) and documents; extra fields such as
`source`, which is a path on purpose, are not texts. The path rule looks for what this pipeline could leak
(figure files and store paths, as the reference did, W-1); it does not flag a path a document mentions
as content (`/etc/hosts` in an IT manual) unless the caller names its root.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..ingest.model import IMAGE_PATH_RE, IMAGE_REFERENCE_RE, URL_RE
from .split import question_key

if TYPE_CHECKING:
    from clara_model.config import Stage

PROBLEM_KINDS = ("invalid_json", "schema", "pos_index", "doc_count", "duplicate_doc", "empty_text", "image_marker",
                 "file_path", "held_out_question", "no_rows")
# Kinds the trainer's reader rejects too: a row with one of these is not also reported as a schema problem.
_TRAINER_REJECTS = frozenset({"pos_index", "doc_count", "empty_text"})

_DOC_KEYS = ("docs", "context", "content")
_ANSWER_KEYS = ("answer", "gold_answer", "output")
_ANSWER_LIST_KEYS = ("answers", "golden_answers")


@dataclass(frozen=True)
class Problem:
    """One problem: where (`file:line`, or `file` for the whole file), its kind, and the reason."""

    where: str
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def find_problems(source: str | Path | Iterable[Mapping[str, Any]], stage: Stage | str, n_docs: int | None = None,
                  *, held_out_questions: Iterable[str] = (), forbidden_paths: Sequence[str | Path] = (),
                  name: str = "<rows>") -> list[Problem]:
    """Every problem of a JSONL file (a path) or of rows already in memory (named `name`, numbered from 1).

    Args:
        n_docs: the exact number of documents every row must hold (k for stage 2, N for stage 3).
        held_out_questions: questions that must not appear in this (training) file.
        forbidden_paths: roots (the artifact store, the raw documents folder) no text may mention.

    Raises:
        FileNotFoundError: when `source` is a path that does not exist.
        ValueError: an unknown stage, or `n_docs` < 1.
    """
    # Imported here, not at the top: the `clara_model` package imports torch and peft when first imported
    # (about 5 s), and importing this module should cost nothing.
    from clara_model.config import Stage
    from clara_model.data import RowError, parse_row

    stage = Stage(stage)

    def trainer_error(obj: Any) -> str | None:
        try:
            parse_row(obj, stage)
        except RowError as error:
            return str(error)
        return None

    if n_docs is not None and n_docs < 1:
        raise ValueError(f"n_docs must be >= 1, got {n_docs}")
    held_out = {question_key(q) for q in held_out_questions}
    forbidden = [str(p) for p in forbidden_paths if str(p).strip()]
    label = str(source) if isinstance(source, (str, Path)) else name
    problems: list[Problem] = []
    rows = 0
    for line_no, obj in _numbered_rows(source):
        where = f"{label}:{line_no}"
        if isinstance(obj, Problem):
            problems.append(Problem(where, obj.kind, obj.reason))
            continue
        rows += 1
        problems.extend(Problem(where, kind, reason)
                        for kind, reason in _row_problems(obj, stage is Stage.PRETRAIN, n_docs, held_out, forbidden,
                                                          trainer_error))
    if rows == 0 and not problems:
        problems.append(Problem(label, "no_rows", "no rows"))
    return problems


def validate_rows(source: str | Path | Iterable[Mapping[str, Any]], stage: Stage | str, n_docs: int | None = None,
                  **options: Any) -> list[str]:
    """`find_problems` as `file:line: reason` strings; empty when the file is fit for training."""
    return [str(problem) for problem in find_problems(source, stage, n_docs, **options)]


def count_problem_kinds(problems: Iterable[Problem]) -> dict[str, int]:
    """Problems per kind, every kind of `PROBLEM_KINDS` present (0 when none): observed, for check metadata."""
    counts = Counter(problem.kind for problem in problems)
    return {kind: counts[kind] for kind in PROBLEM_KINDS}


# -- reading ---------------------------------------------------------------------------------------------


def _numbered_rows(source: str | Path | Iterable[Mapping[str, Any]]) -> Iterator[tuple[int, Any]]:
    """(line number, decoded object or an invalid_json Problem without location) for every non-blank line."""
    if not isinstance(source, (str, Path)):
        yield from enumerate(source, start=1)
        return
    data = Path(source).read_bytes()
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            yield line_no, Problem("", "invalid_json", f"not UTF-8 ({error.reason} at byte {error.start})")
            continue
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except json.JSONDecodeError as error:
            yield line_no, Problem("", "invalid_json", f"invalid JSON ({error.msg} at column {error.colno})")


# -- the rules -------------------------------------------------------------------------------------------


def _row_problems(obj: Any, pretrain: bool, n_docs: int | None, held_out: set[str], forbidden: list[str],
                  trainer_error: Callable[[Any], str | None]) -> list[tuple[str, str]]:
    """(kind, reason) of every problem of one decoded row; `trainer_error` is the trainer reader's verdict."""
    found: list[tuple[str, str]] = []
    if isinstance(obj, Mapping):
        docs = next((obj[key] for key in _DOC_KEYS if key in obj), None)
        if isinstance(docs, list):
            found += _doc_problems(docs, n_docs)
        if not pretrain:
            found += _pos_index_problems(obj.get("pos_index"), docs)
        found += _empty_problems(obj)
        for field_name, text in _texts(obj):
            found += _leak_problems(field_name, text, forbidden)
        for question in _questions(obj):
            if question_key(question) in held_out:
                found.append(("held_out_question", f"held-out question in a training file: {question[:80]!r}"))
    error = trainer_error(obj)
    if error is not None and not any(kind in _TRAINER_REJECTS for kind, _ in found):
        found.append(("schema", error))
    return found


def _doc_problems(docs: list[Any], n_docs: int | None) -> list[tuple[str, str]]:
    found = []
    if n_docs is not None and len(docs) != n_docs:
        found.append(("doc_count", f"{len(docs)} documents, expected exactly {n_docs}"))
    first: dict[str, int] = {}
    for i, doc in enumerate(docs):
        if not isinstance(doc, str) or not doc.strip():
            continue  # a non-string is the trainer's to reject; a blank one is empty_text's
        key = " ".join(doc.split())
        if key in first:
            found.append(("duplicate_doc", f"docs[{i}] repeats docs[{first[key]}]"))
        else:
            first[key] = i
    return found


def _pos_index_problems(pos_index: Any, docs: Any) -> list[tuple[str, str]]:
    if pos_index is None:
        return [("pos_index", "pos_index is missing")]
    if not isinstance(pos_index, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in pos_index):
        return [("pos_index", f"pos_index must be a list of integers, got {pos_index!r}")]
    if not pos_index:
        return [("pos_index", "pos_index is empty")]
    found = []
    n = len(docs) if isinstance(docs, list) else 0
    for i in pos_index:
        if not 0 <= i < n:
            found.append(("pos_index", f"pos_index {i} is out of range for {n} docs"))
    if len(set(pos_index)) != len(pos_index):
        found.append(("pos_index", f"pos_index {pos_index} repeats an index"))
    return found


def _empty_problems(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Blank texts and empty lists, in the fields the trainer reads for this stage."""
    paraphrase = obj.get("data_type") == "paraphrase"
    found = []
    for key, value in obj.items():
        if key == "question" and paraphrase:
            continue  # a paraphrase row has no question ([] or "" or absent); the trainer checks the rest
        if key in ("question", *_ANSWER_KEYS, *_ANSWER_LIST_KEYS, *_DOC_KEYS, "instruction"):
            if isinstance(value, str) and not value.strip():
                found.append(("empty_text", f"{key} is empty"))
            elif isinstance(value, list):
                if not value:
                    found.append(("empty_text", f"{key} is empty"))
                found += [("empty_text", f"{key}[{i}] is empty") for i, item in enumerate(value)
                          if isinstance(item, str) and not item.strip()]
    return found


def _texts(obj: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(field name, text) for every question, answer and document string of a row."""
    for key in ("question", "instruction", "input", *_ANSWER_KEYS, *_ANSWER_LIST_KEYS, *_DOC_KEYS):
        value = obj.get(key)
        if isinstance(value, str):
            yield key, value
        elif isinstance(value, list):
            yield from ((f"{key}[{i}]", item) for i, item in enumerate(value) if isinstance(item, str))


def _questions(obj: Mapping[str, Any]) -> list[str]:
    value = obj.get("question")
    if isinstance(value, str):
        return [value]
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _leak_problems(field_name: str, text: str, forbidden: list[str]) -> list[tuple[str, str]]:
    found = []
    lowered = text.lower()  # substring tests first: a case-insensitive regex search is 20x slower
    marker = IMAGE_REFERENCE_RE.search(text) if ("image_ref" in lowered or "img-" in lowered) else None
    if marker:
        found.append(("image_marker", f"{field_name} holds a raw image marker or id: {_excerpt(text, marker)!r}"))
    path = IMAGE_PATH_RE.search(URL_RE.sub(" ", text)) if ("/" in text or "\\" in text) else None
    if path:
        found.append(("file_path", f"{field_name} holds a file path: {path.group(0)[:80]!r}"))
    for root in forbidden:
        if root in text:
            found.append(("file_path", f"{field_name} mentions {root!r}"))
            break
    return found


def _excerpt(text: str, match: re.Match) -> str:
    return text[max(0, match.start() - 10):match.end() + 30]
