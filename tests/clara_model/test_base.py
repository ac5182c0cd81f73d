import pytest
import torch
from transformers import Qwen3ForCausalLM

from clara_model.base import (
    BaseModelUnavailableError,
    default_dtype,
    load_base_model,
    qwen3_4b_config,
    qwen3_tokenizer_dir,
)


def test_tiny_preset_is_a_seeded_frozen_qwen3():
    state = torch.random.get_rng_state()
    first, again = load_base_model("tiny", seed=0), load_base_model("tiny", seed=0)
    other = load_base_model("tiny", seed=1)
    torch.testing.assert_close(torch.random.get_rng_state(), state)  # the global RNG is left alone
    assert isinstance(first, Qwen3ForCausalLM)
    assert first.config._attn_implementation == "sdpa"
    assert first.dtype == torch.float32 and first.device.type == "cpu"
    assert not any(p.requires_grad for p in first.parameters()) and not first.training
    for (name, a), (_, b), (_, c) in zip(first.named_parameters(), again.named_parameters(), other.named_parameters()):
        torch.testing.assert_close(a, b)
        if name.endswith("q_proj.weight"):
            assert not torch.equal(a, c)


def test_tiny_preset_uses_the_real_qwen3_tokenizer_files():
    folder = qwen3_tokenizer_dir()
    assert (folder / "tokenizer.json").stat().st_size > 10_000_000


def test_an_unavailable_hub_model_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BaseModelUnavailableError, match="Qwen/Qwen3-4B-Instruct-2507.*HF_HUB_OFFLINE"):
        load_base_model("Qwen/Qwen3-4B-Instruct-2507")


def test_a_bad_local_path_fails_clearly(tmp_path):
    with pytest.raises(BaseModelUnavailableError, match="cannot load the weights"):
        load_base_model(str(tmp_path / "no-such-model"))


def test_precision_defaults():
    assert default_dtype(torch.device("cuda")) == torch.bfloat16
    assert default_dtype(torch.device("cpu")) == torch.float32


def test_qwen3_4b_dimensions():
    config = qwen3_4b_config()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads,
            config.head_dim, config.intermediate_size, config.vocab_size) == (2560, 36, 32, 8, 128, 9728, 151936)
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == 4_022_468_096  # Qwen3-4B, tied embeddings
