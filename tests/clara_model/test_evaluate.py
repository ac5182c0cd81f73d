"""Evaluation: systems scored the same way on the same rows, token counts, and the report."""

import json

import pytest
import torch

from clara_model import Stage, save_checkpoint
from clara_model.data import QuestionRow
from clara_model.config import ModelConfig
from clara_model.evaluate import (
    SYSTEMS,
    EvaluationReport,
    SystemResult,
    evaluate_checkpoints,
    evaluate_closed_book,
    evaluate_full_text,
    evaluate_with_documents,
    evaluate_with_retrieval,
    untrained_model,
)
from clara_model.prompts import PromptKind, build_prompt
from tests.clara_model.conftest import SMALL_MODEL, build_model, fit, perturb_adapters

FILLER = "The quarterly maintenance report lists every inspection of the northern pumping station in detail."
ROWS = [
    QuestionRow("What is the capital of France?",
                ("Berlin is in Germany.", "Paris is the capital of France.", FILLER), "Paris", ("Paris",), (1,)),
    QuestionRow("Who edits Thrasher?",
                ("Jake Phelps edits Thrasher magazine.", "Flip makes skateboards.", FILLER), "Jake Phelps",
                ("Jake Phelps", "Phelps"), (0,)),
]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A stage-2 checkpoint fitted to ROWS, and a (perturbed, untrained) stage-3 checkpoint picking top-2."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("checkpoints")
    instruct = fit(build_model(Stage.INSTRUCT), ROWS, steps=40)
    e2e = build_model(Stage.E2E, generation_top_k=2)
    perturb_adapters(e2e, scale=0.2)
    return save_checkpoint(instruct, folder / "instruct"), save_checkpoint(e2e, folder / "e2e")


@pytest.fixture(scope="module")
def report(checkpoints):
    return evaluate_checkpoints(*checkpoints, ROWS, ROWS, batch_size=2, max_new_tokens=8)


def test_every_system_is_scored_on_its_rows(report):
    assert list(report.results) == list(SYSTEMS)
    assert all(result.rows == 2 for result in report.results.values())
    stage2 = report.results["stage2"]
    assert [p["prediction"] for p in stage2.predictions] == ["Paris", "Jake Phelps"]
    assert (stage2.em, stage2.f1, stage2.cover_em) == (1.0, 1.0, 1.0)
    # what training starts from knows none of it: a random tiny model does not write these answers
    assert report.results["untrained_docs"].em == 0.0 and report.results["full_text_rag"].em == 0.0
    # closed book reads the same questions through the stage-2 decoder, without the documents
    closed = report.results["closed_book"]
    assert [p["question"] for p in closed.predictions] == [r.question for r in ROWS]
    assert closed.encoder_tokens == 0 and closed.decoder_tokens < stage2.decoder_tokens
    assert report.settings["compression_rate"] == SMALL_MODEL.compression_rate
    assert report.settings["n_mem"] == SMALL_MODEL.n_mem


def test_recall_is_measured_on_the_selected_candidates(report):
    for name in ("stage3", "untrained_retrieval"):
        result = report.results[name]
        hits = [p["pos_index"][0] in p["selected"][:1] for p in result.predictions]
        assert all(len(p["selected"]) == 2 for p in result.predictions)  # generation_top_k of the checkpoint
        assert result.recall["recall@1"] == sum(hits) / len(hits)
        assert "recall@3" not in result.recall  # only 2 were selected: recall@3 would be a made-up number
    assert report.results["stage2"].recall is None


def test_compressed_prompts_are_shorter_than_full_text(report, checkpoints):
    stage2, full = report.results["stage2"], report.results["full_text_rag"]
    from clara_model import load_checkpoint

    model = load_checkpoint(checkpoints[0], for_inference=True).model
    slots = build_prompt(model.tokenizer, PromptKind.ANSWER, slots=model.tokens.slot_text() * 3,
                         question=ROWS[0].question).prompt
    assert stage2.predictions and report.results["stage2"].decoder_tokens == pytest.approx(
        (len(model.tokenizer(slots)["input_ids"]) + _prompt_len(model, ROWS[1], 3)) / 2)
    assert full.decoder_tokens > stage2.decoder_tokens  # 3 documents of text vs 3 x (n_mem + 1) slots
    assert full.encoder_tokens == 0 and stage2.encoder_tokens > 0
    # what the user sent is the same question, whichever system answers it
    assert full.prompt_tokens == stage2.prompt_tokens == report.results["closed_book"].prompt_tokens


def _prompt_len(model, row, k):
    prompt = build_prompt(model.tokenizer, PromptKind.ANSWER, slots=model.tokens.slot_text() * k,
                          question=row.question).prompt
    return len(model.tokenizer(prompt)["input_ids"])


def test_full_text_documents_are_cut_to_the_compressor_window():
    model = untrained_model(SMALL_MODEL)
    long_doc = " ".join(["pump"] * 200)  # far beyond doc_max_length = 32 tokens
    row = QuestionRow("Which machine?", (long_doc,), "pump", ("pump",))
    result = evaluate_full_text(model, [row], max_new_tokens=2)
    bare = build_prompt(model.tokenizer, PromptKind.ANSWER, slots="", question=row.question).prompt
    assert result.decoder_tokens <= len(model.tokenizer(bare)["input_ids"]) + SMALL_MODEL.doc_max_length + 1


def test_prompt_tokens_are_the_question_and_decoder_tokens_what_the_decoder_reads():
    # 256-token documents at compression 4 (M = 64), the paper's smallest rate
    config = ModelConfig(base_model="tiny", doc_max_length=256, compression_rate=4, max_len=512)
    model = untrained_model(config)
    k, m = 3, config.n_mem
    docs = tuple(" ".join([f"pump{i}"] * 300) for i in range(k))  # cut to 256 tokens each
    row = QuestionRow("What is the capital of France?", docs, "Paris", ("Paris",))
    clara = evaluate_with_documents(model, [row], max_new_tokens=1)
    full = evaluate_full_text(model, [row], max_new_tokens=1)
    closed = evaluate_closed_book(model, [row], max_new_tokens=1)

    question = len(model.tokenizer(row.question, add_special_tokens=False)["input_ids"])
    assert clara.prompt_tokens == full.prompt_tokens == closed.prompt_tokens == question
    without_question = build_prompt(model.tokenizer, PromptKind.ANSWER, slots=model.tokens.slot_text() * k,
                                    question="").prompt
    template = len(model.tokenizer(without_question, add_special_tokens=False)["input_ids"]) - k * (m + 1)
    assert clara.decoder_tokens == template + question + k * (m + 1)  # slots: <MEM0>..<MEM63><SEP> per document
    assert full.decoder_tokens >= template + question + k * (config.doc_max_length - 1)
    assert full.decoder_tokens > clara.decoder_tokens > closed.decoder_tokens
    assert closed.decoder_tokens <= template + question + 1  # "\n" + "\n\n" may merge once the slots are gone


def test_evaluation_is_deterministic_and_batching_does_not_change_the_rows():
    model = build_model(Stage.E2E, generation_top_k=2)
    perturb_adapters(model, scale=0.2)
    model.eval()
    first = evaluate_with_retrieval(model, ROWS, batch_size=2, max_new_tokens=6)
    again = evaluate_with_retrieval(model, ROWS, batch_size=1, max_new_tokens=6)
    assert [p["selected"] for p in first.predictions] == [p["selected"] for p in again.predictions]
    assert evaluate_with_documents(model, ROWS, max_new_tokens=6).predictions == \
        evaluate_with_documents(model, ROWS, max_new_tokens=6).predictions


def _result(name, em, recall=None, empty=0, degenerate=0):
    return SystemResult(system=name, rows=4, em=em, f1=em, cover_em=em, recall=recall, prompt_tokens=12.0,
                        decoder_tokens=104.25, answer_tokens=4.0, encoder_tokens=0.0, seconds=1.0,
                        empty_predictions=empty, degenerate_predictions=degenerate)


def test_markdown_table_has_a_row_per_system_and_dashes_for_missing_values():
    report = EvaluationReport(results={"stage3": _result("stage3", 0.25, {"recall@1": 0.5, "recall@3": 0.75,
                                                                         "recall@5": 1.0}),
                                       "closed_book": _result("closed_book", 0.5, empty=1, degenerate=2)},
                              settings={})
    report.results["closed_book"].prompt_tokens = None  # e.g. read from a format-1 report
    lines = [" ".join(line.split()) for line in report.markdown_table().splitlines()]
    assert lines[0] == ("| system | n | EM | F1 | cover | R@1 | R@3 | R@5 | empty | degen | prompt | decoder | "
                        "encoder |")
    assert lines[2] == "| stage3 | 4 | 0.250 | 0.250 | 0.250 | 0.500 | 0.750 | 1.000 | 0 | 0 | 12.0 | 104.2 | 0.0 |"
    assert lines[3] == "| closed_book | 4 | 0.500 | 0.500 | 0.500 | - | - | - | 1 | 2 | - | 104.2 | 0.0 |"
    assert lines[5].startswith("n: questions;") and "closed_book: closed book" in lines[6]
    assert max(len(line) for line in report.markdown_table(legend=False).splitlines()) <= 130  # a wide terminal
    assert report.to_dict()["systems"]["stage3"]["decoder_tokens"] == 104.25


def test_all_empty_systems_are_named():
    report = EvaluationReport(results={"stage2": _result("stage2", 0.0, empty=4),
                                       "closed_book": _result("closed_book", 0.0, empty=3, degenerate=1)},
                              settings={})
    assert report.all_empty_systems() == ["stage2"]


def test_bad_requests_are_refused(checkpoints):
    with pytest.raises(ValueError, match="unknown systems"):
        evaluate_checkpoints(*checkpoints, ROWS, ROWS, systems=["stage4"])
    with pytest.raises(ValueError, match="no held-out rows to evaluate stage3"):
        evaluate_checkpoints(*checkpoints, ROWS, [], systems=["stage3"])


def test_a_stored_report_reads_back_as_it_was(report):
    stored = json.loads(json.dumps(report.to_dict()))
    again = EvaluationReport.from_dict(stored)
    assert again.to_dict() == stored and again.markdown_table() == report.markdown_table()
    assert stored["format"] == 2 and "empty_predictions" in stored["systems"]["stage2"]


def test_a_format_1_report_reads_back_with_its_meaning_kept():
    # report.json as evaluation-v1 wrote it: prompt_tokens was the decoder's prompt, decoder_tokens prompt + answer
    old = {"settings": {"instruct_rows": 2}, "systems": {"stage2": {
        "system": "stage2", "rows": 2, "em": 0.0, "f1": 0.0, "cover_em": 0.0, "recall": None, "prompt_tokens": 90.0,
        "answer_tokens": 0.0, "encoder_tokens": 80.0, "seconds": 1.0, "decoder_tokens": 90.0,
        "title": "stage-2 CLaRa (k compressed docs)",
        "predictions": [{"question": "q1", "gold": ["a"], "prediction": ""},
                        {"question": "q2", "gold": ["b"], "prediction": "la la la"}]}}}
    snapshot = json.loads(json.dumps(old))
    result = EvaluationReport.from_dict(old).results["stage2"]
    assert (result.prompt_tokens, result.decoder_tokens) == (None, 90.0)
    assert (result.empty_predictions, result.degenerate_predictions) == (1, 1)
    assert [p.get("flag") for p in result.predictions] == ["empty", "repeated"]
    assert old == snapshot  # the caller's dict is left as it was
