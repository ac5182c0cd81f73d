import random

import pytest

from clara_pipeline.datasets.duplicates import jaccard, near_duplicate_groups, shingles

from .corpus import generated_corpus


def _components(n, edges):
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(n)]


def _edited(text, rng, edits, words):
    tokens = text.split()
    for _ in range(edits):
        tokens[rng.randrange(len(tokens))] = rng.choice(words)
    return " ".join(tokens)


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.9])
def test_groups_are_exactly_the_components_of_the_similarity_relation(threshold):
    """Compared with all pairs by brute force, on texts with planted edits of every size."""
    chunks, _, _ = generated_corpus(40, seed=3)
    rng = random.Random(threshold)
    words = [w for c in chunks if c.lang == "en" for w in c.text.split()]
    texts = [c.text for c in chunks]
    for i in range(0, 40, 2):
        texts.append(_edited(texts[i], rng, rng.randint(0, 12), words))
    sets = [shingles(t) for t in texts]
    edges = [(a, b) for a in range(len(texts)) for b in range(a + 1, len(texts))
             if jaccard(sets[a], sets[b]) >= threshold]
    assert edges  # the planted edits made some pairs similar
    assert near_duplicate_groups(texts, threshold).tolist() == _components(len(texts), edges)


def test_a_one_word_edit_is_a_near_duplicate_and_an_overlapping_neighbour_is_not():
    chunks, _, _ = generated_corpus(3, seed=1)
    base = chunks[0].text
    words = base.split()
    edited = " ".join(words[:10] + ["replaced"] + words[11:])
    neighbour = " ".join(words[-15:] + chunks[1].text.split())  # shares a few sentences, like chunk overlap
    groups = near_duplicate_groups([base, edited, neighbour, chunks[2].text])
    assert groups[1] == groups[0]
    assert groups[2] != groups[0] and groups[3] != groups[0]


def test_chinese_and_layout_variants():
    text = "叉车只能由持证司机驾驶，仓库内限速每小时八公里。每班开始前必须检查刹车、喇叭和货叉是否正常。"
    variants = [text, text.replace("，", ", ").replace("。", ".\n"), text.replace("八", "六"), "食堂午餐供应时间为十一点半到一点半。"]
    groups = near_duplicate_groups(variants)
    assert groups[0] == groups[1] == groups[2]  # punctuation, layout, one character changed
    assert groups[3] != groups[0]


def test_identical_texts_are_one_group_and_bad_arguments_are_refused():
    assert near_duplicate_groups(["a b c", "A  B, C", "x y z", "..."]).tolist() == [0, 0, 2, 3]
    with pytest.raises(ValueError, match="threshold"):
        near_duplicate_groups(["a"], threshold=0)
