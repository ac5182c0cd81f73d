"""The CLaRa model: compress documents, retrieve among candidates, and generate from compressed documents.

One frozen base causal LM carries three LoRA adapters (see adapters.py). Every pass names its adapter:

- `compress` (encoder or query reasoner): `<ENC> text <eos> <MEM0..M-1>` through the backbone only (no LM head);
  the final (post-norm) hidden states at the M memory positions are the document's M vectors.
- `decoder_loss` / `generate` (decoder): a chat prompt whose memory slots are overwritten by those vectors.

Stage losses (`forward`):

- pretrain / instruct: CE on the answer tokens + mse_weight x MSE(mean token state, mean memory state);
- e2e: the query reasoner scores N candidates by cosine, straight-through top-k picks K, and the decoder's CE
  trains reasoner + decoder; candidates are compressed by the frozen encoder without gradient, in eval mode
  (no LoRA dropout noise on fixed document vectors). Optional InfoNCE on pos_index.

Shapes: B batch, D documents in a batch, N candidates, K top-k, L tokens, M memory slots, H hidden.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from clara_model.adapters import (
    add_adapters,
    copy_adapter,
    enable_activation_checkpointing,
    set_trainable,
    use_adapter,
)
from clara_model.asserts import check
from clara_model.base import load_base_model, load_tokenizer
from clara_model.collate import CompressionBatch, RetrievalBatch, label_positions
from clara_model.config import Adapter, AdapterInit, ClaraConfig, Stage
from clara_model.head import SharedRowHead
from clara_model.tokens import SpecialTokenEmbedding, SpecialTokens, add_special_tokens
from clara_model.topk import cosine_scores, differentiable_topk, multi_positive_infonce

logger = logging.getLogger(__name__)


@dataclass
class Compression:
    """What the encoder (or query reasoner) makes of a batch of texts."""

    memory: torch.Tensor  # [D, M, H], the model's dtype
    mse: torch.Tensor  # [] fp32: mean over D x H of (mean token state - mean memory state)^2


@dataclass
class ClaraOutput:
    """One training step's losses. `loss` is what to backpropagate; the rest is for logging."""

    loss: torch.Tensor
    ce: torch.Tensor
    mse: torch.Tensor
    retrieval_loss: torch.Tensor | None = None
    topk_indices: torch.Tensor | None = None  # [B, K], e2e only


class ClaraModel(nn.Module):
    """A frozen base LM with CLaRa's adapters and special-token rows, configured for one stage.

    Trainability is set here, once, from `config.stage`: the LoRA weights of `trainable_adapters` and, when
    `train_special_tokens`, the [S, H] special-token rows. Nothing else trains.
    """

    def __init__(
        self, base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: ClaraConfig, tokens: SpecialTokens
    ) -> None:
        super().__init__()
        if tokens.n_mem != config.model.n_mem:
            raise ValueError(f"tokens have {tokens.n_mem} memory ids, config.model.n_mem is {config.model.n_mem}")
        self.base = base
        self.tokenizer = tokenizer
        self.config = config
        self.tokens = tokens
        self.special_embedding = SpecialTokenEmbedding.from_model(base, tokens)
        self.register_buffer("mem_ids", torch.tensor(tokens.mem_ids, device=base.device), persistent=False)
        set_trainable(base, config.stage.trainable_adapters)
        self.special_embedding.weight.requires_grad_(config.stage.train_special_tokens)
        if config.stage.activation_checkpointing:
            enable_activation_checkpointing(base)
        self.shared_head = SharedRowHead.detect(base.get_output_embeddings())  # None but for the CPU base
        if self.shared_head is not None:
            logger.info("output layer: %d of its %d rows are one shared vector; the answer loss scores the %d "
                        "distinct rows (the same loss, see clara_model.head)",
                        round(float(self.shared_head.log_count[-1].exp())), self.shared_head.index.numel(),
                        self.shared_head.rows.size(0))
        logger.info(
            "stage %s: adapters %s, training %s%s: %d parameters",
            config.stage.stage.value,
            [a.value for a in config.stage.adapters],
            sorted(a.value for a in config.stage.trainable_adapters),
            " + special-token rows" if config.stage.train_special_tokens else "",
            sum(p.numel() for p in self.parameters() if p.requires_grad),
        )

    @classmethod
    def from_config(
        cls, config: ClaraConfig, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> ClaraModel:
        """Build a model from the base LM alone: every adapter fresh (the query reasoner a copy of the encoder).

        Raises:
            ValueError: when the stage hands an adapter off from a checkpoint; use `load_checkpoint` for that.
            BaseModelUnavailableError: when the base model cannot be loaded.
        """
        _refuse_hand_off(config)
        spec = config.model
        base = load_base_model(
            spec.base_model, device=device, dtype=dtype, attn_implementation=spec.attn_implementation, seed=spec.seed
        )
        return cls.from_base(base, load_tokenizer(spec.base_model), config)

    @classmethod
    def from_base(
        cls, base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: ClaraConfig
    ) -> ClaraModel:
        """Build a model around a base LM already in memory (e.g. one built from a `Qwen3Config`), as
        `from_config` does after loading it: CLaRa's tokens added to `tokenizer`, every adapter fresh.

        `config.model.base_model` is only recorded; `base` is frozen except for the stage's adapters.

        Raises:
            ValueError: when the stage hands an adapter off from a checkpoint.
        """
        _refuse_hand_off(config)
        tokens = add_special_tokens(tokenizer, config.model.n_mem)
        add_adapters(base, config.stage.adapters, config.model.lora)
        if config.stage.adapter_init.get(Adapter.QUERY_REASONER) is AdapterInit.COPY_OF_ENCODER:
            copy_adapter(base, Adapter.ENCODER, Adapter.QUERY_REASONER)
        return cls(base, tokenizer, config, tokens)

    @property
    def device(self) -> torch.device:
        return self.special_embedding.weight.device

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """Return the parameters this stage trains, by name (what the optimizer gets)."""
        return {name: param for name, param in self.named_parameters() if param.requires_grad}

    # -- building blocks ------------------------------------------------------------------------------------

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Return input embeddings [B, L, H]: the base rows, and CLaRa's own rows for its special tokens."""
        return self.special_embedding(input_ids, self.base.get_input_embeddings())

    def hidden_states(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Return the backbone's final (post-norm) hidden states [B, L, H]; the LM head is not run."""
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # [B, L]; left padding starts at 0
        out = self.base.base_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        )
        return out.last_hidden_state

    def compress(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, adapter: Adapter) -> Compression:
        """Compress encoder inputs [D, L] (see collate.encode_documents) into memory vectors [D, M, H].

        Raises:
            ValueError: when the inputs do not end with the M memory tokens.
        """
        m = self.tokens.n_mem
        message = "encoder inputs must end with <MEM0>..<MEM{M-1}> (use collate.encode_documents)"
        if input_ids.size(1) < m:
            raise ValueError(message)
        check(input_ids[:, -m:] == self.mem_ids, message)
        with use_adapter(self.base, adapter):
            states = self.hidden_states(self.embed(input_ids), attention_mask)  # [D, L, H]
        memory = states[:, -m:]  # [D, M, H]: left padding puts the memory tokens last

        # MSE alignment in fp32 (the original summed ~260 bf16 vectors): mean state of the attended non-memory
        # tokens (<ENC>, text, <eos>) against the mean memory state.
        states32 = states.float()
        text_mask = attention_mask.clone()
        text_mask[:, -m:] = 0
        text_mask = text_mask.unsqueeze(-1).to(states32.dtype)  # [D, L, 1]
        mean_text = (states32 * text_mask).sum(dim=1) / text_mask.sum(dim=1)  # [D, H]
        mean_memory = states32[:, -m:].mean(dim=1)  # [D, H]
        return Compression(memory=memory, mse=F.mse_loss(mean_text, mean_memory))

    def decoder_inputs(
        self, input_ids: torch.Tensor, memory: torch.Tensor, slots_per_row: torch.Tensor
    ) -> torch.Tensor:
        """Return decoder input embeddings [B, L, H] with every memory slot overwritten by `memory` [D, M, H].

        Row b has `slots_per_row[b]` slot groups `<MEM0>..<MEM{M-1}><SEP>`; they take the next documents of
        `memory` in order. The `<SEP>` positions keep their own embedding.

        Raises:
            ValueError: when the prompts' slots do not match the documents (count or order).
        """
        m = self.tokens.n_mem
        is_memory = torch.isin(input_ids, self.mem_ids)  # [B, L]
        expected = slots_per_row.to(is_memory.device, non_blocking=True) * m  # [B]
        found = is_memory.sum(dim=1)  # [B]
        check(
            torch.cat([found == expected, (expected.sum() == memory.size(0) * m).view(1)]),
            lambda: f"memory slots per row {found.tolist()} do not match {memory.size(0)} documents x {m} "
            f"(expected {expected.tolist()}); did the text contain a <MEM> token?",
        )
        # The n-th memory position of the flattened batch (row by row, left to right: document by document, slot
        # by slot, the order of memory.reshape(-1)) takes memory row n; index arithmetic instead of boolean
        # indexing or masked_scatter, whose output sizes the host would have to wait for.
        order = is_memory.flatten().cumsum(0).view_as(input_ids) - 1  # [B, L]; n at the n-th memory position
        check(
            ~is_memory | (input_ids == self.mem_ids[order.remainder(m)]),
            "memory tokens in the prompt are not in <MEM0>..<MEM{M-1}> groups",
        )
        embeds = self.embed(input_ids)  # [B, L, H]
        if memory.size(0) == 0:  # no document (a closed-book prompt): the check above saw no memory position
            return embeds
        slots = memory.reshape(-1, memory.size(-1)).to(embeds.dtype)  # [D*M, H]
        taken = slots[order.clamp(min=0, max=slots.size(0) - 1)]  # [B, L, H]; garbage off the memory positions
        return torch.where(is_memory.unsqueeze(-1), taken, embeds)

    def decoder_loss(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        memory: torch.Tensor,
        slots_per_row: torch.Tensor,
        label_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the decoder's token-mean cross-entropy over the answer tokens (fp32 scalar).

        Logits are computed for the answer positions only: a prompt position needs none, and for a 151k
        vocabulary they would dominate activation memory (reference §5). `label_index` [T] lists those positions
        (see collate.label_positions); the collators compute it on the host, since finding them on the device
        makes the host wait for the decoder's forward pass to learn T.

        Raises:
            ValueError: when no row of the batch has an answer token left (all truncated by max_len).
        """
        if label_index is None:
            label_index = label_positions(labels)
        if label_index.numel() == 0:  # a shape: known on the host
            raise ValueError("every answer in this batch was truncated away by max_len; raise max_len")
        embeds = self.decoder_inputs(input_ids, memory, slots_per_row)
        with use_adapter(self.base, Adapter.DECODER):
            states = self.hidden_states(embeds, attention_mask)  # [B, L, H]
        h = states.size(-1)
        states = states[:, :-1].reshape(-1, h).index_select(0, label_index)  # [T, H]: position t predicts t+1
        targets = labels[:, 1:].reshape(-1).index_select(0, label_index)  # [T]
        head = self.base.get_output_embeddings()
        if self.shared_head is not None:  # the CPU base: the same loss from its distinct rows (see head.py)
            return self.shared_head.cross_entropy(states, targets)
        logits = head(states).float()  # [T, V]
        return F.cross_entropy(logits, targets)

    # -- stage losses --------------------------------------------------------------------------------------

    def forward(self, batch: CompressionBatch | RetrievalBatch) -> ClaraOutput:
        """Return the loss of this model's stage on `batch` (the collator of the same stage made it).

        Raises:
            TypeError: when the batch does not belong to the stage.
        """
        stage = self.config.stage.stage
        if stage in (Stage.PRETRAIN, Stage.INSTRUCT) and isinstance(batch, CompressionBatch):
            return self._compression_loss(batch)
        if stage is Stage.E2E and isinstance(batch, RetrievalBatch):
            return self._retrieval_loss(batch)
        raise TypeError(f"stage {stage.value} cannot train on a {type(batch).__name__}")

    def _compression_loss(self, batch: CompressionBatch) -> ClaraOutput:
        docs = self.compress(batch.doc_ids, batch.doc_mask, Adapter.ENCODER)
        ce = self.decoder_loss(batch.dec_ids, batch.dec_mask, batch.labels, docs.memory, batch.docs_per_row,
                               batch.label_index)
        return ClaraOutput(loss=ce + self.config.stage.mse_weight * docs.mse, ce=ce, mse=docs.mse)

    def _retrieval_loss(self, batch: RetrievalBatch) -> ClaraOutput:
        stage = self.config.stage
        b, n = batch.candidate_mask.shape
        with torch.no_grad(), eval_mode(self.base):
            docs = self.compress(batch.doc_ids, batch.doc_mask, Adapter.ENCODER)
        # Candidate (b, n) is row `rank` of the flat [C, M, H], counting the True cells of candidate_mask row by
        # row; gathered by index rather than assigned through the boolean mask, which would wait for its size.
        present = batch.candidate_mask.flatten()  # [B*N]
        rank = (present.cumsum(0) - 1).clamp(min=0)  # [B*N]
        gathered = docs.memory.index_select(0, rank)  # [B*N, M, H]
        candidates = torch.where(present[:, None, None], gathered, 0).view(b, n, *docs.memory.shape[1:])

        query = self.compress(batch.query_ids, batch.query_mask, Adapter.QUERY_REASONER).memory  # [B, M, H]
        scores = cosine_scores(query.flatten(1), candidates.flatten(2), batch.candidate_mask)  # [B, N]
        weights, indices = differentiable_topk(scores, stage.generation_top_k, stage.topk_temperature)  # [B, K, N]
        selected = torch.einsum("bkn,bnmh->bkmh", weights.to(candidates.dtype), candidates)  # [B, K, M, H]

        slots = torch.full((b,), stage.generation_top_k, dtype=torch.long, device=batch.dec_ids.device)
        ce = self.decoder_loss(batch.dec_ids, batch.dec_mask, batch.labels, selected.flatten(0, 1), slots,
                               batch.label_index)
        loss, retrieval = ce, None
        if stage.retrieval_loss_weight:
            retrieval = multi_positive_infonce(scores, batch.pos_mask, stage.topk_temperature)
            loss = loss + stage.retrieval_loss_weight * retrieval
        return ClaraOutput(loss=loss, ce=ce, mse=docs.mse, retrieval_loss=retrieval, topk_indices=indices)

    # -- inference -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        memory: torch.Tensor,
        slots_per_row: torch.Tensor,
        *,
        max_new_tokens: int,
    ) -> list[str]:
        """Return the greedy continuations of decoder prompts [B, L] whose slots hold `memory` [D, M, H]."""
        embeds = self.decoder_inputs(input_ids, memory, slots_per_row)
        eos = {self.tokens.eos_id}
        model_eos = self.base.generation_config.eos_token_id
        eos.update(model_eos if isinstance(model_eos, list) else [model_eos] if model_eos is not None else [])
        # A fresh config, not the model's: Qwen3-Instruct's samples by default (top-k 20, T 0.7), reference Q6.
        generation_config = GenerationConfig(
            do_sample=False,
            max_new_tokens=max_new_tokens,
            eos_token_id=sorted(eos),
            pad_token_id=self.tokens.pad_id,
            suppress_tokens=list(self.tokens.new_ids),  # never write a memory, <ENC> or <SEP> token
        )
        with use_adapter(self.base, Adapter.DECODER), eval_mode(self.base):
            out = self.base.generate(
                inputs_embeds=embeds, attention_mask=attention_mask, generation_config=generation_config
            )
        return self.tokenizer.batch_decode(out, skip_special_tokens=True)


def _refuse_hand_off(config: ClaraConfig) -> None:
    handed_off = sorted(a.value for a, how in config.stage.adapter_init.items() if how is AdapterInit.FROM_CHECKPOINT)
    if handed_off:
        raise ValueError(
            f"stage {config.stage.stage.value} takes {handed_off} from the previous stage's checkpoint: "
            "use clara_model.load_checkpoint(path, next_stage=...)"
        )


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Run the block with `module` in eval mode (no dropout); restore its previous mode on exit."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)
