"""bench/learning.py's data: held-out questions about documents no training file holds, and retrieval questions
that share no word with their document (no token longer than one character) (so that only learning, not lexical overlap, can retrieve them)."""

import importlib.util
import json
import sys
from pathlib import Path

from clara_model.base import load_tokenizer
from clara_model.config import TINY_BASE_MODEL

ROOT = Path(__file__).resolve().parents[2]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_learning", ROOT / "bench" / "learning.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_held_out_documents_are_in_no_training_file_and_retrieval_questions_share_no_token():
    bench = load_bench()
    sizes = bench.QUICK
    rows = bench.build_rows(0, sizes)
    training_text = json.dumps([rows[name] for name in ("pretrain", "instruct", "e2e")], ensure_ascii=False)
    for row in rows["instruct_eval"]:
        held_doc = row["docs"][row["pos_index"][0]]
        assert held_doc not in training_text
        entity = row["question"].split(" of the ")[-1].rstrip("?")
        assert entity not in training_text  # not even the device's name
        assert len(row["docs"]) == sizes.k and row["answer"] in held_doc
    tokenizer = load_tokenizer(TINY_BASE_MODEL)
    # tokens of two characters or more: a lone letter or digit may be shared (the D of "Dalian" and of hall D1)
    words = lambda text: {w for t in tokenizer(text)["input_ids"] if len(w := tokenizer.decode([t]).strip()) > 1}  # noqa: E731
    for name in ("e2e", "e2e_eval"):
        for row in rows[name]:
            positive = row["docs"][row["pos_index"][0]]
            assert len(row["docs"]) == sizes.candidates and row["answer"] in positive
            assert not words(row["question"]) & words(positive), (row["question"], positive)
    assert {d for r in rows["e2e_eval"] for d in r["docs"]}.isdisjoint({d for r in rows["e2e"] for d in r["docs"]})
