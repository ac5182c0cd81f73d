"""The CPU base: a normal HF folder, cached by its inputs, whose untrained head rows cannot win."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from clara_model.pretrain_base import INFO_FILE, BaseShape, PretrainSettings, build_base_model, input_digest
from clara_model.synthetic import FactWorld

SMALL = PretrainSettings(shape=BaseShape(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, head_dim=16),
                         steps=3, batch_size=2, reading_examples=8, warmup=1)


def test_fact_world_is_seeded_and_answerable_from_its_document():
    a, b = FactWorld(3).documents(20), FactWorld(3).documents(20)
    assert a == b
    assert len({d.entity for d in a}) == 20  # a question names exactly one document
    for doc in a:
        for fact in doc.facts:
            assert fact.answer in doc.text and fact.sentence in doc.text
    assert {d.lang for d in FactWorld(0).documents(50)} == {"en", "zh"}


def test_fact_world_states_chosen_facts_and_shares_no_device_with_a_reserved_world():
    first = FactWorld(1)
    first.documents(300)
    second = FactWorld(2, reserved_codes=first.codes)
    docs = [second.document("zh", attributes=["colour", "city", "power"]) for _ in range(300)]
    assert not {d.entity[:5] for d in docs} & first.codes
    for doc in docs:
        assert [f.attribute for f in doc.facts] == ["colour", "city", "power"] and doc.lang == "zh"
        assert doc.kind[1] in doc.entity and all(f.value_zh == f.answer and f.value_en for f in doc.facts)
    # the default draws are unchanged by the options (the CPU base's pretraining text depends on them)
    assert FactWorld(3).documents(5) == FactWorld(3, reserved_codes=frozenset()).documents(5)


def test_input_digest_follows_corpus_and_settings():
    assert input_digest(["a"], SMALL) == input_digest(["a"], SMALL)
    assert input_digest(["a"], SMALL) != input_digest(["b"], SMALL)
    assert input_digest(["a"], SMALL) != input_digest(["a"], PretrainSettings(steps=4))


@pytest.mark.slow
def test_build_base_model_is_a_loadable_cached_folder(tmp_path):
    out = tmp_path / "base"
    info = build_base_model(out, ["The KX-7 pump is serviced every 90 days."], SMALL)
    assert not info["reused"] and info["corpus_chunks"] == 1
    assert not (tmp_path / "base.staging").exists()
    model = AutoModelForCausalLM.from_pretrained(out)  # like any local path
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size == 151_936 and not model.config.tie_word_embeddings
    assert tokenizer("pump")["input_ids"]

    # Rows never seen in pretraining all hold one vector, pointing away from the seen rows' states.
    head = model.lm_head.weight
    seen = torch.tensor(tokenizer("The KX-7 pump is serviced every 90 days.")["input_ids"])
    unseen_row = head[151_000]
    assert torch.equal(head[150_000], unseen_row)
    assert not any(torch.equal(head[i], unseen_row) for i in seen)

    again = build_base_model(out, ["The KX-7 pump is serviced every 90 days."], SMALL)
    assert again["reused"] and again["weights_sha256"] == info["weights_sha256"]
    assert json.loads((out / INFO_FILE).read_text())["input_digest"] == info["input_digest"]
