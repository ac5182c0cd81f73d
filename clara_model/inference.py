"""Inference API: compress, answer, answer with retrieval, paraphrase. Greedy and deterministic, on the model's
device (CPU or CUDA; nothing here names a device).

Each function takes a `ClaraModel` (from `load_checkpoint(path, for_inference=True)`) and plain strings, builds the
same layouts as training (collate.py, prompts.py), and leaves the model's adapters and mode as it found them.
Callers batch: every call is one forward batch.

Shapes: B questions, K documents per question, N candidates, M memory slots, H hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from clara_model.collate import encode_documents, encode_prompts
from clara_model.config import Adapter
from clara_model.modeling import ClaraModel, eval_mode
from clara_model.prompts import PromptKind, build_prompt
from clara_model.topk import cosine_scores, differentiable_topk

DEFAULT_MAX_NEW_TOKENS = 64  # the paper's evaluation budget for answers


@dataclass(frozen=True)
class RetrievalAnswers:
    """Answers of `answer_with_retrieval`, and for each question the candidate indices it used, best first."""

    answers: list[str]
    selected: list[list[int]]


@torch.no_grad()
def compress(model: ClaraModel, documents: Sequence[str]) -> torch.Tensor:
    """Return the memory vectors [D, M, H] of `documents` (the encoder adapter, eval mode)."""
    ids, mask = _documents(model, documents)
    with eval_mode(model):
        return model.compress(ids, mask, Adapter.ENCODER).memory


@torch.no_grad()
def answer(
    model: ClaraModel,
    questions: Sequence[str],
    documents: Sequence[Sequence[str]],
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> list[str]:
    """Return an answer to each question from its own documents (stage-2 style: all of them, in order).

    Raises:
        ValueError: when the counts of questions and document lists differ, or a question has no document.
    """
    if len(questions) != len(documents):
        raise ValueError(f"{len(questions)} questions but {len(documents)} document lists")
    if any(len(docs) == 0 for docs in documents):
        raise ValueError("every question needs at least one document")
    memory = compress(model, [doc for docs in documents for doc in docs])  # [D, M, H]
    counts = [len(docs) for docs in documents]
    return _generate(model, questions, counts, memory, PromptKind.ANSWER, max_new_tokens)


@torch.no_grad()
def answer_with_retrieval(
    model: ClaraModel,
    questions: Sequence[str],
    candidates: Sequence[Sequence[str]],
    k: int | None = None,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> RetrievalAnswers:
    """Return answers from the top-k of each question's candidates, as the query reasoner ranks them (stage 3).

    `k` defaults to the model's generation_top_k. Candidate lists may differ in length.

    Raises:
        ValueError: when a question has fewer than k candidates, or the counts differ.
    """
    if len(questions) != len(candidates):
        raise ValueError(f"{len(questions)} questions but {len(candidates)} candidate lists")
    k = k or model.config.stage.generation_top_k
    n = max(len(c) for c in candidates)
    candidate_mask = torch.zeros(len(questions), n, dtype=torch.bool, device=model.device)  # [B, N]
    for b, docs in enumerate(candidates):
        candidate_mask[b, : len(docs)] = True

    docs = compress(model, [doc for docs in candidates for doc in docs])  # [C, M, H]
    table = docs.new_zeros(len(questions), n, *docs.shape[1:])  # [B, N, M, H]
    table[candidate_mask] = docs
    query_ids, query_mask = _documents(model, questions)
    with eval_mode(model):
        query = model.compress(query_ids, query_mask, Adapter.QUERY_REASONER).memory  # [B, M, H]
    scores = cosine_scores(query.flatten(1), table.flatten(2), candidate_mask)  # [B, N]
    # The same selection as training: the forward of the straight-through top-k is the hard top-k.
    _, indices = differentiable_topk(scores, k, model.config.stage.topk_temperature)  # [B, K]
    selected = table[torch.arange(len(questions), device=model.device).unsqueeze(1), indices]  # [B, K, M, H]
    answers = _generate(model, questions, [k] * len(questions), selected.flatten(0, 1), PromptKind.ANSWER,
                        max_new_tokens)
    return RetrievalAnswers(answers=answers, selected=indices.tolist())


@torch.no_grad()
def paraphrase(
    model: ClaraModel, documents: Sequence[str], *, max_new_tokens: int = 128, template_index: int = 0
) -> list[str]:
    """Return the decoder's paraphrase of each document from its compressed form (a stage-1 probe).

    One fixed paraphrase instruction (`template_index`), not a random one, so the output is deterministic.
    """
    memory = compress(model, documents)
    return _generate(
        model, [""] * len(documents), [1] * len(documents), memory, PromptKind.PARAPHRASE, max_new_tokens,
        template_index=template_index,
    )


def _documents(model: ClaraModel, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = encode_documents(model.tokenizer, model.tokens, texts, model.config.model.doc_max_length)
    return ids.to(model.device), mask.to(model.device)


def _generate(
    model: ClaraModel,
    questions: Sequence[str],
    slots_per_row: Sequence[int],
    memory: torch.Tensor,
    kind: PromptKind,
    max_new_tokens: int,
    *,
    template_index: int = 0,
) -> list[str]:
    prompts = [
        build_prompt(
            model.tokenizer, kind, slots=model.tokens.slot_text() * count, question=q, template_index=template_index
        )
        for q, count in zip(questions, slots_per_row)
    ]
    ids, mask, _ = encode_prompts(model.tokenizer, model.tokens, prompts, model.config.decoder_max_len)
    slots = torch.tensor(slots_per_row, dtype=torch.long)
    texts = model.generate(ids.to(model.device), mask.to(model.device), memory, slots, max_new_tokens=max_new_tokens)
    return [text.strip() for text in texts]
