import pytest

from clara_pipeline.datasets import encode_jsonl, read_jsonl, write_jsonl


def test_rows_are_written_in_a_fixed_key_order_as_utf8_and_read_back(tmp_path):
    row_a = {"source": "raw/a.md", "pos_index": [1], "docs": ["温度", "pump"], "answer": "二", "question": "几？",
             "lang": "zh"}
    row_b = dict(reversed(list(row_a.items())))  # same row, other insertion order
    assert encode_jsonl([row_a]) == encode_jsonl([row_b])
    line = encode_jsonl([row_a]).decode("utf-8")
    assert line == ('{"question": "几？", "answer": "二", "docs": ["温度", "pump"], "pos_index": [1], "lang": "zh", '
                    '"source": "raw/a.md"}\n')
    written = write_jsonl(tmp_path / "out" / "rows.jsonl", [row_a, row_b])
    assert written.rows == 2 and written.bytes == len((tmp_path / "out" / "rows.jsonl").read_bytes())
    assert read_jsonl(written.path) == [row_a, row_a]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["rows.jsonl"]  # no temporary file left


def test_no_rows_is_an_empty_file_and_bad_values_are_refused(tmp_path):
    assert write_jsonl(tmp_path / "empty.jsonl", []).bytes == 0
    with pytest.raises(ValueError):
        encode_jsonl([{"score": float("nan")}])
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:3: expected a JSON object, got list"):
        read_jsonl(path)
