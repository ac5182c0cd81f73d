import re
import asyncio
import io

import pytest
from PIL import Image

from clara_pipeline.llm import FailureKind, LLMError, open_provider
from clara_pipeline.llm.offline import (OFFLINE_NOTE, OfflineProvider, hashed_embedding, image_properties,
                                        offline_caption, offline_synthesis, split_sentences)
from clara_pipeline.llm.tasks import CaptionInput, ChunkInput, render_caption, written_in

from .helpers import EN_CHUNK, ZH_CHUNK, make_png


@pytest.mark.parametrize("chunk, lang", [(EN_CHUNK, "en"), (ZH_CHUNK, "zh")])
def test_every_answer_is_cut_from_the_chunk(chunk, lang):
    result = offline_synthesis(ChunkInput(chunk, lang, 8))
    assert len(result.qa_pairs) == 8
    assert {p.qa_type for p in result.qa_pairs} == {"fact", "reasoning", "cross_lingual"}
    for pair in result.qa_pairs:
        assert pair.answer in chunk
        assert "____" in pair.question and pair.answer not in pair.question.split("“", 1)[-1].split("____")
    assert len({p.question for p in result.qa_pairs}) == 8


def test_deterministic():
    a = offline_synthesis(ChunkInput(ZH_CHUNK, "zh", 5))
    b = offline_synthesis(ChunkInput(ZH_CHUNK, "zh", 5))
    assert a == b
    assert offline_caption(CaptionInput(make_png(), lang="en")) == offline_caption(CaptionInput(make_png(), lang="en"))


def test_chinese_questions_and_cross_lingual_templates():
    result = offline_synthesis(ChunkInput(ZH_CHUNK, "zh", 3))
    kinds = {p.qa_type: p for p in result.qa_pairs}
    assert written_in(kinds["fact"].question) == "zh"
    template = re.sub(r"“[^”]*”", "", kinds["cross_lingual"].question)  # without the quoted Chinese
    assert written_in(template) == "en"
    english = offline_synthesis(ChunkInput(EN_CHUNK, "en", 3))
    assert "请用英文" in {p.qa_type: p for p in english.qa_pairs}["cross_lingual"].question
    # 24 V, 3.5 A, 6 个月, 8 bar, 500 小时: numbers keep their units
    answers = {p.answer for p in offline_synthesis(ChunkInput(ZH_CHUNK, "zh", 8)).qa_pairs}
    assert {"24 V", "6 个月"} <= answers


def test_sentences_split_on_chinese_and_english_terminators_with_exact_offsets():
    text = "第一句。第二句！Third one here. 3.5 A is fine; last line\n- item one"
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == ["第一句。", "第二句！", "Third one here.", "3.5 A is fine;", "last line",
                                           "item one"]
    assert all(text[s.start:s.end] == s.text for s in sentences)


def test_paraphrase_keeps_every_sentence_in_another_order():
    result = offline_synthesis(ChunkInput(EN_CHUNK, "en", 3))
    assert result.paraphrase != EN_CHUNK
    for fact in ("24 V", "3.5 A", "6 months", "8 bar", "500 hours", "SAP"):
        assert fact in result.paraphrase


def test_too_little_text_is_a_reported_failure():
    with pytest.raises(LLMError) as info:
        offline_synthesis(ChunkInput("# Title only", "en", 3))
    assert info.value.kind == FailureKind.INSUFFICIENT_CONTENT


def test_caption_from_properties_and_context_in_the_documents_language():
    image = Image.new("RGBA", (200, 320), (0, 0, 0, 0))  # transparent counts as white
    image.paste((40, 90, 200, 255), (0, 0, 200, 200))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    props = image_properties(buffer.getvalue())
    assert (props.width, props.height, props.format, props.orientation) == (200, 320, "png", "portrait")
    assert props.colours == ("blue", "white")
    zh = offline_caption(CaptionInput(make_png(), lang="zh", context_before="## 接线\n下图显示水泵的接线方式。"))
    assert zh.title == "接线" and "离线" in zh.structure
    assert zh.text_in_image == ""  # nothing is read from the image offline
    en = offline_caption(CaptionInput(make_png(), lang="en", alt_text="wiring_diagram.png",
                                      context_after="The pump is wired to the 24 V supply as shown."))
    assert ".png" not in render_caption(en, "en") and "24 V supply" in en.title
    # the document's own figure caption names the figure; the section is the meaning; context is not copied
    named = offline_caption(CaptionInput(make_png(), lang="en", context_before="## 4 Wiring\nConnect the pump.",
                                         context_after="Figure 2: Pump wiring with fuse F1\nMore text follows."))
    assert named.title == "Pump wiring with fuse F1" and named.meaning == "A figure of the section “4 Wiring”."


def test_provider_batches_and_says_it_is_a_stand_in():
    async def main():
        async with open_provider(None) as provider:
            assert isinstance(provider, OfflineProvider) and not provider.can_embed
            chunks = await provider.synthesize_batch({"a": ChunkInput(EN_CHUNK, "en"), "b": ChunkInput("Too short.", "en")})
            captions = await provider.caption_batch({"i": CaptionInput(make_png(), lang="en")})
            return chunks, captions
    chunks, captions = asyncio.run(main())
    assert set(chunks.outputs) == {"a"} and chunks.failures["b"].kind == FailureKind.INSUFFICIENT_CONTENT
    assert chunks.provider["note"] == OFFLINE_NOTE and "stand-in" in OFFLINE_NOTE
    assert chunks.usage.http_requests == 0 and chunks.usage.items_ok == 1 and chunks.usage.items_failed == 1
    assert set(captions.outputs) == {"i"}


def test_hashed_embedding_is_a_deterministic_unit_vector_with_lexical_similarity():
    a, b, c = (hashed_embedding(t) for t in ("pump voltage 24 V", "the pump voltage", "维护负责人报告"))
    assert a == hashed_embedding("pump voltage 24 V")
    assert abs(sum(x * x for x in a) - 1) < 1e-9
    dot = lambda u, v: sum(x * y for x, y in zip(u, v))  # noqa: E731
    assert dot(a, b) > dot(a, c)


def test_offline_captions_in_a_chunk_are_never_asked_about():
    from clara_pipeline.llm.offline import offline_synthesis

    caption = render_caption(offline_caption(CaptionInput(make_png(), lang="en", context_before="## 4 Wiring")), "en")
    chunk = (f"{EN_CHUNK}\n\n{caption}\n\nThe relay outputs are rated 30 V DC at 2 A up to 45 degrees Celsius.")
    result = offline_synthesis(ChunkInput(chunk, "en"))
    asked = " ".join(p.question + " " + p.answer for p in result.qa_pairs) + result.paraphrase
    assert "offline" not in asked and "Structure" not in asked and "px" not in asked
