import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from clara_model.base import QWEN3_VOCAB_ROWS, load_tokenizer
from clara_model.tokens import (
    SpecialTokenEmbedding,
    SpecialTokens,
    add_special_tokens,
    ensure_embedding_rows,
    mean_embedding,
    new_rows_init,
    special_tokens_of,
)

QWEN3_TOKENS = 151_669  # entries of the real Qwen3 tokenizer


def test_new_tokens_are_appended_after_the_real_vocabulary(qwen_tokenizer):
    tokens = special_tokens_of(qwen_tokenizer, 4)
    assert tokens.mem_ids == (151669, 151670, 151671, 151672)
    assert (tokens.enc_id, tokens.sep_id) == (151673, 151674)
    assert (tokens.eos_id, tokens.pad_id) == (151645, 151643)  # <|im_end|>, <|endoftext|>
    assert qwen_tokenizer.bos_token is None  # the wrapper never needs one
    assert qwen_tokenizer.encode("<MEM2><SEP>x", add_special_tokens=False)[:2] == [151671, 151674]
    assert "<|im_start|>" in qwen_tokenizer.extra_special_tokens  # Qwen's own specials stay special


def test_adding_is_idempotent_and_extends():
    tokenizer = load_tokenizer("tiny")
    first = add_special_tokens(tokenizer, 2)
    assert add_special_tokens(tokenizer, 2) == first and len(tokenizer) == QWEN3_TOKENS + 4
    more = add_special_tokens(tokenizer, 3)  # <MEM2> is appended; the others keep their ids
    assert more.mem_ids[:2] == first.mem_ids and more.enc_id == first.enc_id
    assert len(tokenizer) == QWEN3_TOKENS + 5
    assert SpecialTokens.from_dict(more.to_dict()) == more


def test_a_missing_token_is_an_error(qwen_tokenizer):
    with pytest.raises(ValueError, match="<MEM4>"):
        special_tokens_of(qwen_tokenizer, 5)


def test_vocabulary_never_shrinks_and_new_rows_start_at_a_real_rows_norm(frozen_pretrain_model):
    base, tokens = frozen_pretrain_model.base, frozen_pretrain_model.tokens
    weight = base.get_input_embeddings().weight
    assert weight.shape[0] == QWEN3_VOCAB_ROWS  # resize_token_embeddings(len(tok)) would have made it 151,675
    assert base.get_output_embeddings().weight is weight  # still tied
    rows = frozen_pretrain_model.special_embedding.weight.detach()
    assert rows.shape == (6, base.config.hidden_size)  # [n_mem + 2, H]
    torch.testing.assert_close(weight[list(tokens.new_ids)], rows)  # the tied output rows start the same
    torch.testing.assert_close(rows, new_rows_init(base, tokens))  # seeded: the same draw every time
    # A real row's norm (the mean alone is ~sqrt(151,669) ~ 390x shorter); the squared norm of a draw is a sum of
    # H = 64 terms, so a row lies within +-50% of the typical norm with overwhelming probability.
    typical = weight[:QWEN3_TOKENS].float().pow(2).sum(dim=1).mean().sqrt()
    assert mean_embedding(base, tokens).norm() < typical / 100
    norms = rows.float().norm(dim=1) / typical
    assert bool(((norms > 0.5) & (norms < 1.5)).all()), norms
    assert len({tuple(row.tolist()) for row in rows}) == len(tokens.new_ids)  # distinct rows


class _Rows(torch.nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding.from_pretrained(weight)

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.embedding


def test_new_rows_are_drawn_from_the_mean_and_covariance_of_the_real_rows():
    generator = torch.Generator().manual_seed(3)
    n, draws = 5000, 4000
    mixing = torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.3, 0.1]])  # an anisotropic covariance
    real = torch.randn(n, 3, generator=generator) @ mixing + torch.tensor([1.0, -2.0, 0.5])
    model = _Rows(torch.cat([real, torch.zeros(draws + 2, 3)]))
    tokens = SpecialTokens(mem_ids=tuple(range(n, n + draws)), enc_id=n + draws, sep_id=n + draws + 1, eos_id=0,
                           pad_id=0)
    state = torch.random.get_rng_state()
    rows = new_rows_init(model, tokens, seed=7)  # [draws + 2, 3]
    assert torch.equal(torch.random.get_rng_state(), state)  # a generator of its own
    torch.testing.assert_close(rows, new_rows_init(model, tokens, seed=7))
    assert not torch.equal(rows, new_rows_init(model, tokens, seed=8))
    torch.testing.assert_close(rows.mean(dim=0), real.mean(dim=0), atol=0.1, rtol=0)
    torch.testing.assert_close(rows.T.cov(), real.T.cov(correction=0), atol=0.15, rtol=0.05)


def test_embedding_grows_to_fit_a_larger_tokenizer_and_never_shrinks():
    tokenizer = load_tokenizer("tiny")
    tokens = add_special_tokens(tokenizer, 16)  # ids up to 151,686
    config = Qwen3Config(vocab_size=151_680, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, head_dim=8, tie_word_embeddings=True)
    small = Qwen3ForCausalLM(config)
    ensure_embedding_rows(small, tokens)
    assert small.get_input_embeddings().num_embeddings == 151_744  # grown to a multiple of 64
    big = Qwen3ForCausalLM(Qwen3Config(**{**config.to_dict(), "vocab_size": QWEN3_VOCAB_ROWS}))
    ensure_embedding_rows(big, tokens)
    assert big.get_input_embeddings().num_embeddings == QWEN3_VOCAB_ROWS


def test_special_embedding_trains_only_its_own_rows():
    tokens = SpecialTokens(mem_ids=(10, 11), enc_id=12, sep_id=13, eos_id=1, pad_id=0)
    base = torch.nn.Embedding(20, 4)
    base.weight.requires_grad_(False)
    special = SpecialTokenEmbedding(tokens, torch.randn(4, 4))
    ids = torch.tensor([[3, 12, 5, 10, 11, 13]])  # [1, 6]
    out = special(ids, base)  # [1, 6, 4]
    torch.testing.assert_close(out[0, [0, 2]], base.weight[[3, 5]])
    torch.testing.assert_close(out[0, [1, 3, 4, 5]], special.weight[[2, 0, 1, 3]])
    out[0, [1, 3]].sum().backward()  # <ENC> and <MEM0> only
    assert base.weight.grad is None
    assert special.weight.grad[[0, 2]].abs().sum() > 0 and special.weight.grad[[1, 3]].abs().sum() == 0
