"""Collators: rows -> padded token tensors for each stage. They hold a tokenizer and token ids, never a model,
so they pickle into DataLoader workers.

Layouts (every sequence left-padded to the longest in its batch, so memory tokens sit at the right end):

- encoder input (documents, and stage-3 questions): `<ENC> text[:doc_max_length] <eos> <MEM0>..<MEM{M-1}>`;
- decoder input: the chat prompt (one `<MEM0>..<MEM{M-1}><SEP>` group per document) followed by the answer;
  labels are -100 on the prompt and the padding, and the answer's token ids elsewhere. The prompt is never
  truncated (its memory slots must all be there); the answer is cut at `max_len`.

Document, question and answer text is tokenised with special tokens split, so a document quoting `<|im_end|>`
or `<MEM0>` stays plain text and cannot break the layout.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from clara_model.config import ClaraConfig, Stage
from clara_model.data import PretrainRow, QuestionRow, RowKind
from clara_model.prompts import PARAPHRASE_TEMPLATES, ChatPrompt, PromptKind, build_prompt, format_qa_pairs
from clara_model.tokens import SpecialTokens, special_tokens_of

IGNORE_INDEX = -100


class _TensorBatch:
    """Moves and pins every tensor field of a dataclass batch."""

    def to(self, device: torch.device | str, non_blocking: bool = False):
        fields = dataclasses.fields(self)
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                                            for f in fields})

    def pin_memory(self):
        fields = dataclasses.fields(self)
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).pin_memory() for f in fields})


@dataclass
class CompressionBatch(_TensorBatch):
    """Stages 1 and 2: every document of the batch is compressed, and row b's prompt has one slot group per
    document of row b. Documents are listed row by row, in prompt order."""

    doc_ids: torch.Tensor  # [D, Le]
    doc_mask: torch.Tensor  # [D, Le]
    docs_per_row: torch.Tensor  # [B], sums to D
    dec_ids: torch.Tensor  # [B, Ld]
    dec_mask: torch.Tensor  # [B, Ld]
    labels: torch.Tensor  # [B, Ld], -100 on prompt and padding
    label_index: torch.Tensor  # [T], label_positions(labels): computed here, so the model never has to ask the device


@dataclass
class RetrievalBatch(_TensorBatch):
    """Stage 3: the question is encoded by the query reasoner, the N candidates by the frozen encoder; top-k
    picks k of them for the k slot groups of the prompt."""

    query_ids: torch.Tensor  # [B, Lq]
    query_mask: torch.Tensor  # [B, Lq]
    doc_ids: torch.Tensor  # [C, Le], the candidates of all rows, row by row
    doc_mask: torch.Tensor  # [C, Le]
    candidate_mask: torch.Tensor  # [B, N] bool, False past a row's own candidate count
    pos_mask: torch.Tensor  # [B, N] bool, True at pos_index
    dec_ids: torch.Tensor  # [B, Ld]
    dec_mask: torch.Tensor  # [B, Ld]
    labels: torch.Tensor  # [B, Ld]
    label_index: torch.Tensor  # [T], label_positions(labels)


def label_positions(labels: torch.Tensor) -> torch.Tensor:
    """Return the flat indices [T] into the [B, Ld - 1] grid of `labels[:, 1:]` that hold a label: the decoder
    positions whose next token is an answer token (position t predicts token t + 1)."""
    return (labels[:, 1:] != IGNORE_INDEX).flatten().nonzero().squeeze(1)


def encode_documents(
    tokenizer: PreTrainedTokenizerBase, tokens: SpecialTokens, texts: Sequence[str], doc_max_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (ids, mask) [D, Le] of the encoder inputs of `texts`: `<ENC> text <eos> <MEM0..M-1>`, left-padded."""
    ids = tokenizer(list(texts), add_special_tokens=False, split_special_tokens=True)["input_ids"]
    rows = [[tokens.enc_id, *text[:doc_max_length], tokens.eos_id, *tokens.mem_ids] for text in ids]
    return _left_pad(rows, tokens.pad_id)


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase, tokens: SpecialTokens, prompts: Sequence[ChatPrompt], max_len: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (ids, mask, labels) [B, Ld] of decoder inputs: prompt then answer (cut at `max_len`), left-padded.

    Raises:
        ValueError: when a prompt alone is longer than `max_len`.
    """
    rows, labels = [], []
    for prompt in prompts:
        # The prompt keeps its specials (<|im_start|>, <MEM*>, <SEP>); the answer's tail is the template's
        # end-of-turn (<|im_end|>), which must stay one token too.
        prompt_ids = tokenizer(prompt.prompt, add_special_tokens=False)["input_ids"]
        if len(prompt_ids) > max_len:
            raise ValueError(f"a decoder prompt has {len(prompt_ids)} tokens, more than max_len={max_len}")
        answer_ids = tokenizer(prompt.answer, add_special_tokens=False)["input_ids"] if prompt.answer else []
        answer_ids = answer_ids[: max_len - len(prompt_ids)]
        rows.append(prompt_ids + answer_ids)
        labels.append([IGNORE_INDEX] * len(prompt_ids) + answer_ids)
    ids, mask = _left_pad(rows, tokens.pad_id)
    label_ids, _ = _left_pad(labels, IGNORE_INDEX)
    return ids, mask, label_ids


def paraphrase_template(seed: int, key: Sequence[int]) -> int:
    """Return the index of the paraphrase template of the sample `key`, drawn from a generator seeded by
    (seed, *key): uniform over the templates, and the same for the same seed and key in any process."""
    return int(np.random.default_rng([seed, *key]).integers(len(PARAPHRASE_TEMPLATES)))


class PretrainCollator:
    """Stage 1: QA and paraphrase rows, mixed freely; one document per row.

    The paraphrase instruction is one of 13 templates drawn per sample, as the original drew one at random each
    time (reference §2.4), but from a generator seeded by (seed, the sample's key): the trainer's key is
    (epoch, row index), so a row gets a new draw each epoch, a resumed run draws what the original drew, and
    DataLoader workers agree. Called without keys (probes, benches), a sample's key is its document's CRC32.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        tokens: SpecialTokens,
        *,
        doc_max_length: int,
        max_len: int,
        seed: int = 0,
    ) -> None:
        _check_tokenizer(tokenizer, tokens)
        self.tokenizer, self.tokens = tokenizer, tokens
        self.doc_max_length, self.max_len, self.seed = doc_max_length, max_len, seed

    def __call__(self, rows: Sequence[PretrainRow], keys: Sequence[Sequence[int]] | None = None) -> CompressionBatch:
        """Return the batch of `rows`; `keys` (one tuple of ints per row) seed the paraphrase draws.

        Raises:
            ValueError: when `keys` has not one key per row.
        """
        _check_rows(rows, PretrainRow)
        if keys is None:
            keys = [(zlib.crc32(row.doc.encode()),) for row in rows]
        if len(keys) != len(rows):
            raise ValueError(f"{len(keys)} sample keys for {len(rows)} rows")
        prompts = [self._prompt(row, key) for row, key in zip(rows, keys)]
        doc_ids, doc_mask = encode_documents(self.tokenizer, self.tokens, [r.doc for r in rows], self.doc_max_length)
        dec_ids, dec_mask, labels = encode_prompts(self.tokenizer, self.tokens, prompts, self.max_len)
        docs_per_row = torch.ones(len(rows), dtype=torch.long)
        return CompressionBatch(doc_ids, doc_mask, docs_per_row, dec_ids, dec_mask, labels, label_positions(labels))

    def _prompt(self, row: PretrainRow, key: Sequence[int]) -> ChatPrompt:
        slots = self.tokens.slot_text()
        if row.kind is RowKind.QA:
            answer = format_qa_pairs(row.questions, row.answers)
            return build_prompt(self.tokenizer, PromptKind.PRETRAIN_QA, slots=slots, answer=answer)
        template = paraphrase_template(self.seed, key)
        return build_prompt(
            self.tokenizer, PromptKind.PARAPHRASE, slots=slots, answer=row.answers[0], template_index=template
        )


class InstructCollator:
    """Stage 2: answer a question from all of the row's documents (one slot group each)."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, tokens: SpecialTokens, *, doc_max_length: int, max_len: int
    ) -> None:
        _check_tokenizer(tokenizer, tokens)
        self.tokenizer, self.tokens = tokenizer, tokens
        self.doc_max_length, self.max_len = doc_max_length, max_len

    def __call__(self, rows: Sequence[QuestionRow], keys: Sequence[Sequence[int]] | None = None) -> CompressionBatch:
        """Return the batch of `rows`; `keys` is accepted like PretrainCollator's and unused (nothing is drawn)."""
        _check_rows(rows, QuestionRow)
        prompts = [
            build_prompt(
                self.tokenizer,
                PromptKind.ANSWER,
                slots=self.tokens.slot_text() * len(row.docs),
                question=row.question,
                answer=row.answer,
            )
            for row in rows
        ]
        docs = [doc for row in rows for doc in row.docs]
        doc_ids, doc_mask = encode_documents(self.tokenizer, self.tokens, docs, self.doc_max_length)
        dec_ids, dec_mask, labels = encode_prompts(self.tokenizer, self.tokens, prompts, self.max_len)
        docs_per_row = torch.tensor([len(row.docs) for row in rows], dtype=torch.long)
        return CompressionBatch(doc_ids, doc_mask, docs_per_row, dec_ids, dec_mask, labels, label_positions(labels))


class E2ECollator:
    """Stage 3: a question, its N candidates (N may differ between rows, each >= top_k), and a prompt with
    `top_k` slot groups for the documents the query reasoner will pick.

    Raises (on call):
        ValueError: when a row has fewer than `top_k` candidates.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        tokens: SpecialTokens,
        *,
        doc_max_length: int,
        max_len: int,
        top_k: int,
    ) -> None:
        _check_tokenizer(tokenizer, tokens)
        self.tokenizer, self.tokens = tokenizer, tokens
        self.doc_max_length, self.max_len, self.top_k = doc_max_length, max_len, top_k

    def __call__(self, rows: Sequence[QuestionRow], keys: Sequence[Sequence[int]] | None = None) -> RetrievalBatch:
        """Return the batch of `rows`; `keys` is accepted like PretrainCollator's and unused (nothing is drawn)."""
        _check_rows(rows, QuestionRow)
        for row in rows:
            if len(row.docs) < self.top_k:
                raise ValueError(f"a row has {len(row.docs)} candidates, fewer than top_k={self.top_k}: "
                                 f"{row.question[:60]!r}")
        slots = self.tokens.slot_text() * self.top_k
        prompts = [
            build_prompt(self.tokenizer, PromptKind.ANSWER, slots=slots, question=row.question, answer=row.answer)
            for row in rows
        ]
        n = max(len(row.docs) for row in rows)
        candidate_mask = torch.zeros(len(rows), n, dtype=torch.bool)
        pos_mask = torch.zeros(len(rows), n, dtype=torch.bool)
        for b, row in enumerate(rows):
            candidate_mask[b, : len(row.docs)] = True
            pos_mask[b, list(row.pos_index)] = True
        query_ids, query_mask = encode_documents(
            self.tokenizer, self.tokens, [row.question for row in rows], self.doc_max_length
        )
        docs = [doc for row in rows for doc in row.docs]
        doc_ids, doc_mask = encode_documents(self.tokenizer, self.tokens, docs, self.doc_max_length)
        dec_ids, dec_mask, labels = encode_prompts(self.tokenizer, self.tokens, prompts, self.max_len)
        return RetrievalBatch(
            query_ids, query_mask, doc_ids, doc_mask, candidate_mask, pos_mask, dec_ids, dec_mask, labels,
            label_positions(labels),
        )


def build_collator(
    tokenizer: PreTrainedTokenizerBase, tokens: SpecialTokens, config: ClaraConfig, *, seed: int = 0
) -> PretrainCollator | InstructCollator | E2ECollator:
    """Return the collator of `config`'s stage (decoder sequences cut at `config.decoder_max_len`)."""
    doc_max_length, max_len = config.model.doc_max_length, config.decoder_max_len
    if config.stage.stage is Stage.PRETRAIN:
        return PretrainCollator(tokenizer, tokens, doc_max_length=doc_max_length, max_len=max_len, seed=seed)
    if config.stage.stage is Stage.INSTRUCT:
        return InstructCollator(tokenizer, tokens, doc_max_length=doc_max_length, max_len=max_len)
    return E2ECollator(
        tokenizer, tokens, doc_max_length=doc_max_length, max_len=max_len, top_k=config.stage.generation_top_k
    )


def _left_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask


def _check_tokenizer(tokenizer: PreTrainedTokenizerBase, tokens: SpecialTokens) -> None:
    found = special_tokens_of(tokenizer, tokens.n_mem)
    if found.new_ids != tokens.new_ids:
        raise ValueError(f"the tokenizer's CLaRa token ids {found.new_ids} differ from the model's {tokens.new_ids}")


def _check_rows(rows: Sequence[object], kind: type) -> None:
    if not rows:
        raise ValueError("cannot collate an empty batch")
    wrong = {type(row).__name__ for row in rows if not isinstance(row, kind)}
    if wrong:
        raise TypeError(f"this collator takes {kind.__name__} rows, got {sorted(wrong)}")
