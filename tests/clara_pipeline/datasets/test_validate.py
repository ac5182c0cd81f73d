import json
import shutil
from pathlib import Path

import pytest

from clara_pipeline.datasets import PROBLEM_KINDS, count_problem_kinds, find_problems, validate_rows

OFFICIAL_SAMPLE = Path(__file__).resolve().parents[2] / "clara_model" / "data" / "official_stage1_sample_head200.jsonl"


def good_row(i):
    docs = [f"Document {j} of row {i} describes the valve block and its maintenance." for j in range(5)]
    return {"question": f"What does row {i} ask?", "docs": docs, "answer": f"answer {i}", "pos_index": [i % 5],
            "chunk_id": f"c{i}", "source": "/srv/raw_data/manual.pdf"}  # a path in an extra field is fine


def write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def broken(row, case):
    row = json.loads(json.dumps(row))
    if case == "pos_index_out_of_range":
        row["pos_index"] = [5]
    elif case == "pos_index_empty":
        row["pos_index"] = []
    elif case == "pos_index_missing":
        del row["pos_index"]
    elif case == "short_docs":
        row["docs"] = row["docs"][:4]
        row["pos_index"] = [0]
    elif case == "duplicate_docs":
        row["docs"][3] = "  " + row["docs"][1].replace(" ", "  ")
    elif case == "raw_marker":
        row["docs"][2] += " [IMAGE_REF: img-0123456789abcdef]"
    elif case == "image_path":
        row["docs"][4] += " See ./example/extracted_assets/manual_img_3.png for the wiring."
    elif case == "empty_answer":
        row["answer"] = "  "
    elif case == "empty_question":
        row["question"] = ""
    elif case == "empty_doc":
        row["docs"][0] = ""
    elif case == "wrong_type":
        row["question"] = ["a list is not a stage-2 question"]
    return row


@pytest.mark.parametrize("case, kind, reason", [
    ("pos_index_out_of_range", "pos_index", "pos_index 5 is out of range for 5 docs"),
    ("pos_index_empty", "pos_index", "pos_index is empty"),
    ("pos_index_missing", "pos_index", "pos_index is missing"),
    ("short_docs", "doc_count", "4 documents, expected exactly 5"),
    ("duplicate_docs", "duplicate_doc", "docs[3] repeats docs[1]"),
    ("raw_marker", "image_marker", "docs[2] holds a raw image marker"),
    ("image_path", "file_path", "docs[4] holds a file path: './example/extracted_assets/manual_img_3.png'"),
    ("empty_answer", "empty_text", "answer is empty"),
    ("empty_question", "empty_text", "question is empty"),
    ("empty_doc", "empty_text", "docs[0] is empty"),
    ("wrong_type", "schema", "question must be a string, got list"),
])
def test_each_hand_broken_row_is_reported_with_file_line_and_kind(tmp_path, case, kind, reason):
    rows = [good_row(i) for i in range(6)]
    rows[3] = broken(rows[3], case)
    path = write(tmp_path / "instruct.jsonl", rows)
    problems = find_problems(path, "instruct", n_docs=5)
    assert [(p.where, p.kind) for p in problems] == [(f"{path}:4", kind)]
    assert validate_rows(path, "instruct", n_docs=5)[0].startswith(f"{path}:4: {reason}")
    assert count_problem_kinds(problems) == {k: int(k == kind) for k in PROBLEM_KINDS}


def test_invalid_json_and_bad_utf8_lines_are_reported_and_the_rest_still_checked(tmp_path):
    path = tmp_path / "e2e.jsonl"
    lines = [json.dumps(good_row(0)), '{"question": "cut off', "", json.dumps(broken(good_row(1), "raw_marker"))]
    path.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe not text\n")
    problems = validate_rows(path, "e2e", n_docs=5)
    assert problems[0].startswith(f"{path}:2: invalid JSON (Unterminated string")
    assert problems[1].startswith(f"{path}:4: docs[2] holds a raw image marker")
    assert problems[2].startswith(f"{path}:5: not UTF-8")
    assert len(problems) == 3


def test_the_official_stage_1_sample_passes(tmp_path):
    assert validate_rows(OFFICIAL_SAMPLE, "pretrain") == []
    assert validate_rows(OFFICIAL_SAMPLE, "pretrain", n_docs=1) == []
    copy = shutil.copy(OFFICIAL_SAMPLE, tmp_path / "sample.jsonl")
    assert validate_rows(copy, "instruct") != []  # the same rows are not stage-2 rows: the check discriminates


def test_pretrain_rules(tmp_path):
    rows = [
        {"data_type": "qa", "question": ["q1", "q2"], "answers": ["a1", "a2"], "docs": ["a document"]},
        {"data_type": "paraphrase", "question": [], "answers": ["a paraphrase"], "docs": ["a document"]},
        {"data_type": "paraphrase", "question": [], "answers": [], "docs": ["a document"]},
        {"data_type": "qa", "question": ["q1"], "answers": ["a1", "a2"], "docs": ["a document"]},
        {"data_type": "qa", "question": ["q1"], "answers": ["a1"], "docs": ["figure at /data/art/images/ab/x.png"]},
    ]
    problems = find_problems(rows, "pretrain", name="pretrain.jsonl")
    assert [(p.where, p.kind) for p in problems] == [
        ("pretrain.jsonl:3", "empty_text"), ("pretrain.jsonl:4", "schema"), ("pretrain.jsonl:5", "file_path")]
    assert str(problems[1]) == "pretrain.jsonl:4: question has 1 entries but answers has 2"


def test_forbidden_roots_held_out_questions_and_empty_files(tmp_path):
    row = good_row(0)
    row["docs"][1] = "Stored under /work/artifacts/documents/manual-abc/enriched.json"
    problems = find_problems([row], "e2e", forbidden_paths=["/work/artifacts"])
    assert [p.kind for p in problems] == ["file_path"]
    held = find_problems([good_row(0)], "e2e", held_out_questions=["what does ROW 0 ask"])
    assert [p.kind for p in held] == ["held_out_question"]
    empty = write(tmp_path / "empty.jsonl", [])
    assert validate_rows(empty, "e2e") == [f"{empty}: no rows"]
    with pytest.raises(FileNotFoundError):
        find_problems(tmp_path / "missing.jsonl", "e2e")
