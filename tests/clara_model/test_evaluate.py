"""Evaluation: systems scored the same way on the same rows, token counts, and the report."""

import pytest
import torch

from clara_model import Stage, save_checkpoint
from clara_model.data import QuestionRow
from clara_model.evaluate import (
    SYSTEMS,
    EvaluationReport,
    SystemResult,
    evaluate_checkpoints,
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
    assert stage2.predictions and report.results["stage2"].prompt_tokens == pytest.approx(
        (len(model.tokenizer(slots)["input_ids"]) + _prompt_len(model, ROWS[1], 3)) / 2)
    assert full.prompt_tokens > stage2.prompt_tokens  # 3 documents of text vs 3 x (n_mem + 1) slots
    assert full.encoder_tokens == 0 and stage2.encoder_tokens > 0
    assert stage2.decoder_tokens == stage2.prompt_tokens + stage2.answer_tokens


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
    assert result.prompt_tokens <= len(model.tokenizer(bare)["input_ids"]) + SMALL_MODEL.doc_max_length + 1


def test_evaluation_is_deterministic_and_batching_does_not_change_the_rows():
    model = build_model(Stage.E2E, generation_top_k=2)
    perturb_adapters(model, scale=0.2)
    model.eval()
    first = evaluate_with_retrieval(model, ROWS, batch_size=2, max_new_tokens=6)
    again = evaluate_with_retrieval(model, ROWS, batch_size=1, max_new_tokens=6)
    assert [p["selected"] for p in first.predictions] == [p["selected"] for p in again.predictions]
    assert evaluate_with_documents(model, ROWS, max_new_tokens=6).predictions == \
        evaluate_with_documents(model, ROWS, max_new_tokens=6).predictions


def test_markdown_table_has_a_row_per_system_and_dashes_for_missing_recall():
    def result(name, em, recall=None):
        return SystemResult(system=name, rows=4, em=em, f1=em, cover_em=em, recall=recall, prompt_tokens=100.0,
                            answer_tokens=4.0, encoder_tokens=0.0, seconds=1.0)

    report = EvaluationReport(results={"stage3": result("stage3", 0.25, {"recall@1": 0.5, "recall@3": 0.75,
                                                                       "recall@5": 1.0}),
                                       "full_text_rag": result("full_text_rag", 0.5)}, settings={})
    lines = report.markdown_table().splitlines()
    assert lines[0].startswith("| system | rows | EM | F1 | cover-EM | recall@1 | recall@3 | recall@5 |")
    assert lines[2] == ("| stage-3 CLaRa (retrieves top-k of N) | 4 | 0.250 | 0.250 | 0.250 | 0.500 | 0.750 | "
                        "1.000 | 100.0 | 104.0 |")
    assert lines[3].endswith("| 0.500 | - | - | - | 100.0 | 104.0 |")
    assert report.to_dict()["systems"]["stage3"]["decoder_tokens"] == 104.0


def test_bad_requests_are_refused(checkpoints):
    with pytest.raises(ValueError, match="unknown systems"):
        evaluate_checkpoints(*checkpoints, ROWS, ROWS, systems=["stage4"])
    with pytest.raises(ValueError, match="no held-out rows to evaluate stage3"):
        evaluate_checkpoints(*checkpoints, ROWS, [], systems=["stage3"])


def test_a_stored_report_reads_back_as_it_was(report):
    import json

    stored = json.loads(json.dumps(report.to_dict()))
    again = EvaluationReport.from_dict(stored)
    assert again.to_dict() == stored and again.markdown_table() == report.markdown_table()
