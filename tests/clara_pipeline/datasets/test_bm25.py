import math
from collections import Counter

import numpy as np
import pytest

from clara_pipeline.datasets.bm25 import B, K1, BM25Index, tokenize, top_scoring

from .corpus import MANUAL

IDS = [cid for cid, _, _ in MANUAL]


@pytest.fixture(scope="module")
def index():
    return BM25Index([text for _, _, text in MANUAL])


@pytest.mark.parametrize("query, expected", [
    ("What voltage does the KD-200 coolant pump draw?", "en-pump"),
    ("When must visitors return their badge?", "en-badge"),
    ("How many daily snapshots do the backups keep?", "en-backup"),
    ("温度传感器的精度是多少？", "zh-sensor"),
    ("仓库内叉车限速是多少？", "zh-forklift"),
    ("固件升级时可以断电吗", "zh-firmware"),
])
def test_the_obvious_chunk_ranks_first(index, query, expected):
    ranked = index.search(query, top_n=3)
    assert IDS[ranked[0][0]] == expected
    assert all(score < ranked[0][1] for _, score in ranked[1:])  # not a tie won by position


def test_tokens_for_english_numbers_and_chinese():
    assert tokenize("The PUMP draws 24V and 1.5 A") == ["pump", "draws", "24v", "24", "v", "1.5"]
    assert tokenize("5,000 rpm") == ["5000", "rpm"]
    assert tokenize("温度传感器") == ["温度", "度传", "传感", "感器"]
    assert tokenize("叉 车") == ["叉", "车"]  # a one-character run is kept as that character
    assert tokenize("２４Ｖ") == tokenize("24V")
    assert tokenize("USB接口") == ["usb", "接口"]


def test_a_query_written_apart_finds_the_joined_form(index):
    ranked = index.search("24 V", top_n=1)
    assert IDS[ranked[0][0]] == "en-pump"


def test_scores_match_the_okapi_formula():
    texts = ["red pump red valve", "blue pump", "green valve valve valve", "pump pump red"]
    index = BM25Index(texts)
    docs = [Counter(tokenize(t)) for t in texts]
    avgdl = sum(sum(d.values()) for d in docs) / len(docs)

    def expected(query):
        scores = []
        for d in docs:
            dl, score = sum(d.values()), 0.0
            for term in set(tokenize(query)):
                n = sum(1 for other in docs if term in other)
                if not n:
                    continue
                idf = math.log(1 + (len(docs) - n + 0.5) / (n + 0.5))
                tf = d[term]
                score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / avgdl))
            scores.append(score)
        return scores

    for query in ("red pump", "valve", "blue green", "pump pump"):
        np.testing.assert_allclose(index.scores(query), expected(query), rtol=1e-12)


def test_ties_are_broken_by_position_even_at_the_cut():
    index = BM25Index(["alpha beta", "gamma", "alpha beta", "alpha beta", "delta"])
    assert [i for i, _ in index.search("alpha", top_n=2)] == [0, 2]
    assert [i for i, _ in index.search("alpha", top_n=10)] == [0, 2, 3]
    assert top_scoring(np.array([1.0, 3.0, 3.0, 2.0, 3.0]), 2) == [(1, 3.0), (2, 3.0)]


def test_no_shared_term_means_no_result(index):
    assert index.search("zebra xylophone", top_n=5) == []
    assert BM25Index([]).search("pump", top_n=5) == []
