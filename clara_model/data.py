"""Training data: JSONL readers for the three stage formats, and the validator behind `clara validate-data`.

Accepted rows (one JSON object per line; extra fields such as `source`, `chunk_id`, `lang` are ignored):

| stage | fields |
|---|---|
| pretrain, QA | `{"data_type": "qa", "question": [q1..qn], "answers": [a1..an], "docs": [doc]}` |
| pretrain, paraphrase | `{"data_type": "paraphrase", "question": [], "answers": [paraphrase], "docs": [doc]}` |
| instruct | `{"question": q, "docs": [k docs], "answer": a, "pos_index": [i..]}` |
| e2e | `{"question": q, "docs": [N candidates], "answer": a, "pos_index": [i..]}` |

As in the original loader: `data_type` defaults to "qa"; documents come from the first of `docs`, `context`,
`content`; the answer is the first of `answer`, `gold_answer` (the fork's key), `answers[0]`, `golden_answers[0]`;
`pos_index` defaults to []. Every alias found is kept as a gold answer for evaluation. The fork's instruction
rows (`instruction`, `input`, `output`) are read as question = instruction (+ input), answer = output. QA and
paraphrase rows may be mixed in one file (the original crashed on that, reference B10).

Everything else is rejected with `file:line: reason`.
"""

from __future__ import annotations

import enum
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clara_model.config import Stage

MAX_ERRORS_SHOWN = 20  # a wrong file (a README, another stage's data) has an error on every line
MAX_WARNINGS_SHOWN = 20  # warnings can be one per row
DEFAULT_TOP_K = 5  # generation_top_k of stages 2 and 3; fewer e2e candidates than this is reported


class RowKind(str, enum.Enum):
    QA = "qa"
    PARAPHRASE = "paraphrase"


@dataclass(frozen=True)
class PretrainRow:
    """One stage-1 row: a document and its QA pairs, or a document and its paraphrase (`answers[0]`)."""

    kind: RowKind
    doc: str
    questions: tuple[str, ...]
    answers: tuple[str, ...]


@dataclass(frozen=True)
class QuestionRow:
    """One stage-2 or stage-3 row: a question, its documents (k for stage 2, N candidates for stage 3), the
    answer to train on, every gold alias, and the indices of the documents that hold the answer."""

    question: str
    docs: tuple[str, ...]
    answer: str
    gold_answers: tuple[str, ...]
    pos_index: tuple[int, ...] = ()


Row = PretrainRow | QuestionRow


class RowError(ValueError):
    """A row that cannot be used; the message is the reason, without the location."""


class DataError(ValueError):
    """A data file with bad rows; `problems` holds every one as `file:line: reason`."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = "\n".join(self.problems[:20])
        more = f"\n... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{len(self.problems)} bad rows:\n{shown}{more}")


def parse_row(obj: Any, stage: Stage) -> Row:
    """Return the row `obj` (a decoded JSON line) means for `stage`.

    Raises:
        RowError: with the reason when the row does not fit the stage's format.
    """
    if not isinstance(obj, Mapping):
        raise RowError(f"expected a JSON object, got {type(obj).__name__}")
    if stage is Stage.PRETRAIN:
        return _parse_pretrain(obj)
    return _parse_question_row(obj)


def iter_rows(path: str | Path, stage: Stage | str) -> Iterator[tuple[int, Row | RowError]]:
    """Yield (line number, row or the error) for every non-blank line of a JSONL file."""
    stage = Stage(stage)
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as error:
                yield line_no, RowError(f"invalid JSON ({error.msg} at column {error.colno})")
                continue
            try:
                yield line_no, parse_row(obj, stage)
            except RowError as error:
                yield line_no, error


def read_rows(path: str | Path, stage: Stage | str) -> list[Row]:
    """Return every row of a JSONL file for `stage`.

    Raises:
        DataError: listing every bad line as `file:line: reason`.
        FileNotFoundError: when the file does not exist.
    """
    rows, problems = [], []
    for line_no, item in iter_rows(path, stage):
        if isinstance(item, RowError):
            problems.append(f"{path}:{line_no}: {item}")
        else:
            rows.append(item)
    if problems:
        raise DataError(problems)
    return rows


@dataclass
class ValidationReport:
    """What `validate_file` found: counts of good rows, and every problem as `file:line: reason`."""

    path: str
    stage: Stage
    rows: int = 0
    counts: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and self.rows > 0


def validate_file(path: str | Path, stage: Stage | str, *, top_k: int = DEFAULT_TOP_K) -> ValidationReport:
    """Check every line of a JSONL file against `stage`'s format and count what it holds.

    Warnings (not errors): e2e rows with fewer than `top_k` candidates (they cannot train at that k) and e2e rows
    without `pos_index` (no retrieval metrics or InfoNCE for them).
    """
    report = ValidationReport(path=str(path), stage=Stage(stage))
    for line_no, item in iter_rows(path, report.stage):
        where = f"{path}:{line_no}"
        if isinstance(item, RowError):
            report.errors.append(f"{where}: {item}")
            continue
        report.rows += 1
        if isinstance(item, PretrainRow):
            report.counts[item.kind.value] += 1
            report.counts["qa_pairs"] += len(item.questions) if item.kind is RowKind.QA else 0
        else:
            report.counts["docs"] += len(item.docs)
            report.counts["with_pos_index"] += bool(item.pos_index)
            if report.stage is Stage.E2E and len(item.docs) < top_k:
                report.warnings.append(f"{where}: warning: {len(item.docs)} candidates < top-k {top_k}")
            if report.stage is Stage.E2E and not item.pos_index:
                report.warnings.append(f"{where}: warning: no pos_index (no retrieval metrics for this row)")
    if report.rows == 0 and not report.errors:
        report.errors.append(f"{path}: no rows")
    return report


def validate_data_main(path: str, stage: str) -> int:
    """CLI body of `clara validate-data FILE --stage {pretrain,instruct,e2e}`: print, return the exit code.

    Prints the counts on success, or every bad line as `file:line: reason`; returns 0 when the file is valid
    and 1 otherwise (also for a missing file).
    """
    try:
        report = validate_file(path, stage)
    except ValueError as error:  # an unknown stage name (UnicodeDecodeError is a ValueError too)
        if isinstance(error, UnicodeDecodeError):
            print(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})")
        else:
            print(f"{path}: {error}; stages are {', '.join(s.value for s in Stage)}")
        return 1
    except FileNotFoundError:
        print(f"{path}: no such file")
        return 1
    except OSError as error:
        print(f"{path}: {error.strerror or error}")
        return 1
    for line in report.errors[:MAX_ERRORS_SHOWN]:
        print(line)
    if len(report.errors) > MAX_ERRORS_SHOWN:
        print(f"{path}: ... and {_count(len(report.errors) - MAX_ERRORS_SHOWN, 'more error')}")
    for line in report.warnings[:MAX_WARNINGS_SHOWN]:
        print(line)
    if len(report.warnings) > MAX_WARNINGS_SHOWN:
        print(f"{path}: ... and {_count(len(report.warnings) - MAX_WARNINGS_SHOWN, 'more warning')}")
    if not report.ok:
        bad_rows = len(report.errors) - (report.rows == 0 and report.errors[-1] == f"{path}: no rows")
        print(f"{path}: {_count(len(report.errors), 'error')} in {_count(report.rows + bad_rows, 'row')} "
              f"({report.stage.value})")
        return 1
    counts = ", ".join(f"{key} {value}" for key, value in sorted(report.counts.items()))
    print(f"{path}: {report.rows} rows OK for stage {report.stage.value} ({counts})")
    return 0


def _count(n: int, noun: str) -> str:
    """`1 error`, `2 errors`, `0 rows`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# -- row parsing ---------------------------------------------------------------------------------------------


def _parse_pretrain(obj: Mapping[str, Any]) -> PretrainRow:
    data_type = obj.get("data_type", RowKind.QA.value)
    try:
        kind = RowKind(data_type)
    except ValueError:
        raise RowError(f"data_type {data_type!r} is not a pretrain type (qa, paraphrase)") from None
    docs = _docs(obj)
    if len(docs) != 1:
        raise RowError(f"pretrain rows hold exactly 1 document in docs, got {len(docs)}")
    answers = _string_list(obj, "answers")
    if not answers:
        raise RowError("answers is empty")
    if kind is RowKind.PARAPHRASE:
        question = obj.get("question", [])
        if question not in ([], "", None):
            raise RowError("paraphrase rows carry no question (question must be [] or absent)")
        return PretrainRow(kind=kind, doc=docs[0], questions=(), answers=(answers[0],))
    questions = _string_list(obj, "question")
    if len(questions) != len(answers):
        raise RowError(f"question has {len(questions)} entries but answers has {len(answers)}")
    if not questions:
        raise RowError("question is empty")
    return PretrainRow(kind=kind, doc=docs[0], questions=tuple(questions), answers=tuple(answers))


def _parse_question_row(obj: Mapping[str, Any]) -> QuestionRow:
    data_type = obj.get("data_type", RowKind.QA.value)
    if data_type == RowKind.PARAPHRASE.value:
        raise RowError("paraphrase rows belong to the pretrain stage")
    if "instruction" in obj and "output" in obj:  # the fork's instruction format
        question = _string(obj, "instruction")
        extra = obj.get("input", "")
        if not isinstance(extra, str):
            raise RowError(f"input must be a string, got {type(extra).__name__}")
        question = f"{question}\n{extra}" if extra.strip() else question
        golds = [_string(obj, "output")]
    else:
        question = _string(obj, "question")
        golds = _gold_answers(obj)
    docs = _docs(obj)
    pos_index = obj.get("pos_index", [])
    if not isinstance(pos_index, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in pos_index):
        raise RowError(f"pos_index must be a list of integers, got {pos_index!r}")
    for i in pos_index:
        if not 0 <= i < len(docs):
            raise RowError(f"pos_index {i} is out of range for {len(docs)} docs")
    if len(set(pos_index)) != len(pos_index):
        raise RowError(f"pos_index {pos_index} repeats an index")
    return QuestionRow(
        question=question, docs=tuple(docs), answer=golds[0], gold_answers=tuple(golds), pos_index=tuple(pos_index)
    )


def _gold_answers(obj: Mapping[str, Any]) -> list[str]:
    """Every answer alias in training-target order: answer, gold_answer, answers..., golden_answers..."""
    golds: list[str] = []
    for key in ("answer", "gold_answer"):
        if key in obj:
            golds.append(_string(obj, key))
    for key in ("answers", "golden_answers"):
        if key in obj:
            golds.extend(_string_list(obj, key))
    golds = list(dict.fromkeys(golds))  # de-duplicated, order kept
    if not golds:
        raise RowError("no answer: expected one of answer, gold_answer, answers, golden_answers")
    return golds


def _docs(obj: Mapping[str, Any]) -> list[str]:
    for key in ("docs", "context", "content"):
        if key in obj:
            docs = _string_list(obj, key)
            if not docs:
                raise RowError(f"{key} is empty")
            return docs
    raise RowError("no documents: expected docs (or context, content)")


def _string(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise RowError(f"{key} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise RowError(f"{key} is empty")
    return value


def _string_list(obj: Mapping[str, Any], key: str) -> list[str]:
    value = obj.get(key)
    if not isinstance(value, list):
        raise RowError(f"{key} must be a list of strings, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise RowError(f"{key}[{i}] must be a string, got {type(item).__name__}")
        if not item.strip():
            raise RowError(f"{key}[{i}] is empty")
    return value
