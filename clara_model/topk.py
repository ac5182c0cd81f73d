"""Retrieval math for stage 3, as pure tensor functions: cosine scores, straight-through top-k, InfoNCE.

Shapes: B batch, N candidates, K top-k.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clara_model.asserts import check

DEFAULT_TEMPERATURE = 0.02  # the paper's, for cosine scores


def cosine_scores(query: torch.Tensor, docs: torch.Tensor, candidate_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Return fp32 cosine similarities [B, N] of `query` [B, D] against `docs` [B, N, D].

    Normalisation happens in fp32 (the original normalised in bf16). Positions where `candidate_mask` [B, N] is
    False get -inf, so no top-k or softmax ever picks them.
    """
    q = F.normalize(query.float(), dim=-1)  # [B, D]
    d = F.normalize(docs.float(), dim=-1)  # [B, N, D]
    scores = torch.einsum("bd,bnd->bn", q, d)  # [B, N]
    if candidate_mask is not None:
        scores = scores.masked_fill(~candidate_mask, float("-inf"))
    return scores


def differentiable_topk(
    scores: torch.Tensor, k: int, temperature: float = DEFAULT_TEMPERATURE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return straight-through top-k selection weights [B, K, N] and the chosen indices [B, K] (best first).

    Forward: the weights are exactly the hard one-hot rows of `topk(scores, k)`. Backward: slot j's gradient
    flows through softmax(scores / temperature) over the documents not taken by slots 0..j-1. Taken documents
    are masked with -inf, so a later slot gives them exactly zero mass and zero gradient. (The original added
    log(1e-8) ~ -18.4 instead, which at temperature 0.02 is dwarfed by logits spanning +-50: later slots kept
    almost all their soft mass on documents already taken, reference §1.10 and B7.)

    Scores of -inf (missing candidates) are never chosen while enough finite scores remain.

    Raises:
        ValueError: when k < 1, temperature <= 0, or a row has fewer than k selectable candidates.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if scores.size(-1) < k:
        raise ValueError(f"top-k needs at least k={k} candidates per row; got N={scores.size(-1)}")
    selectable = torch.isfinite(scores).sum(dim=-1)  # [B]
    check(selectable >= k, lambda: f"top-k needs at least k={k} candidates per row; got N={scores.size(-1)} with "
          f"{int(selectable.min())} selectable in the poorest row")
    indices = scores.float().topk(k, dim=-1).indices  # [B, K], best first
    hard = F.one_hot(indices, scores.size(-1)).float()  # [B, K, N]
    soft = soft_topk(scores, indices, temperature)  # [B, K, N]
    return hard + soft - soft.detach(), indices


def soft_topk(scores: torch.Tensor, indices: torch.Tensor, temperature: float) -> torch.Tensor:
    """Return the relaxed top-k [B, K, N]: slot j is softmax(scores / temperature) over the documents that slots
    0..j-1 did not take (`indices` [B, K]); taken documents get -inf, hence exactly zero mass."""
    logits = scores.float() / temperature  # [B, N]
    soft = []
    taken = torch.zeros_like(logits, dtype=torch.bool)  # [B, N]
    for j in range(indices.size(1)):
        soft.append(torch.softmax(logits.masked_fill(taken, float("-inf")), dim=-1))  # [B, N]
        taken = taken.scatter(1, indices[:, j : j + 1], True)
    return torch.stack(soft, dim=1)


def multi_positive_infonce(
    scores: torch.Tensor, positives: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE
) -> torch.Tensor:
    """Return the multi-positive InfoNCE loss: the mean over rows with a positive of
    -log( sum_{n in P_b} exp(s_bn / t) / sum_n exp(s_bn / t) ).

    `scores` [B, N] (-inf where no candidate), `positives` [B, N] bool (from pos_index). Rows without a positive
    do not count; a batch without any gives 0 (no gradient), so that data where some rows lack pos_index trains
    with the term on by default (e2e.yaml).
    """
    has_positive = positives.any(dim=-1)  # [B]
    logits = scores.float() / temperature  # [B, N]
    # A row without positives counts every candidate as one, so its terms stay finite (an all -inf logsumexp
    # would put NaN in the backward pass); the row is then weighted 0. A mask, not boolean indexing, whose
    # output size the host would have to wait for.
    counted = positives | ~has_positive.unsqueeze(-1)  # [B, N]
    positive = torch.logsumexp(logits.masked_fill(~counted, float("-inf")), dim=-1)  # [B]
    everything = torch.logsumexp(logits, dim=-1)  # [B]
    weight = has_positive.to(logits.dtype)  # [B]
    return ((everything - positive) * weight).sum() / weight.sum().clamp(min=1.0)
