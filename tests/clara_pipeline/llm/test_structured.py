import pytest

from clara_pipeline.llm.structured import OutputInvalid, extract_json_object, parse_output, response_format
from clara_pipeline.llm.tasks import Caption, ChunkSynthesis

VALID = '{"title": "Pump wiring", "text_in_image": "24 V | GND", "structure": "", "meaning": "Shows the wiring."}'


@pytest.mark.parametrize("reply", [
    VALID,
    f"```json\n{VALID}\n```",
    f"```\n{VALID}\n```",
    f"Sure! Here is the JSON:\n```json\n{VALID}\n```\nAnything else?",
    f"The answer is {VALID} as requested.",
    "{not json} then " + VALID,
])
def test_finds_the_object_in_fences_and_prose(reply):
    assert extract_json_object(reply)["title"] == "Pump wiring"


@pytest.mark.parametrize("reply, problem", [
    ("", "empty"),
    (None, "empty"),
    ("I cannot describe this image.", "no JSON object"),
    (VALID[: len(VALID) // 2], "malformed or cut off"),
    ("{'title': 'single quotes'}", "malformed or cut off"),
    ("[1, 2, 3]", "no JSON object"),
])
def test_reports_what_is_wrong(reply, problem):
    with pytest.raises(OutputInvalid, match=problem):
        extract_json_object(reply)


def test_validation_errors_name_the_field():
    with pytest.raises(OutputInvalid, match="meaning"):
        parse_output('{"title": "x", "text_in_image": "", "structure": ""}', Caption)


def test_json_schema_is_strict_compatible():
    fmt = response_format("json_schema", "chunk_synthesis", ChunkSynthesis)
    schema = fmt["json_schema"]["schema"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"qa_pairs", "paraphrase"}
    pair = schema["$defs"]["QAPair"]
    assert pair["additionalProperties"] is False and set(pair["required"]) == {"qa_type", "question", "answer"}
    assert pair["properties"]["qa_type"]["enum"] == ["fact", "reasoning", "cross_lingual"]
    # the length limits travel with the schema (a constrained decoder keeps to them), unless refused
    assert pair["properties"]["question"]["maxLength"] == 600 and "chunk_id" not in pair["properties"]
    assert "description" not in pair  # class docstrings stay in the code
    basic = response_format("json_schema", "chunk_synthesis", ChunkSynthesis, lengths=False)
    assert "maxLength" not in str(basic) and basic["json_schema"]["schema"]["properties"]["qa_pairs"]["minItems"] == 3
    assert schema["properties"]["qa_pairs"]["minItems"] == 3 and schema["properties"]["qa_pairs"]["maxItems"] == 8
    assert response_format("json_object", "x", Caption) == {"type": "json_object"}
    assert response_format("prompt", "x", Caption) is None


def test_validation_errors_are_in_plain_words():
    with pytest.raises(OutputInvalid) as raised:
        parse_output('{"title": "x", "structure": ""}', Caption)
    assert str(raised.value) == "text_in_image: is missing; meaning: is missing"
    assert "Field required" not in str(raised.value)
