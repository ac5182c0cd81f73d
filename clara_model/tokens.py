"""The special tokens CLaRa adds to the base tokenizer, and the small parameter that trains their rows.

New tokens: `<MEM0>` .. `<MEM{n-1}>` (the memory slots, n = n_mem), `<ENC>` (opens every encoder input) and
`<SEP>` (closes every memory slot group in a decoder prompt).

The encoder input of a document is `<ENC> text <eos> <MEM0> .. <MEM{n-1}>`. It uses the tokenizer's EOS to close
the text and never a BOS: Qwen3 has none, and the original code crashed or silently substituted
`<|im_start|>` depending on whether the *path string* contained "qwen" (reference §6.3 Q1).

Embedding rows: the new ids fall inside Qwen's padded vocabulary (151,936 rows for 151,669 tokens), so no resize
is needed; when a tokenizer outgrows its matrix the matrix only ever grows (`resize_token_embeddings(len(tok))`
would shrink Qwen's and hand the new tokens stale rows, reference §1.3). The rows start at a seeded draw from
N(mean, covariance) of the real tokens' rows (see `new_rows_init`). Their trained values live in
`SpecialTokenEmbedding.weight`, a [S, H] parameter (S = n_mem + 2), instead of making the whole 151,936 x H matrix
trainable behind a gradient mask (reference §2.3).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

ENC_TOKEN = "<ENC>"
SEP_TOKEN = "<SEP>"


def mem_token(i: int) -> str:
    """Return the text of memory token `i`."""
    return f"<MEM{i}>"


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of every token CLaRa's layouts use. Plain data: collators get this, never the model."""

    mem_ids: tuple[int, ...]
    enc_id: int
    sep_id: int
    eos_id: int  # closes every document and every answer; the tokenizer's own EOS
    pad_id: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "mem_ids", tuple(int(i) for i in self.mem_ids))
        if not self.mem_ids:
            raise ValueError("mem_ids must hold at least one memory token id")

    @property
    def n_mem(self) -> int:
        return len(self.mem_ids)

    @property
    def new_ids(self) -> tuple[int, ...]:
        """The ids whose embedding rows CLaRa owns, in the order of `SpecialTokenEmbedding.weight`."""
        return (*self.mem_ids, self.enc_id, self.sep_id)

    def slot_text(self) -> str:
        """Return one decoder memory slot group: `<MEM0>..<MEM{n-1}><SEP>`."""
        return "".join(mem_token(i) for i in range(self.n_mem)) + SEP_TOKEN

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mem_ids"] = list(self.mem_ids)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpecialTokens:
        return cls(**data)


def add_special_tokens(tokenizer: PreTrainedTokenizerBase, n_mem: int) -> SpecialTokens:
    """Add CLaRa's tokens to `tokenizer` (in place, idempotent) and return their ids.

    Raises:
        ValueError: when the tokenizer has no EOS token (documents and answers need one to end).
    """
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no eos_token; CLaRa ends documents with it")
    wanted = [mem_token(i) for i in range(n_mem)] + [ENC_TOKEN, SEP_TOKEN]
    present = set(tokenizer.get_vocab())
    missing = [t for t in wanted if t not in present]
    if missing:
        # Append to (not replace) the tokenizer's own extra specials: Qwen's <|im_start|> etc. must stay special.
        tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    return special_tokens_of(tokenizer, n_mem)


def special_tokens_of(tokenizer: PreTrainedTokenizerBase, n_mem: int) -> SpecialTokens:
    """Return the ids of CLaRa's tokens in a tokenizer that already has them.

    Raises:
        ValueError: when a token is missing or is not a single token.
    """
    ids = {}
    for text in [mem_token(i) for i in range(n_mem)] + [ENC_TOKEN, SEP_TOKEN]:
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) != 1 or encoded[0] == tokenizer.unk_token_id:
            raise ValueError(f"{text} is not a single token in {tokenizer.name_or_path!r}: {encoded}")
        ids[text] = encoded[0]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return SpecialTokens(
        mem_ids=tuple(ids[mem_token(i)] for i in range(n_mem)),
        enc_id=ids[ENC_TOKEN],
        sep_id=ids[SEP_TOKEN],
        eos_id=tokenizer.eos_token_id,
        pad_id=pad_id,
    )


def ensure_embedding_rows(model: PreTrainedModel, tokens: SpecialTokens) -> None:
    """Grow the embedding matrix (never shrink it) until every special id has a row."""
    rows = model.get_input_embeddings().num_embeddings
    needed = max(tokens.new_ids) + 1
    if needed > rows:
        logger.info("growing the embedding matrix from %d to at least %d rows", rows, needed)
        model.resize_token_embeddings(needed, pad_to_multiple_of=64, mean_resizing=False)


NEW_ROWS_SEED = 0  # the draw is part of the model: a checkpoint's tied output rows are re-drawn, identically, on load
_CHUNK_ROWS = 16_384  # rows converted to fp32 at a time (160 MB at H = 2560)


def mean_embedding(model: PreTrainedModel, tokens: SpecialTokens) -> torch.Tensor:
    """Return the mean input embedding over the real tokens, those below the first new id. Shape [H], fp32."""
    weight = model.get_input_embeddings().weight.detach()
    n = min(tokens.new_ids)
    total = torch.zeros(weight.size(1), dtype=torch.float32, device=weight.device)
    for start in range(0, n, _CHUNK_ROWS):
        total += weight[start : min(n, start + _CHUNK_ROWS)].float().sum(dim=0)
    return total / n


def new_rows_init(model: PreTrainedModel, tokens: SpecialTokens, seed: int = NEW_ROWS_SEED) -> torch.Tensor:
    """Return initial rows [S, H] (fp32) for the new tokens: independent draws from N(mu, Sigma), the mean and
    covariance of the real tokens' rows (those below the first new id), from a generator seeded by `seed`.

    This is transformers' `mean_resizing` with the full covariance: transformers scales Sigma by 1e-9, which
    leaves every row at the mean. On a random-init base the mean of 151,669 rows has a norm ~1/390 of a real
    row's, an RMS below RMSNorm's sqrt(eps): the first norm layer then divides by sqrt(eps) instead of the
    row's RMS, and the row's gradient came out 50-500x the LoRA weights', setting the global clip alone. A draw
    from N(mu, Sigma) has the real rows' expected squared norm, ||mu||^2 + tr(Sigma).

    Sigma is never formed: with X the [n, H] centred real rows and z ~ N(0, I_n), z^T X / sqrt(n) has
    covariance X^T X / n = Sigma exactly. That is O(n H S) instead of O(n H^2) plus a Cholesky of [H, H], and
    needs no positive-definite Sigma (a tiny model has H > rank). z is drawn on the CPU, so the rows do not
    depend on the device.
    """
    weight = model.get_input_embeddings().weight.detach()
    n, s = min(tokens.new_ids), len(tokens.new_ids)
    mean = mean_embedding(model, tokens)  # [H]
    z = torch.randn(n, s, generator=torch.Generator().manual_seed(seed)).to(weight.device)  # [n, S]
    noise = torch.zeros(s, weight.size(1), dtype=torch.float32, device=weight.device)  # [S, H]
    for start in range(0, n, _CHUNK_ROWS):
        stop = min(n, start + _CHUNK_ROWS)
        noise += z[start:stop].T @ (weight[start:stop].float() - mean)  # [S, chunk] @ [chunk, H]
    return mean + noise / n**0.5  # [S, H]


class SpecialTokenEmbedding(nn.Module):
    """Embeds ids through the frozen base embedding, except CLaRa's new tokens, whose rows live here.

    `weight` [S, H] (S = n_mem + 2) is the only embedding parameter that can train, so the optimizer holds S x H
    values instead of the whole vocabulary (for Qwen3-4B: 25,600 instead of 389 M).
    """

    def __init__(self, tokens: SpecialTokens, init: torch.Tensor) -> None:
        super().__init__()
        if init.dim() != 2 or init.size(0) != len(tokens.new_ids):
            raise ValueError(f"init must have shape [{len(tokens.new_ids)}, H], got {tuple(init.shape)}")
        self.weight = nn.Parameter(init.detach().clone())
        self.register_buffer("ids", torch.tensor(tokens.new_ids, dtype=torch.long), persistent=False)

    @classmethod
    def from_model(cls, model: PreTrainedModel, tokens: SpecialTokens) -> SpecialTokenEmbedding:
        """Build with the rows of `new_rows_init`, and write the same rows into the base embedding too.

        Writing the base rows matters for the tied LM head: its (frozen) output rows of the new tokens then
        start equal to their input rows, as tying means, not at whatever an unused padding row of the
        checkpoint held. An untied head is left alone.
        """
        ensure_embedding_rows(model, tokens)
        embedding = model.get_input_embeddings()
        init = new_rows_init(model, tokens).to(embedding.weight.dtype)  # [S, H]
        with torch.no_grad():
            embedding.weight[list(tokens.new_ids)] = init
        return cls(tokens, init).to(embedding.weight.device)

    def forward(self, input_ids: torch.Tensor, base: nn.Embedding) -> torch.Tensor:
        """Return the embeddings of `input_ids` [B, L] as [B, L, H]."""
        embeds = base(input_ids)  # [B, L, H], frozen rows
        hits = input_ids.unsqueeze(-1) == self.ids  # [B, L, S]
        is_new = hits.any(dim=-1, keepdim=True)  # [B, L, 1]
        own = hits.to(self.weight.dtype) @ self.weight  # [B, L, H]; rows of non-special positions are 0
        return torch.where(is_new, own.to(embeds.dtype), embeds)
