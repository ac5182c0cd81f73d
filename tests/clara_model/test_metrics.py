import pytest

from clara_model.metrics import (
    PredictionFlag,
    count_flags,
    cover_exact_match,
    exact_match,
    f1_score,
    flag_predictions,
    normalize_answer,
    precision_at_k,
    recall_at_k,
    score_answers,
    score_retrieval,
)


def test_normalisation():
    assert normalize_answer("  The Eiffel-Tower, in PARIS! ") == "eiffeltower in paris"
    assert normalize_answer("True") == "yes" and normalize_answer("False") == "no"


def test_exact_match_takes_any_alias():
    assert exact_match("the Weldenia", ["Alsobia", "weldenia"]) == 1.0
    assert exact_match("Weldenia candida", ["Weldenia"]) == 0.0


def test_cover_exact_match_needs_every_gold_token():
    assert cover_exact_match("It was Jake Phelps, the editor.", ["Jake Phelps"]) == 1.0
    assert cover_exact_match("It was Jake.", ["Jake Phelps"]) == 0.0
    assert cover_exact_match("It was Jake.", ["Jake Phelps", "Jake"]) == 1.0


def test_f1_is_token_overlap_and_best_alias():
    assert f1_score("San Francisco US", ["San Francisco"]) == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert f1_score("Paris", ["London", "Paris"]) == 1.0
    assert f1_score("yes", ["yes it is"]) == 0.0  # closed answers must match exactly
    assert f1_score("nothing shared", ["else"]) == 0.0


def test_score_answers_all_aliases_versus_first_gold_only():
    predictions = ["Paris", "blue"]
    golds = [["London", "Paris"], ["blue"]]
    assert score_answers(predictions, golds) == {"em": 1.0, "f1": 1.0, "cover_em": 1.0, "n": 2.0}
    assert score_answers(predictions, golds, first_gold_only=True)["em"] == 0.5
    with pytest.raises(ValueError):
        score_answers(["a"], [])


def test_recall_and_precision_at_k():
    selected, positives = [4, 1, 7, 2, 0], [1, 2]
    assert recall_at_k(selected, positives, 1) == 0.0
    assert recall_at_k(selected, positives, 3) == 0.5
    assert recall_at_k(selected, positives, 5) == 1.0
    assert precision_at_k(selected, positives, 5) == 0.4
    with pytest.raises(ValueError):
        recall_at_k(selected, [], 1)


def test_score_retrieval_skips_rows_without_positives():
    result = score_retrieval([[0, 1, 2], [2, 1, 0], [0, 1, 2]], [[0], [0], []], ks=(1, 3))
    assert result == {"n": 2.0, "recall@1": 0.5, "precision@1": 0.5, "recall@3": 1.0, "precision@3": 1 / 3}
    assert score_retrieval([[0]], [[]]) == {"n": 0.0}


def test_empty_and_degenerate_predictions_are_flagged():
    predictions = ["", "   ", ".", "the the the", "!!!!", "la la la", "Paris Paris Paris", "的的的", "Paris",
                   "Paris Paris", "111", "10 10 10", "Jake Phelps"]
    assert flag_predictions(predictions) == [
        PredictionFlag.EMPTY, PredictionFlag.EMPTY, PredictionFlag.NO_WORDS, PredictionFlag.NO_WORDS,
        PredictionFlag.NO_WORDS, PredictionFlag.REPEATED, PredictionFlag.REPEATED, PredictionFlag.REPEATED,
        None, None, None, None, None]
    assert count_flags(flag_predictions(predictions)) == (2, 6)


def test_one_answer_to_most_questions_is_degenerate_from_five_rows():
    same = ["Paris.", "paris", "Paris", "Berlin", "Rome"]  # 3 of 5 normalise to "paris"
    assert flag_predictions(same) == [PredictionFlag.SAME_FOR_MOST] * 3 + [None, None]
    assert flag_predictions(same[:4]) == [None] * 4  # 4 rows: too few to tell
    assert flag_predictions(["Paris", "Paris", "Rome", "Oslo", "Bonn", "Lima"]) == [None] * 6  # half is not most
    # empties do not make the rest "most": 3 empty, 2 "Paris" of 5
    assert flag_predictions(["", "", "", "Paris", "Paris"]) == [PredictionFlag.EMPTY] * 3 + [None, None]
