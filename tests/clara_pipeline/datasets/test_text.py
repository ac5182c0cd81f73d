import pytest

from clara_pipeline.datasets.text import AnswerMatcher, MatchableText, contains_answer, fold, match_tokens, squash


@pytest.mark.parametrize("text, answer, expected", [
    # numbers match as numbers: never inside a longer one
    ("The line carries 15 amps.", "5", False),
    ("The ratio is 1.5 to 1.", "5", False),
    ("It costs 5,000 euros.", "5", False),
    ("It costs 5,000 euros.", "5000", True),
    ("Version 5 shipped.", "5", True),
    ("In 2021, 5 units failed.", "5", True),  # squashing alone would read "20215units"
    ("Rated 5% above.", "5", True),
    ("Supply: 224V", "24V", False),
    ("Supply: 24 V DC", "24V", True),
    ("Supply: 24VDC", "24V", True),
    ("Voltage 11.5 V", "1.5V", False),
    ("Voltage 1.5 V", "1.5V", True),
    ("Founded in 2012年", "2012", True),
    # an answer carried by its words: its number may continue the text's (a section "2" in "2.2")
    ("2.2 Lockout/tagout: isolate the supply.", "2 Lockout/tagout", True),
    ("12 pumps are on site", "2 pumps", True),
    ("第15章 安全规定", "5章", False),
    # full-width and half-width forms are one
    ("共５个接口", "5个", True),
    ("共15个接口", "5个", False),
    ("Supply: ２４Ｖ", "24V", True),
    ("Supply: 24V", "２４Ｖ", True),
    # case, whitespace and punctuation do not matter
    ("Jake  Phelps, editor-in-chief", "jake phelps", True),
    ("Wi-Fi is off", "WiFi", True),
    ("温度 传感器", "温度传感器", True),
    ("温度，传感器", "温度传感器", True),
    # very short Latin answers match whole words only
    ("Press the button.", "on", False),
    ("Turn it on.", "ON", True),
    ("Option A or B", "a", True),
    ("Banana", "a", False),
    # an answer of punctuation only is compared as it is
    ("a + b", "+", True),
    ("a - b", "+", False),
    # plain absence
    ("The pump draws 24V DC.", "twelve volts", False),
])
def test_contains_answer(text, answer, expected):
    assert contains_answer(text, answer) is expected


def test_a_prepared_text_gives_the_same_verdicts_as_the_raw_one():
    text = "共５个接口, rated 24V; costs 5,000 euros"
    prepared = MatchableText.of(text)
    for answer in ("5个", "24V", "5", "5000", "euros", "接口", "4"):
        assert AnswerMatcher(answer).found_in(prepared) == contains_answer(text, answer)


def test_folding_and_tokens():
    assert fold("ＡＢＣ１２３，") == "abc123,"
    assert squash("24 V, DC!") == "24vdc"
    assert match_tokens("共５个 24V, 1.5 and 5,000") == ["共", "5", "个", "24", "v", "1.5", "and", "5000"]
