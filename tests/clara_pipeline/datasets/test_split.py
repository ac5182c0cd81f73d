import pytest

from clara_pipeline.datasets import QAPair, is_held_out, split_pairs


def pairs(n):
    return [QAPair(f"c{i % 50}", "fact", f"What is the rated value of part number {i}?", str(i)) for i in range(n)]


def test_the_held_out_share_is_the_fraction_and_the_split_is_deterministic():
    data = pairs(5000)
    split = split_pairs(data, fraction=0.1, seed=0)
    assert 0.08 < len(split.held_out) / len(data) < 0.12
    assert split == split_pairs(data, fraction=0.1, seed=0)
    assert len(split.train) + len(split.held_out) == len(data)
    assert split.held_out_questions == [p.question for p in split.held_out]


def test_a_question_keeps_its_side_when_others_are_added_and_spelling_does_not_matter():
    data = pairs(2000)
    held = {p.question for p in split_pairs(data[:1000], fraction=0.2, seed=5).held_out}
    held_after = {p.question for p in split_pairs(data, fraction=0.2, seed=5).held_out}
    assert held == {q for q in held_after if q in {p.question for p in data[:1000]}}
    for question in list(held)[:20]:
        variant = "  " + question.upper().replace("?", " ?!") + " "
        assert is_held_out(variant, fraction=0.2, seed=5)


def test_the_seed_and_the_fraction_change_the_split():
    data = pairs(2000)
    a = {p.question for p in split_pairs(data, fraction=0.1, seed=0).held_out}
    b = {p.question for p in split_pairs(data, fraction=0.1, seed=1).held_out}
    assert a != b
    larger = {p.question for p in split_pairs(data, fraction=0.3, seed=0).held_out}
    assert a < larger  # a larger fraction holds out a superset
    assert split_pairs(data, fraction=0.0).held_out == ()
    with pytest.raises(ValueError, match="fraction"):
        split_pairs(data, fraction=1.0)
