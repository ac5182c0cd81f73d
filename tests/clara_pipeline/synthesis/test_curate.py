import pytest

from clara_pipeline.datasets.split import question_key
from clara_pipeline.datasets.records import QAPair
from clara_pipeline.synthesis.curate import answer_supported, curate

CHUNK_EN = ("The EG-400 runs on 24 V DC nominal (9-36 V DC range) and draws 6 W typically. "
            "The relay outputs are rated 30 V DC / 2 A up to 45 °C.")
CHUNK_ZH = "继电器输出为常开触点。环境温度不高于 45 °C 时，每路可承载 30 V DC / 2 A 阻性负载。"


@pytest.mark.parametrize("answer, chunk, ok", [
    ("24 V DC nominal", CHUNK_EN, True),
    ("It draws about 6 W in typical operation.", CHUNK_EN, True),
    ("It draws 8 W.", CHUNK_EN, False),  # invented number
    ("Relay outputs are rated 30 V DC / 2 A.", CHUNK_EN, True),
    ("The gateway supports Bluetooth mesh networking.", CHUNK_EN, False),
    ("每路可承载 30 V DC / 2 A 阻性负载", CHUNK_ZH, True),
    ("不高于45°C时每路可承载2 A", CHUNK_ZH, True),
    ("每路可承载 5 A 感性负载", CHUNK_ZH, False),
    ("２４ V DC", CHUNK_EN, True),  # full-width digits
    ("", CHUNK_EN, False),
])
def test_answer_support(answer, chunk, ok):
    assert answer_supported(answer, chunk) is ok


def test_curate_drops_and_counts_each_kind():
    pairs = {
        "c1": [QAPair("", "fact", "What is the nominal supply voltage of the EG-400?", "24 V DC"),
               QAPair("", "fact", "According to the text, what is the power draw?", "6 W"),
               QAPair("", "reasoning", "Why derate the relays?", "Because of Bluetooth interference."),
],
        "c2": [QAPair("", "cross_lingual", "What load can each relay carry below 45 °C?", "30 V DC / 2 A 阻性负载"),
               QAPair("", "fact", "what is the nominal supply voltage of the EG-400", "24 V DC"),
               QAPair("", "fact", "根据上文，继电器是什么触点？", "常开触点")],
    }
    kept, report = curate(pairs, {"c1": CHUNK_EN, "c2": CHUNK_ZH + " 24 V DC"})
    assert [(p.chunk_id, p.qa_type) for p in kept] == [("c1", "fact"), ("c2", "cross_lingual")]
    assert report.kept == 2
    assert report.dropped == {"not_self_contained": 2, "unsupported": 1, "duplicate_question": 1}
    assert report.by_type == {"fact": 1, "cross_lingual": 1}


def test_question_key_ignores_case_punctuation_and_width():
    assert question_key("What is the IP rating?") == question_key("what is the ip rating") == question_key("ＷＨＡＴ is the IP rating？")


def test_a_blank_pair_cannot_even_be_made():
    with pytest.raises(ValueError, match="empty question"):
        QAPair("c1", "fact", "  ", "24 V")
