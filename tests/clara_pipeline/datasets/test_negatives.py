import pytest

from clara_pipeline.datasets import ChunkRecord, DatasetConfig, EmbeddingRanker, NegativePicker
from clara_pipeline.datasets.duplicates import jaccard, shingles
from clara_pipeline.datasets.text import contains_answer

from .corpus import generated_corpus

PUMP = ("The KD-200 coolant pump draws 24V DC and delivers 40 litres per minute at full speed. Replace the "
        "impeller seal every 2000 operating hours; a worn seal shows as a drip under the housing. The housing is "
        "cast aluminium, the inlet takes a 25 mm hose, and the outlet carries a quick coupling for the chiller. "
        "Ship every pump with 5 spare seals in the accessory bag.")


def chunk(cid, text, lang="en"):
    return ChunkRecord(cid, f"doc-{cid}", f"raw_data/{cid}.md", lang, text)


def pump_corpus():
    """The positive, traps that rank high for pump questions, and unrelated filler."""
    filler, _, _ = generated_corpus(30, seed=7)
    return [
        chunk("positive", PUMP),
        chunk("twin", PUMP.replace("draws 24V DC", "draws power from the DC bus")),  # near-duplicate, no answer
        chunk("fullwidth", "KD-200 coolant pump wiring: connect the pump to the ２４Ｖ rail of the chiller cabinet."),
        chunk("224", "KD-200 coolant pump, export variant: it draws 224V from the mains and needs no adapter."),
        chunk("seal-15", "KD-200 coolant pump service kit: 15 spare seals and 1.5 litres of coolant per pump."),
        chunk("seal-5", "KD-200 coolant pump service kit: the pump ships with ５ spare seals in the accessory bag."),
        chunk("manual-a", "KD-200 coolant pump manual, chapter 2: mounting the pump on the chiller frame."),
        chunk("manual-b", "KD-200 coolant pump manual, chapter 2: mounting the pump on the chiller frame!"),
        *filler,
    ]


def test_a_negative_never_contains_the_answer_and_numbers_match_as_numbers():
    chunks = pump_corpus()
    picker = NegativePicker(chunks)
    ids = [c.chunk_id for c in chunks]

    volts = picker.pick(0, "What voltage does the KD-200 coolant pump draw?", "24V", count=6)
    chosen = {ids[i] for i in volts.chunks}
    assert "fullwidth" not in chosen  # ２４Ｖ is 24V
    assert "224" in chosen  # 224V is not
    assert volts.skipped["contains_answer"] >= 1

    seals = picker.pick(0, "How many spare seals ship with the KD-200 coolant pump?", "5", count=6)
    chosen = {ids[i] for i in seals.chunks}
    assert "seal-5" not in chosen  # full-width ５
    assert "seal-15" in chosen  # 15 and 1.5 are not 5
    for choice, answer in ((volts, "24V"), (seals, "5")):
        assert not any(contains_answer(chunks[i].text, answer) for i in choice.chunks)


def test_near_duplicates_of_the_positive_or_of_each_other_are_never_negatives():
    chunks = pump_corpus()
    assert jaccard(shingles(chunks[0].text), shingles(chunks[1].text)) >= 0.8  # the twin really is one
    picker = NegativePicker(chunks)
    ids = [c.chunk_id for c in chunks]
    choice = picker.pick(0, "What voltage does the KD-200 coolant pump draw?", "24V", count=10)
    chosen = [ids[i] for i in choice.chunks]
    assert "twin" not in chosen and "positive" not in chosen
    assert choice.skipped["near_duplicate_of_positive"] == 1
    assert choice.skipped["positive"] == 1
    assert ("manual-a" in chosen) != ("manual-b" in chosen)  # exactly one of the two copies
    assert choice.skipped["near_duplicate_of_negative"] == 1
    assert len(chosen) == 10 and choice.hard >= 3


def test_the_random_fill_is_seeded_filtered_and_a_shorter_request_is_a_prefix():
    chunks = pump_corpus()
    question, answer = "What voltage does the KD-200 coolant pump draw?", "24V"
    picker = NegativePicker(chunks)
    long = picker.pick(0, question, answer, count=19)
    assert long.random > 0  # only the pump chunks share terms with the question: the rest is random fill
    assert picker.pick(0, question, answer, count=4).chunks == long.chunks[:4]
    assert NegativePicker(chunks).pick(0, question, answer, count=19) == long
    other_seed = NegativePicker(chunks, config=DatasetConfig(seed=1)).pick(0, question, answer, count=19)
    assert other_seed.chunks[:long.hard] == long.chunks[:long.hard]  # the ranking does not depend on the seed
    assert other_seed.chunks != long.chunks  # the random fill does
    assert not any(contains_answer(chunks[i].text, answer) for i in long.chunks)
    assert len(set(long.chunks)) == 19


def test_a_small_corpus_gives_fewer_negatives_only_when_nothing_else_passes():
    chunks = pump_corpus()[:6]  # positive, twin, fullwidth, 224, seal-15, seal-5
    choice = NegativePicker(chunks).pick(0, "What voltage does the KD-200 coolant pump draw?", "24V", count=4)
    assert sorted(chunks[i].chunk_id for i in choice.chunks) == ["224", "seal-15", "seal-5"]
    assert choice.skipped == {"positive": 1, "near_duplicate_of_positive": 1, "contains_answer": 1}


def test_hard_negatives_rank_by_embeddings_when_given():
    chunks = [chunk(f"c{i}", f"text number {i}") for i in range(5)]
    vectors = {"c0": [1, 0, 0], "c1": [0, 1, 0], "c2": [0.9, 0.1, 0], "c3": [0.5, 0.5, 0], "c4": [0, 0, 1]}
    ranker = EmbeddingRanker(chunks, vectors, {"q": [1, 0, 0]})
    assert ranker.rank("q", 10) == [0, 2, 3, 1, 4]
    choice = NegativePicker(chunks, ranker).pick(0, "q", "unrelated answer", count=2)
    assert choice.chunks == (2, 3) and choice.hard == 2
    with pytest.raises(KeyError, match="no embedding for question"):
        ranker.rank("another question", 3)
    with pytest.raises(ValueError, match="1 chunks have no embedding"):
        EmbeddingRanker(chunks, {k: v for k, v in vectors.items() if k != "c3"}, {})
    with pytest.raises(ValueError, match="zero or not finite"):
        EmbeddingRanker(chunks, {**vectors, "c4": [0, 0, 0]}, {})
