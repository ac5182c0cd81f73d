import json
import hashlib

import pydantic
import pytest

from clara_pipeline.llm.tasks import (CAPTION, CHUNK_SYNTHESIS, Caption, CaptionInput, ChunkInput, ChunkSynthesis,
                                      render_caption, written_in)

from .helpers import EN_CHUNK, ZH_CHUNK, make_png

GOOD_EN = {"qa_pairs": [
    {"qa_type": "fact", "question": "What voltage does the X200 pump run at?", "answer": "24 V"},
    {"qa_type": "reasoning", "question": "Why must an X200 operator stop the pump above 8 bar?",
     "answer": "Because the pump must be stopped and reported when the pressure exceeds 8 bar."},
    {"qa_type": "cross_lingual", "question": "X200 水泵多久检查一次？", "answer": "Every 6 months"},
], "paraphrase": "Every 6 months the Quality Assurance team inspects the X200 pump, which uses 24 V."}


def validate(data, lang="en", chunk=EN_CHUNK):
    return ChunkSynthesis.model_validate(data, context=CHUNK_SYNTHESIS.validation_context(ChunkInput(chunk, lang, 3)))


def with_pair(index, **changes):
    pairs = [dict(p) for p in GOOD_EN["qa_pairs"]]
    pairs[index].update(changes)
    return {**GOOD_EN, "qa_pairs": pairs}


def test_a_good_answer_validates():
    assert len(validate(GOOD_EN).qa_pairs) == 3


@pytest.mark.parametrize("data, problem", [
    (with_pair(0, question="According to the text, what voltage does the pump use?"), "stands on its own"),
    (with_pair(0, question="In the passage, what voltage is named?"), "stands on its own"),
    (with_pair(2, question="How often is the X200 pump inspected?"), "cross_lingual.*Chinese"),
    (with_pair(2, answer="每六个月由质量保证团队检查一次"), "answer must be written in English"),
    (with_pair(1, question="What voltage does the X200 pump run at?"), "repeats an earlier question"),
    ({**GOOD_EN, "qa_pairs": GOOD_EN["qa_pairs"][:2]}, "at least 3"),
    ({**GOOD_EN, "paraphrase": "  "}, "paraphrase"),
    ({**GOOD_EN, "paraphrase": EN_CHUNK}, "word for word"),
])
def test_broken_rules_are_named(data, problem):
    with pytest.raises(pydantic.ValidationError, match=problem):
        validate(data)


def test_a_bad_pair_is_dropped_and_the_good_ones_are_kept():
    extra = {"qa_type": "fact", "question": "Who inspects the X200 pump?", "answer": "The Quality Assurance team"}
    bad = {"qa_type": "fact", "question": "According to the text, what is the limit?", "answer": "8 bar"}
    empty = {"qa_type": "trivia", "question": "", "answer": "x"}
    data = {**GOOD_EN, "qa_pairs": [*GOOD_EN["qa_pairs"], bad, empty, extra]}
    result = validate(data)
    assert [p.question for p in result.qa_pairs] == [*(p["question"] for p in GOOD_EN["qa_pairs"]), extra["question"]]
    assert len(result.rejected_pairs) == 2 and result.rejected_pairs[0].startswith("pair 4: the question refers")
    assert all(p.chunk_id == "chunk-7" for p in ChunkSynthesis.model_validate(
        data, context=CHUNK_SYNTHESIS.validation_context(ChunkInput(EN_CHUNK, "en", 3, chunk_id="chunk-7"))).qa_pairs)


def test_fewer_good_pairs_than_the_minimum_is_said_in_plain_words():
    data = {**GOOD_EN, "qa_pairs": GOOD_EN["qa_pairs"][:2]}
    with pytest.raises(pydantic.ValidationError) as raised:
        validate(data)
    from clara_pipeline.llm.structured import plain_validation_error
    assert plain_validation_error(raised.value) == "only 2 of 2 question-answer pairs are usable and at least 3 are needed"
    assert "List should have" not in plain_validation_error(raised.value)


def test_chinese_chunk_wants_english_cross_lingual_and_chinese_answers():
    data = {"qa_pairs": [
        {"qa_type": "fact", "question": "X200 水泵使用什么电压？", "answer": "24 V"},
        {"qa_type": "reasoning", "question": "压力超过 8 bar 时 X200 水泵的操作员应该怎么做？", "answer": "停止水泵并向维护负责人报告"},
        {"qa_type": "cross_lingual", "question": "How often is the X200 pump inspected?", "answer": "每 6 个月"},
    ], "paraphrase": "质量保证团队每 6 个月检查 X200 水泵。"}
    assert validate(data, "zh", ZH_CHUNK).qa_pairs[2].qa_type == "cross_lingual"
    data["qa_pairs"][2]["question"] = "X200 水泵多久检查一次？"
    with pytest.raises(pydantic.ValidationError, match="English"):
        validate(data, "zh", ZH_CHUNK)


def test_und_chunks_need_no_cross_lingual_question():
    pairs = [p for p in GOOD_EN["qa_pairs"] if p["qa_type"] != "cross_lingual"]
    pairs.append({"qa_type": "fact", "question": "Who inspects the X200 pump?", "answer": "The Quality Assurance team"})
    assert validate({**GOOD_EN, "qa_pairs": pairs}, "und")


def test_caption_rules():
    good = {"title": "X200 wiring", "text_in_image": "24 V | GND", "structure": "Two terminals.",
            "meaning": "Shows how the X200 pump is wired to 24 V."}
    assert Caption.model_validate(good, context={"lang": "en"})
    for field, value in [("title", "diagram_03.png"), ("meaning", "See [IMAGE_REF: img-0123456789abcdef]."),
                         ("meaning", "Stored at /srv/artifacts/images/ab/"), ("title", "")]:
        with pytest.raises(pydantic.ValidationError, match=field):
            Caption.model_validate({**good, field: value}, context={"lang": "en"})
    with pytest.raises(pydantic.ValidationError, match="Simplified Chinese"):
        Caption.model_validate(good, context={"lang": "zh"})


def test_render_caption_is_plain_text_in_the_documents_language():
    caption = Caption(title="X200 接线图。", text_in_image="24 V | GND", structure="两个端子。", meaning="说明水泵如何接线。")
    text = render_caption(caption, "zh")
    assert text.splitlines()[0] == "图：X200 接线图。 说明水泵如何接线。"
    assert "图中文字：24 V | GND" in text and "IMAGE_REF" not in text
    english = render_caption(Caption(title="Wiring", text_in_image="", structure="", meaning="Shows wiring."), "en")
    assert english == "Figure: Wiring. Shows wiring."


def test_prompts_carry_the_input_and_the_language(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(make_png())
    record = {"id": "img-1", "path": "x.png", "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
              "lang": "zh", "context_before": "下图为接线图。", "context_after": "", "alt_text": "接线"}
    item = CaptionInput.from_record(record, tmp_path)
    system, user = CAPTION.build_messages(item)
    assert "Simplified Chinese" in system["content"]
    assert "下图为接线图。" in user["content"][0]["text"]
    assert user["content"][1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert CAPTION.cache_input(item)["image_sha256"] == record["sha256"]  # the hash, not the bytes
    system, user = CHUNK_SYNTHESIS.build_messages(ChunkInput(ZH_CHUNK, "zh", 6))
    assert "English" in system["content"] and "6 question-answer pairs" in user["content"]
    assert ZH_CHUNK.strip() in user["content"]


def test_a_stored_image_that_does_not_match_its_hash_is_refused(tmp_path):
    (tmp_path / "x.png").write_bytes(make_png())
    item = CaptionInput(image=tmp_path / "x.png", image_sha256="0" * 64)
    with pytest.raises(ValueError, match="does not match"):
        item.load()


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="n_pairs"):
        ChunkInput("text", "en", 9)
    with pytest.raises(ValueError, match="lang"):
        ChunkInput("text", "fr", 3)
    assert written_in("X200 水泵使用什么电压？") == "zh" and written_in("24 V") is None


def test_a_caption_at_every_limit_in_dense_chinese_fits_its_output_tokens():
    from clara_pipeline.corpus.build import token_counter
    from clara_pipeline.llm.tasks import CAPTION_LIMITS

    count = token_counter("tiny")  # the real Qwen3 tokenizer
    dense = "变频器额定功率七点五千瓦，输入电压三百八十伏，过载能力一百五十百分比持续六十秒。" * 200
    caption = {field: dense[:limit] for field, limit in CAPTION_LIMITS.items()}
    tokens = count(json.dumps(caption, ensure_ascii=False))
    assert CAPTION_LIMITS["text_in_image"] == 4000 and count(dense[:4000]) > 1500  # the old budget was too small
    assert tokens < CAPTION.max_tokens, (tokens, CAPTION.max_tokens)
    schema = Caption.model_json_schema()["properties"]
    assert {f: schema[f]["maxLength"] for f in CAPTION_LIMITS} == CAPTION_LIMITS
