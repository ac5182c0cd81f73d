from clara_pipeline.corpus.enrich import (
    UNCAPTIONED,
    enrich_text,
    placeholder,
    raw_reference_problems,
    strip_placeholders,
)

A, B, C = "img-00000000000000aa", "img-00000000000000bb", "img-00000000000000cc"
TEXT = (f"Intro paragraph.\n\n[IMAGE_REF: {A}]\n\nFigure 1: wiring.\n\n| Part | Photo |\n|---|---|\n"
        f"| Crimp | [IMAGE_REF: {B}] |\n\nSee [IMAGE_REF: {C}] inline.")


def test_markers_become_captions_in_place():
    result = enrich_text(TEXT, {A: "Wiring diagram.\nPower enters at X1.", B: "Ferrule | crimped\nflush", C: "A chart."})
    assert result.text == ("Intro paragraph.\n\nWiring diagram.\nPower enters at X1.\n\nFigure 1: wiring.\n\n"
                           "| Part | Photo |\n|---|---|\n| Crimp | Ferrule \\| crimped flush |\n\nSee A chart. inline.")
    assert result.captioned == 3 and result.uncaptioned == []
    assert raw_reference_problems(result.text) == []


def test_a_figure_without_a_caption_leaves_a_visible_placeholder():
    result = enrich_text(TEXT, {A: "Wiring diagram."}, alt_texts={B: "crimp [photo] | left"})
    assert "| Crimp | [Figure (caption unavailable): crimp photo \\| left] |" in result.text
    assert "See [Figure (caption unavailable)] inline." in result.text and "IMAGE_REF" not in result.text
    assert result.uncaptioned == [B, C]
    assert raw_reference_problems(result.text) == []  # no image id or path in the placeholder
    # what QA synthesis is given: the text without the placeholders
    assert strip_placeholders(result.text) == ("Intro paragraph.\n\nWiring diagram.\n\nFigure 1: wiring.\n\n"
                                               "| Part | Photo |\n|---|---|\n| Crimp | |\n\nSee inline.")
    assert placeholder("") == UNCAPTIONED and placeholder(" a\nb ") == "[Figure (caption unavailable): a b]"
    assert strip_placeholders(f"{UNCAPTIONED}\n\n{placeholder('x')}") == ""


def test_raw_references_are_detected():
    assert raw_reference_problems("fine text, figure 3") == []
    for bad in (f"[IMAGE_REF: {A}]", f"see {A} here", "images/ab/" + "ab" * 32 + ".png",
                "from /work/artifacts/images/x.png"):
        assert raw_reference_problems(bad), bad
