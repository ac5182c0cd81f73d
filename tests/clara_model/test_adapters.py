import pytest
import torch
from torch.utils.checkpoint import CheckpointError

from clara_model.adapters import (
    PEFT_KEY_PREFIX,
    active_adapters,
    adapter_names,
    adapter_parameters,
    adapter_state_dict,
    add_adapters,
    copy_adapter,
    enable_activation_checkpointing,
    load_adapter_state_dict,
    set_trainable,
    use_adapter,
)
from clara_model.base import load_base_model
from clara_model.config import Adapter, LoraSettings

IDS = torch.tensor([[9707, 1879, 11, 1246, 525, 498], [3555, 374, 419, 30, 151643, 151643]])


@pytest.fixture
def base():
    model = load_base_model("tiny")
    add_adapters(model, [Adapter.ENCODER, Adapter.DECODER], LoraSettings(r=4, alpha=8))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # non-zero B, so each adapter changes the output
        for adapter in (Adapter.ENCODER, Adapter.DECODER):
            for key, param in adapter_parameters(model, adapter).items():
                if "lora_B" in key:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return model


def hidden(model):
    return model.model(input_ids=IDS).last_hidden_state


def test_three_lora_sets_on_all_linear_layers():
    model = load_base_model("tiny")
    add_adapters(model, list(Adapter), LoraSettings())
    assert adapter_names(model) == ["decoder", "encoder", "query_reasoner"]
    params = adapter_parameters(model, Adapter.QUERY_REASONER)
    layers = model.config.num_hidden_layers
    assert len(params) == layers * 7 * 2  # q k v o gate up down, A and B
    assert params["model.layers.0.self_attn.q_proj.lora_A.weight"].shape == (16, 64)
    assert not any("lm_head" in key for key in params)
    assert active_adapters(model) == () and not any(p.requires_grad for p in model.parameters())


def test_use_adapter_selects_one_adapter_and_restores(base):
    plain = hidden(base)
    torch.testing.assert_close(plain, hidden(load_base_model("tiny")))  # outside a block: no adapter is active
    with use_adapter(base, Adapter.ENCODER):
        encoder = hidden(base)
        with use_adapter(base, Adapter.DECODER):
            decoder = hidden(base)
        assert active_adapters(base) == ("encoder",)
        torch.testing.assert_close(hidden(base), encoder)
    assert active_adapters(base) == ()
    assert not torch.allclose(encoder, plain) and not torch.allclose(decoder, encoder)


def test_switching_never_changes_trainability(base):
    set_trainable(base, [Adapter.ENCODER])
    before = {n: p.requires_grad for n, p in base.named_parameters()}
    with use_adapter(base, Adapter.DECODER):
        hidden(base)
    assert {n: p.requires_grad for n, p in base.named_parameters()} == before
    assert sum(before.values()) == len(adapter_parameters(base, Adapter.ENCODER))


def test_unknown_adapter_is_an_error(base):
    with pytest.raises(ValueError, match="query_reasoner"):
        with use_adapter(base, Adapter.QUERY_REASONER):
            pass
    with pytest.raises(ValueError, match="already exists"):
        add_adapters(base, [Adapter.ENCODER], LoraSettings())


def test_state_dict_is_peft_format_and_round_trips(base):
    state = adapter_state_dict(base, Adapter.ENCODER)
    assert all(k.startswith(PEFT_KEY_PREFIX) and ".encoder." not in k for k in state)
    assert f"{PEFT_KEY_PREFIX}model.layers.1.mlp.down_proj.lora_B.weight" in state
    saved = {k: v.clone() for k, v in state.items()}
    copy_adapter(base, Adapter.DECODER, Adapter.ENCODER)
    with use_adapter(base, Adapter.ENCODER):
        as_decoder = hidden(base)
    with use_adapter(base, Adapter.DECODER):
        torch.testing.assert_close(as_decoder, hidden(base))
    load_adapter_state_dict(base, Adapter.ENCODER, saved)
    for key, value in adapter_state_dict(base, Adapter.ENCODER).items():
        torch.testing.assert_close(value, saved[key])


def test_loading_checks_missing_unexpected_keys_and_shapes(base):
    state = dict(adapter_state_dict(base, Adapter.ENCODER))
    missing = dict(state)
    missing.pop(next(iter(missing)))
    with pytest.raises(KeyError, match="1 missing keys"):
        load_adapter_state_dict(base, Adapter.ENCODER, missing)
    with pytest.raises(KeyError, match="1 unexpected keys"):
        extra = {**state, "base_model.model.extra.lora_A.weight": torch.zeros(1)}
        load_adapter_state_dict(base, Adapter.ENCODER, extra)
    key = next(k for k in state if "lora_A" in k)
    with pytest.raises(ValueError, match="shape"):
        load_adapter_state_dict(base, Adapter.ENCODER, {**state, key: torch.zeros(8, 64)})


def two_adapter_step(model):
    """An encoder pass feeding a decoder pass, as CLaRa does, with LoRA dropout active."""
    torch.manual_seed(11)
    embeds = model.get_input_embeddings()(IDS)
    with use_adapter(model, Adapter.ENCODER):
        memory = model.model(inputs_embeds=embeds).last_hidden_state
    with use_adapter(model, Adapter.DECODER):
        out = model.model(inputs_embeds=embeds + memory.mean(1, keepdim=True)).last_hidden_state
    out.pow(2).mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def test_checkpoint_recomputation_replays_the_same_adapter(base):
    set_trainable(base, [Adapter.ENCODER, Adapter.DECODER])
    base.train()
    plain = two_adapter_step(base)
    enable_activation_checkpointing(base)
    checkpointed = two_adapter_step(base)
    assert plain.keys() == checkpointed.keys() and len(plain) == 2 * len(adapter_parameters(base, Adapter.ENCODER))
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


def test_plain_checkpointing_breaks_scoped_adapters(base):
    """Why enable_activation_checkpointing exists: transformers' own checkpointing recomputes every layer under
    whatever adapter is active at backward time (here: none), not the one its forward used."""
    set_trainable(base, [Adapter.ENCODER, Adapter.DECODER])
    base.train()
    base.activation_checkpointing_enable({"use_reentrant": False})
    with pytest.raises(CheckpointError):
        two_adapter_step(base)
