import json
from collections import Counter

import pytest

from clara_pipeline.datasets import (
    DatasetConfig,
    NegativePicker,
    QAPair,
    build_pretrain_rows,
    build_question_rows,
    find_problems,
    split_pairs,
    write_jsonl,
)
from clara_pipeline.datasets.duplicates import jaccard, shingles
from clara_pipeline.datasets.text import contains_answer, squash

from .corpus import generated_corpus, manual_chunks, manual_pairs

CONFIG = DatasetConfig(seed=11, held_out_fraction=0.2)


@pytest.fixture(scope="module")
def corpus():
    return generated_corpus(120, seed=2)


@pytest.fixture(scope="module")
def picker(corpus):
    chunks, _, _ = corpus
    return NegativePicker(chunks, config=CONFIG)


@pytest.fixture(scope="module")
def e2e(corpus, picker):
    chunks, pairs, _ = corpus
    return build_question_rows(pairs, chunks, 20, config=CONFIG, picker=picker, dataset="e2e")


def test_every_row_has_exactly_n_distinct_docs_and_pos_index_points_at_the_positive(corpus, e2e):
    chunks, pairs, _ = corpus
    text_of = {c.chunk_id: c.text for c in chunks}
    assert len(e2e.rows) > 200
    for row in e2e.rows + e2e.held_out:
        assert len(row["docs"]) == 20 and len(set(row["docs"])) == 20
        (pos,) = row["pos_index"]
        assert row["docs"][pos] == text_of[row["chunk_id"]]
        assert row["doc_chunk_ids"][pos] == row["chunk_id"]
        for i, doc in enumerate(row["docs"]):
            if i != pos:
                assert not contains_answer(doc, row["answer"])
                assert jaccard(shingles(doc), shingles(row["docs"][pos])) < CONFIG.near_duplicate_threshold
    assert find_problems(e2e.rows, "e2e", n_docs=20) == []
    assert e2e.report.rows_written == len(e2e.rows) and e2e.report.held_out_rows_written == len(e2e.held_out)
    assert e2e.report.rows_written + e2e.report.held_out_rows_written == len(pairs)


def test_positions_are_spread_not_always_first(e2e):
    positions = Counter(row["pos_index"][0] for row in e2e.rows)
    assert len(positions) >= 15  # of 20 possible
    assert max(positions.values()) < 0.15 * len(e2e.rows)


def test_a_corpus_too_small_for_k_drops_rows_and_counts_them_never_writes_them_short():
    chunks = manual_chunks()[:4]
    pairs = [p for p in manual_pairs() if p.chunk_id in {c.chunk_id for c in chunks}]
    built = build_question_rows(pairs, chunks, 5, config=DatasetConfig(held_out_fraction=0.0))
    assert built.rows == [] and built.held_out == []
    assert built.report.rows_dropped == {"not_enough_negatives": len(pairs)}
    assert built.report.rows_written == 0
    four = build_question_rows(pairs, chunks, 4, config=DatasetConfig(held_out_fraction=0.0))
    assert len(four.rows) == len(pairs) and all(len(r["docs"]) == 4 for r in four.rows)


def test_layouts_are_stable_under_the_seed_and_unmoved_by_an_unrelated_row(corpus, picker, e2e):
    chunks, pairs, _ = corpus
    again = build_question_rows(pairs, chunks, 20, config=CONFIG, picker=picker, dataset="e2e")
    assert again.rows == e2e.rows

    extra = QAPair(chunks[5].chunk_id, "fact", "Which colour is the housing of this unit?", "unpainted steel")
    more = build_question_rows([extra, *pairs], chunks, 20, config=CONFIG, picker=picker)
    by_question = {r["question"]: r for r in more.rows + more.held_out}
    for row in e2e.rows:
        assert by_question[row["question"]] == row
    assert extra.question in by_question

    reseeded = build_question_rows(pairs, chunks, 20, config=DatasetConfig(seed=12, held_out_fraction=0.2),
                                   picker=picker)
    assert [r["pos_index"] for r in reseeded.rows + reseeded.held_out] != \
           [r["pos_index"] for r in e2e.rows + e2e.held_out]


def test_held_out_questions_appear_in_no_training_file(corpus, picker, e2e):
    chunks, pairs, paraphrases = corpus
    pretrain = build_pretrain_rows(chunks, pairs, paraphrases, config=CONFIG)
    instruct = build_question_rows(pairs, chunks, 5, config=CONFIG, picker=picker, dataset="instruct")
    held_out = split_pairs(pairs, fraction=CONFIG.held_out_fraction, seed=CONFIG.seed).held_out_questions
    assert len(held_out) > 30
    held_keys = {squash(q) for q in held_out}
    trained = [q for row in pretrain.rows for q in row["question"]]
    trained += [row["question"] for built in (instruct, e2e) for row in built.rows]
    assert trained and not held_keys & {squash(q) for q in trained}
    assert {row["question"] for row in e2e.held_out} == set(held_out)
    for built, stage in ((pretrain, "pretrain"), (instruct, "instruct"), (e2e, "e2e")):
        assert find_problems(built.rows, stage, held_out_questions=held_out) == []
    leaked = find_problems(e2e.held_out, "e2e", held_out_questions=held_out)
    assert {p.kind for p in leaked} == {"held_out_question"}  # the check itself can fail


def test_pretrain_rows_hold_each_chunks_training_pairs_and_its_paraphrase(corpus):
    chunks, pairs, paraphrases = corpus
    built = build_pretrain_rows(chunks, pairs, paraphrases, config=CONFIG)
    qa_rows = [r for r in built.rows if r["data_type"] == "qa"]
    paraphrase_rows = [r for r in built.rows if r["data_type"] == "paraphrase"]
    assert len(paraphrase_rows) == len(chunks)
    assert all(r["question"] == [] and len(r["answers"]) == 1 for r in paraphrase_rows)
    train = split_pairs(pairs, fraction=CONFIG.held_out_fraction, seed=CONFIG.seed).train
    assert sum(len(r["question"]) for r in qa_rows) == len(train) == built.report.pairs_written
    chunk_text = {c.chunk_id: c.text for c in chunks}
    assert all(r["docs"] == [chunk_text[r["chunk_id"]]] for r in built.rows)
    report = built.report
    assert report.row_kinds == {"qa": len(qa_rows), "paraphrase": len(chunks)}
    assert len(qa_rows) + report.rows_dropped["qa_row_all_pairs_held_out"] == len(chunks)
    assert find_problems(built.rows, "pretrain") == []
    json.dumps(report.to_metadata())  # Dagster metadata must be JSON


def test_outputs_are_byte_identical_across_two_runs(corpus, tmp_path):
    chunks, pairs, paraphrases = corpus
    digests = []
    for run in ("a", "b"):
        files = [write_jsonl(tmp_path / run / "pretrain.jsonl",
                             build_pretrain_rows(chunks, pairs, paraphrases, config=CONFIG).rows)]
        for n in (5, 20):
            built = build_question_rows(pairs, chunks, n, config=CONFIG)
            files.append(write_jsonl(tmp_path / run / f"q{n}.jsonl", built.rows))
            files.append(write_jsonl(tmp_path / run / f"q{n}_eval.jsonl", built.held_out))
        digests.append([f.sha256 for f in files])
    assert digests[0] == digests[1]
    assert (tmp_path / "a" / "q20.jsonl").read_bytes() == (tmp_path / "b" / "q20.jsonl").read_bytes()


def test_stage_2_negatives_are_the_hardest_of_stage_3s(corpus, picker, e2e):
    chunks, pairs, _ = corpus
    instruct = build_question_rows(pairs, chunks, 5, config=CONFIG, picker=picker)
    e2e_docs = {r["question"]: set(r["doc_chunk_ids"]) for r in e2e.rows}
    assert all(set(r["doc_chunk_ids"]) <= e2e_docs[r["question"]] for r in instruct.rows)


def test_duplicates_and_unknown_chunks():
    chunks = manual_chunks()
    pairs = manual_pairs()
    repeated = [*pairs, QAPair(pairs[0].chunk_id, "fact", pairs[0].question.upper(), "24 V DC")]
    built = build_question_rows(repeated, chunks, 3, config=DatasetConfig(held_out_fraction=0.0))
    assert built.report.rows_dropped["duplicate_question"] == 1
    assert len(built.rows) == len(pairs)
    with pytest.raises(ValueError, match="1 chunk ids of the QA pairs are not in the corpus: 'missing'"):
        build_question_rows([QAPair("missing", "fact", "q?", "a")], chunks, 3)
    with pytest.raises(ValueError, match="appears twice"):
        build_pretrain_rows([*chunks, chunks[0]], [], [])
    with pytest.raises(ValueError, match="n_docs must be >= 1"):
        build_question_rows(pairs, chunks, 0)
