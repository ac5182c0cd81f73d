"""The CPU base: a shipped reading skill that matches the code and reads, continued on a corpus into a normal HF
folder, cached by its inputs, whose untrained head rows cannot win."""

import hashlib
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from safetensors.torch import load_file

from clara_model.pretrain_base import (INFO_FILE, SKILL_DIR, SKILL_FILE, BaseShape, PretrainSettings, SkillSettings,
                                       build_base_model, input_digest, load_skill, save_skill, skill_digest,
                                       train_skill)
from clara_model.synthetic import FactWorld

SMALL_SKILL = SkillSettings(shape=BaseShape(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                            num_attention_heads=2, num_key_value_heads=1, head_dim=16),
                            steps=3, batch_size=2, warmup=1)
SMALL = PretrainSettings(steps=3, batch_size=2, warmup=1)


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


def test_the_shipped_reading_skill_is_what_the_code_trains_and_it_reads():
    info = json.loads((SKILL_DIR / SKILL_FILE).read_text())
    # Changing the made-up text, the pretraining code or its settings without retraining the skill fails here:
    # retrain with `python -m clara_model.pretrain_base skill` (its docstring).
    assert info["skill_digest"] == skill_digest(SkillSettings())
    assert info["weights_sha256"] == hashlib.sha256((SKILL_DIR / "model.safetensors").read_bytes()).hexdigest()
    # It answers many made-up questions about documents it never saw (teacher-forced, every answer token right).
    assert info["held_out_reading"]["exact"] >= 0.4
    model, rows, _ = load_skill()
    assert model.model.embed_tokens.weight.shape[0] == len(rows) == model.lm_head.weight.shape[0]


def test_a_small_skill_trains_deterministically_and_round_trips(tmp_path):
    first, rows, measured = train_skill(SMALL_SKILL, eval_every=2)
    second, rows_again, _ = train_skill(SMALL_SKILL, eval_every=2)
    assert torch.equal(rows, rows_again)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    assert [h["step"] for h in measured["history"]] == [1, 2, 3] and "held_out_exact" in measured["history"][1]
    info = save_skill(tmp_path / "skill", first, rows, SMALL_SKILL, measured)
    loaded, loaded_rows, loaded_info = load_skill(tmp_path / "skill")
    assert torch.equal(loaded_rows, rows) and loaded_info["skill_digest"] == info["skill_digest"]
    saved = load_file(tmp_path / "skill" / "model.safetensors")
    assert torch.equal(saved["lm_head.weight"], first.lm_head.weight) and torch.equal(
        loaded.lm_head.weight, first.lm_head.weight)
    with pytest.raises(FileNotFoundError, match="pretrain_base skill"):
        load_skill(tmp_path / "nothing")
    weights = tmp_path / "skill" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a damaged copy: named, not a deserializer's traceback
    with pytest.raises(ValueError, match="model.safetensors is not the file"):
        load_skill(tmp_path / "skill")


@pytest.mark.slow
def test_build_base_model_is_a_loadable_cached_folder(tmp_path):
    first, rows, measured = train_skill(SMALL_SKILL)
    skill = tmp_path / "skill"
    save_skill(skill, first, rows, SMALL_SKILL, measured)
    out = tmp_path / "base"
    info = build_base_model(out, ["The KX-7 pump is serviced every 90 days."], SMALL, skill_dir=skill)
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

    again = build_base_model(out, ["The KX-7 pump is serviced every 90 days."], SMALL, skill_dir=skill)
    assert again["reused"] and again["weights_sha256"] == info["weights_sha256"]
    assert json.loads((out / INFO_FILE).read_text())["input_digest"] == info["input_digest"]


@pytest.mark.slow
def test_the_base_reads_as_well_as_its_skill_over_the_full_vocabulary(tmp_path):
    """Without corpus text the base is the skill expanded to 151,936 rows: it must read as well as the skill did
    over its own rows (the never-seen rows cannot win), and a short continuation must not make it forget."""
    skill = json.loads((SKILL_DIR / SKILL_FILE).read_text())["held_out_reading"]["exact"]
    plain = build_base_model(tmp_path / "plain", [])
    assert plain["continuation_steps"] == 0
    assert plain["held_out_reading"]["exact"] == pytest.approx(skill, abs=0.02)
    continued = build_base_model(tmp_path / "continued", ["泵的维护周期为90天。The KX-7 pump is serviced every 90 days."],
                                 PretrainSettings(steps=20))
    assert continued["continuation_steps"] == 20 and continued["corpus_chunks"] == 1
    assert continued["held_out_reading"]["exact"] >= skill - 0.1
