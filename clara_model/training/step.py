"""The optimizer step: the DeepSpeed engine the trainer drives, and one step of it (shared with bench/train.py).

`build_engine` wraps a ClaraModel in DeepSpeed with the client optimizer torch AdamW (no JIT-compiled op
needed) over the stage's trainable parameters, the schedule, and ZeRO-2. `train_step` runs the micro-batches of
one optimizer step through it and returns this rank's sums of what the metrics need, as one tensor, so the
trainer all-reduces them in a single call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch

from clara_model.collate import CompressionBatch, RetrievalBatch
from clara_model.modeling import ClaraModel
from clara_model.training.config import Hyperparameters
from clara_model.training.distributed import deepspeed_config
from clara_model.training.schedule import build_scheduler

RECALL_KS = (1, 3, 5)
STAT_FIELDS = ("loss", "ce", "mse", "retrieval_loss", "micro_batches", "retrieval_micro_batches", "samples",
               "tokens", "recall_rows", *(f"recall@{k}" for k in RECALL_KS))
_RECALL_AT = len(STAT_FIELDS) - len(RECALL_KS)


def build_engine(
    model: ClaraModel, hp: Hyperparameters, *, accumulation: int, total_steps: int, warmup_steps: int, bf16: bool
) -> tuple[Any, Any, torch.optim.lr_scheduler.LambdaLR]:
    """Return (engine, ZeRO optimizer, scheduler) for `model`; DeepSpeed steps the scheduler per optimizer step.

    Raises:
        RuntimeError: when DeepSpeed did not build its ZeRO optimizer (resume needs its partitioned state).
    """
    import deepspeed

    optimizer = torch.optim.AdamW(
        list(model.trainable_parameters().values()),
        lr=hp.optim.lr, betas=hp.optim.betas, eps=hp.optim.eps, weight_decay=hp.optim.weight_decay,
    )
    scheduler = build_scheduler(optimizer, total_steps=total_steps, warmup_steps=warmup_steps,
                                name=hp.schedule.name, min_ratio=hp.schedule.min_lr_ratio)
    config = deepspeed_config(
        global_batch=hp.batch.global_batch_size, micro_batch=hp.batch.micro_batch_size, accumulation=accumulation,
        grad_clip=hp.optim.grad_clip, zero_stage=hp.train.zero_stage, bf16=bf16,
    )
    engine, zero_optimizer, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config
    )
    if not hasattr(zero_optimizer, "single_partition_of_fp32_groups"):
        raise RuntimeError(f"expected DeepSpeed's ZeRO optimizer, got {type(zero_optimizer).__name__}")
    return engine, zero_optimizer, scheduler


def count_tokens(batch: CompressionBatch | RetrievalBatch) -> torch.Tensor:
    """Return the non-padding tokens a batch runs through the model: documents, prompts+answers, queries."""
    tokens = batch.doc_mask.sum() + batch.dec_mask.sum()
    if isinstance(batch, RetrievalBatch):
        tokens = tokens + batch.query_mask.sum()
    return tokens


def train_step(
    engine: Any, micro_batches: Sequence[CompressionBatch | RetrievalBatch], device: torch.device
) -> torch.Tensor:
    """Run one optimizer step on this rank and return its sums, indexed like STAT_FIELDS.

    Every micro-batch gets a forward, a backward and `engine.step()`; DeepSpeed scales each loss by
    1 / accumulation and applies the update (clipping, AdamW, the schedule) at the last one. The sums stay on
    `device`: nothing here reads a device value on the host (the trainer does, every log.every steps).
    """
    stats = torch.zeros(len(STAT_FIELDS), dtype=torch.float64, device=device)
    for batch in micro_batches:
        batch = batch.to(device, non_blocking=True)
        out = engine(batch)
        engine.backward(out.loss)
        engine.step()
        stats[0] += out.loss.detach()
        stats[1] += out.ce.detach()
        stats[2] += out.mse.detach()
        if out.retrieval_loss is not None:
            stats[3] += out.retrieval_loss.detach()
            stats[5] += 1
        stats[4] += 1
        stats[6] += batch.dec_ids.size(0)
        stats[7] += count_tokens(batch)
        if out.topk_indices is not None:
            # recall@k of the documents the straight-through top-k picked (best first) against pos_index
            hits = batch.pos_mask.gather(1, out.topk_indices)  # [B, K]: pick j is a positive
            positives = batch.pos_mask.sum(dim=1)  # [B]
            stats[8] += (positives > 0).sum()  # a row without pos_index has no recall (rather than a recall of 0)
            for j, k in enumerate(RECALL_KS):
                stats[_RECALL_AT + j] += (hits[:, :k].sum(dim=1) / positives.clamp(min=1)).sum()
    return stats


def trainable_digest(model: torch.nn.Module) -> str:
    """Return a sha256 over the trainable parameters (names and fp32 values, sorted by name)."""
    digest = hashlib.sha256()
    for name, param in sorted((n, p) for n, p in model.named_parameters() if p.requires_grad):
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
