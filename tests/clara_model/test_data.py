import json
import re

import pytest

from clara_model.config import Stage
from clara_model.data import (
    DataError,
    PretrainRow,
    QuestionRow,
    RowKind,
    read_rows,
    validate_data_main,
    validate_file,
)
from tests.clara_model.conftest import FORK_E2E, FORK_INSTRUCT, FORK_PRETRAIN, FULL_OFFICIAL_SAMPLE, OFFICIAL_SAMPLE


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("path", "stage", "rows"),
    [(OFFICIAL_SAMPLE, "pretrain", 200), (FORK_PRETRAIN, "pretrain", 10), (FORK_INSTRUCT, "instruct", 10),
     (FORK_E2E, "e2e", 10), (FORK_E2E, "instruct", 10)],
)
def test_files_in_the_wild_are_accepted(path, stage, rows, capsys):
    assert validate_data_main(str(path), stage) == 0
    out = capsys.readouterr().out
    assert f"{rows} rows OK for stage {stage}" in out


@pytest.mark.skipif(not FULL_OFFICIAL_SAMPLE.exists(), reason="the full 1000-row sample lives outside the repo")
def test_the_full_official_sample_is_accepted(capsys):
    assert validate_data_main(str(FULL_OFFICIAL_SAMPLE), "pretrain") == 0
    assert "1000 rows OK" in capsys.readouterr().out


def test_official_sample_reads_as_qa_rows():
    rows = read_rows(OFFICIAL_SAMPLE, Stage.PRETRAIN)
    assert all(isinstance(r, PretrainRow) and r.kind is RowKind.QA for r in rows)
    first = rows[0]
    assert first.questions[0].startswith("Who is the editor-in-chief of Thrasher")
    assert first.answers[0] == "Jake Phelps"
    assert len(first.questions) == len(first.answers) == 9
    assert first.doc.startswith("This a document about Flip Skateboards.")


def test_fork_formats_map_to_question_rows():
    instruct = read_rows(FORK_INSTRUCT, Stage.INSTRUCT)[0]
    assert instruct.question == "Explain the difference between classification and regression in machine learning."
    assert instruct.answer.startswith("Classification predicts discrete categories")
    e2e = read_rows(FORK_E2E, Stage.E2E)[0]
    assert e2e.answer.startswith("To implement gradient descent") and e2e.gold_answers == (e2e.answer,)
    assert e2e.pos_index == () and len(e2e.docs) == 1


def test_qa_and_paraphrase_rows_mix_in_one_file(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        {"data_type": "qa", "question": ["q1", "q2"], "answers": ["a1", "a2"], "docs": ["d"]},
        {"data_type": "paraphrase", "question": [], "answers": ["p"], "docs": ["d2"], "source": "x.pdf"},
        {"question": ["q"], "answers": ["a"], "docs": ["d3"]},  # data_type defaults to qa
    ])
    rows = read_rows(path, "pretrain")
    assert [r.kind for r in rows] == [RowKind.QA, RowKind.PARAPHRASE, RowKind.QA]
    assert rows[1] == PretrainRow(kind=RowKind.PARAPHRASE, doc="d2", questions=(), answers=("p",))


def test_answer_aliases_and_target_order(tmp_path):
    path = write_jsonl(tmp_path / "e2e.jsonl", [
        {"question": "q", "docs": ["a", "b"], "answer": "long answer", "gold_answer": "short", "pos_index": [1]},
        {"question": "q", "context": ["a"], "golden_answers": ["x", "y", "x"]},
        {"question": "q", "docs": ["a"], "gold_answer": "g"},
    ])
    rows = read_rows(path, "e2e")
    assert rows[0] == QuestionRow("q", ("a", "b"), "long answer", ("long answer", "short"), (1,))
    assert rows[1].answer == "x" and rows[1].gold_answers == ("x", "y")
    assert rows[2].answer == "g"


BROKEN = [
    ('{"question": ["q"], "answers": ["a"], "docs": ["d"]', "invalid JSON"),
    ('["not", "an", "object"]', "expected a JSON object"),
    ({"data_type": "summary", "question": ["q"], "answers": ["a"], "docs": ["d"]}, "data_type 'summary'"),
    ({"question": ["q1", "q2"], "answers": ["a1"], "docs": ["d"]}, "question has 2 entries but answers has 1"),
    ({"question": ["q"], "answers": ["a"], "docs": ["d", "e"]}, "exactly 1 document"),
    ({"question": ["q"], "answers": ["a"]}, "no documents"),
    ({"question": ["q"], "answers": ["a"], "docs": [""]}, r"docs\[0\] is empty"),
    ({"data_type": "paraphrase", "question": ["q"], "answers": ["p"], "docs": ["d"]}, "carry no question"),
    ({"question": "q", "answers": ["a"], "docs": ["d"]}, "question must be a list"),
]


@pytest.mark.parametrize(("line", "reason"), BROKEN)
def test_broken_pretrain_lines_are_rejected_with_file_and_line(tmp_path, line, reason, capsys):
    good = {"data_type": "qa", "question": ["q"], "answers": ["a"], "docs": ["d"]}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, good, line, good])
    assert validate_data_main(str(path), "pretrain") == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}:3: ")
    assert re.search(reason, out[0]), out[0]
    with pytest.raises(DataError) as error:
        read_rows(path, "pretrain")
    assert error.value.problems == [out[0]]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"question": "q", "docs": ["a"], "answer": "x", "pos_index": [1]}, "pos_index 1 is out of range for 1 docs"),
        ({"question": "q", "docs": ["a", "b"], "answer": "x", "pos_index": [0, 0]}, "repeats"),
        ({"question": "q", "docs": ["a"], "answer": "x", "pos_index": "0"}, "list of integers"),
        ({"question": "q", "docs": ["a"]}, "no answer"),
        ({"question": "", "docs": ["a"], "answer": "x"}, "question is empty"),
        ({"data_type": "paraphrase", "question": "q", "docs": ["a"], "answer": "x"}, "pretrain stage"),
        ({"question": "q", "docs": "a", "answer": "x"}, "docs must be a list"),
    ],
)
def test_broken_question_rows_are_rejected(tmp_path, row, reason, capsys):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "docs": ["a"], "answer": "x"}, row])
    assert validate_data_main(str(path), "e2e") == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{path}:2: ") and reason in first


def test_every_bad_line_is_reported_and_blank_lines_are_skipped(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", ["{", "", {"question": ["q"], "answers": ["a"], "docs": ["d"]}, "[]"])
    report = validate_file(path, "pretrain")
    assert [e.split(": ")[0] for e in report.errors] == [f"{path}:1", f"{path}:4"]
    assert report.rows == 1 and not report.ok


def test_e2e_warnings_do_not_fail_validation(tmp_path, capsys):
    path = write_jsonl(tmp_path / "e2e.jsonl", [{"question": "q", "docs": ["a", "b"], "answer": "x"}])
    assert validate_data_main(str(path), "e2e") == 0
    out = capsys.readouterr().out
    assert f"{path}:1: warning: 2 candidates < top-k 5" in out and "no pos_index" in out


def test_missing_and_empty_files_fail(tmp_path, capsys):
    assert validate_data_main(str(tmp_path / "nope.jsonl"), "pretrain") == 1
    assert "no such file" in capsys.readouterr().out
    (tmp_path / "empty.jsonl").write_text("\n")
    assert validate_data_main(str(tmp_path / "empty.jsonl"), "pretrain") == 1
    assert "no rows" in capsys.readouterr().out


def test_unreadable_inputs_fail_with_a_message(tmp_path, capsys):
    assert validate_data_main(str(tmp_path), "pretrain") == 1  # a directory
    (tmp_path / "latin1.jsonl").write_bytes(b'{"question": "caf\xe9"}\n')
    assert validate_data_main(str(tmp_path / "latin1.jsonl"), "e2e") == 1
    assert "not UTF-8" in capsys.readouterr().out
    assert validate_data_main(str(tmp_path / "latin1.jsonl"), "stage9") == 1
    assert "stages are pretrain, instruct, e2e" in capsys.readouterr().out


def test_validate_data_caps_the_errors_it_prints_and_counts_in_plain_words(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("".join(f"line {i} of a README, not JSON\n" for i in range(262)), encoding="utf-8")
    assert validate_data_main(str(readme), "pretrain") == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[0] for line in out[:20]] == [f"{readme}:{i}" for i in range(1, 21)]
    assert out[20:] == [f"{readme}: ... and 242 more errors", f"{readme}: 262 errors in 262 rows (pretrain)"]

    good = {"data_type": "qa", "question": ["q"], "answers": ["a"], "docs": ["d"]}
    one = write_jsonl(tmp_path / "one.jsonl", [good, "not json"])
    assert validate_data_main(str(one), "pretrain") == 1
    assert capsys.readouterr().out.splitlines()[-1] == f"{one}: 1 error in 2 rows (pretrain)"
    single = write_jsonl(tmp_path / "single.jsonl", ["not json"])
    assert validate_data_main(str(single), "pretrain") == 1
    assert capsys.readouterr().out.splitlines()[-1] == f"{single}: 1 error in 1 row (pretrain)"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert validate_data_main(str(empty), "pretrain") == 1
    assert capsys.readouterr().out.splitlines() == [f"{empty}: no rows", f"{empty}: 1 error in 0 rows (pretrain)"]
