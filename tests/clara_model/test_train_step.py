"""The inner step's bookkeeping (clara_model/training/step.py), with a stand-in for the DeepSpeed engine."""

import math

import pytest
import torch
from transformers import Qwen3ForCausalLM

from clara_model import ClaraConfig, ModelConfig, Stage
from clara_model.base import load_tokenizer, qwen3_4b_config
from clara_model.collate import RetrievalBatch, build_collator
from clara_model.config import TINY_BASE_MODEL
from clara_model.data import PretrainRow, RowKind
from clara_model.modeling import ClaraModel, ClaraOutput
from clara_model.training import distributed as dist_utils
from clara_model.training.config import (
    BatchConfig,
    Hyperparameters,
    LogConfig,
    LoopConfig,
    OptimConfig,
    ScheduleConfig,
)
from clara_model.training.step import STAT_FIELDS, build_engine, count_tokens, train_step, trainable_digest
from tests.clara_model.conftest import build_model


class FakeEngine:
    """Returns fixed outputs and counts the calls the trainer makes per micro-batch."""

    def __init__(self, outputs):
        self.outputs, self.calls = list(outputs), []

    def __call__(self, batch):
        self.calls.append("forward")
        return self.outputs.pop(0)

    def backward(self, loss):
        self.calls.append("backward")

    def step(self):
        self.calls.append("step")


def retrieval_batch(pos_mask, dec_mask_len=5):
    b, n = pos_mask.shape
    return RetrievalBatch(
        query_ids=torch.zeros(b, 3, dtype=torch.long), query_mask=torch.ones(b, 3, dtype=torch.long),
        doc_ids=torch.zeros(b * n, 4, dtype=torch.long), doc_mask=torch.ones(b * n, 4, dtype=torch.long),
        candidate_mask=torch.ones(b, n, dtype=torch.bool), pos_mask=pos_mask,
        dec_ids=torch.zeros(b, dec_mask_len, dtype=torch.long), dec_mask=torch.ones(b, dec_mask_len, dtype=torch.long),
        labels=torch.zeros(b, dec_mask_len, dtype=torch.long), label_index=torch.arange(b * (dec_mask_len - 1)),
    )


def test_recall_at_k_is_counted_from_the_picks_against_pos_index():
    # Row 0: positive 2 picked first. Row 1: positives 0 and 4; picks 3, 4, 1 -> recall@1 0, @3 1/2.
    # Row 2 has no pos_index: it counts for nothing (not as a 0).
    pos = torch.tensor([[0, 0, 1, 0, 0], [1, 0, 0, 0, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    picks = torch.tensor([[2, 0, 1], [3, 4, 1], [0, 1, 2]])
    out = ClaraOutput(loss=torch.tensor(2.0), ce=torch.tensor(1.5), mse=torch.tensor(0.3),
                      retrieval_loss=torch.tensor(0.5), topk_indices=picks)
    engine = FakeEngine([out, out])
    batch = retrieval_batch(pos)
    stats = dict(zip(STAT_FIELDS, train_step(engine, [batch, batch], torch.device("cpu")).tolist()))
    assert engine.calls == ["forward", "backward", "step"] * 2
    assert stats["micro_batches"] == 2 and stats["samples"] == 6 and stats["loss"] == 4.0
    assert stats["retrieval_loss"] == 1.0 and stats["retrieval_micro_batches"] == 2
    assert stats["recall_rows"] == 4  # 2 rows with positives x 2 micro-batches
    assert stats["recall@1"] == pytest.approx(2 * (1 + 0))
    assert stats["recall@3"] == pytest.approx(2 * (1 + 0.5))
    assert stats["tokens"] == 2 * int(count_tokens(batch)) == 2 * (3 * 3 + 15 * 4 + 3 * 5)


def test_the_digest_sees_every_trainable_value_and_nothing_else():
    model = build_model(Stage.PRETRAIN)
    before = trainable_digest(model)
    frozen = next(p for p in model.parameters() if not p.requires_grad)
    with torch.no_grad():
        frozen.add_(1.0)
    assert trainable_digest(model) == before
    with torch.no_grad():
        model.special_embedding.weight[0, 0] += 1e-3
    assert trainable_digest(model) != before


# -- bf16 at Qwen3-4B's width ----------------------------------------------------------------------------------


def _wide_pretrain_model() -> ClaraModel:
    """Qwen3-4B's width (hidden 2560, 32/8 heads, real tied vocabulary rows) with 2 layers, random init in bf16.

    Qwen3ForCausalLM's own init (normal, std initializer_range = 0.02) gives the embedding rows a realistic norm
    (0.02 x sqrt(2560) ~ 1.0), which is what the new token rows must match.
    """
    config = qwen3_4b_config()
    config.num_hidden_layers = 2
    config.layer_types = config.layer_types[:2]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base = Qwen3ForCausalLM._from_config(config, dtype=torch.bfloat16, attn_implementation="sdpa")
    model = ModelConfig(base_model="qwen3-4b-width-2-layers", doc_max_length=32, compression_rate=8, max_len=128)
    return ClaraModel.from_base(base, load_tokenizer(TINY_BASE_MODEL), ClaraConfig(model=model))


@pytest.mark.slow
def test_bf16_at_qwen3_4b_width_new_token_rows_train_like_the_adapters(monkeypatch):
    """The stage-1 step (DeepSpeed ZeRO-2, bf16, clip 1.0) for 20 steps: the global gradient norm stays finite,
    and the new token rows' gradient norm stays the same order as the LoRA weights'.

    Rows that started at the mean embedding (norm ~ 0.02 x sqrt(2560 / 151,669) ~ 0.003, an RMS far below
    RMSNorm's sqrt(eps)) were divided by sqrt(eps) instead of their RMS in the first layer norm: their gradient
    came out hundreds of times larger than every LoRA weight's and set the global clip on its own.
    """
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(dist_utils.free_port()))
    model = _wide_pretrain_model()
    hp = Hyperparameters(
        model=model.config.model, stage=model.config.stage, optim=OptimConfig(lr=1e-4),
        schedule=ScheduleConfig(name="cosine"), batch=BatchConfig(global_batch_size=1, micro_batch_size=1),
        train=LoopConfig(precision="bf16"), log=LogConfig(),
    )
    rows = [
        PretrainRow(RowKind.QA, "The Rhine flows north through Basel and Cologne to the North Sea.",
                    ("Where does the Rhine end?",), ("In the North Sea.",)),
        PretrainRow(RowKind.PARAPHRASE, "Copper conducts heat well and is used in cooking pans.", (),
                    ("Pans are made of copper because it carries heat well.",)),
    ]
    collate = build_collator(model.tokenizer, model.tokens, model.config, seed=0)
    row_grads, lora_grads = [], []
    model.special_embedding.weight.register_hook(lambda g: row_grads.append(g.float().norm()))
    lora = [p for name, p in model.trainable_parameters().items() if "lora_" in name]
    for param in lora:  # the gradients before DeepSpeed reduces, clips and frees them
        param.register_hook(lambda g: lora_grads.append(g.float().pow(2).sum()))

    device = dist_utils.init_process_group(dist_utils.launch_environment())
    try:
        engine, _, _ = build_engine(model, hp, accumulation=1, total_steps=20, warmup_steps=1, bf16=True)
        engine.train()
        global_norms = []
        for step in range(20):
            stats = train_step(engine, [collate([rows[step % 2]])], device)
            assert torch.isfinite(stats[0])
            global_norms.append(float(engine.get_global_grad_norm()))
    finally:
        dist_utils.destroy()

    lora_norms = torch.stack(lora_grads).view(20, len(lora)).sum(dim=1).sqrt()  # [steps]
    row_norms = torch.stack(row_grads)  # [steps]
    ratio = row_norms / lora_norms
    assert all(math.isfinite(n) and n > 0 for n in global_norms), global_norms
    assert bool(torch.isfinite(ratio).all()), ratio.tolist()
    # Same order of magnitude, both ways: within 10x of the LoRA norm. AdamW normalises each parameter on its
    # own, so the ratio acts through the one global clip (1.0, and every step here is clipped): rows 10x the
    # LoRA weights would already make ~99% of the clipped norm. Measured: 0.76-1.96 with the N(mean, cov) init,
    # against 19-480 (step 1: 478) with the mean init, which this bound rejects on every step.
    assert bool(((ratio > 0.1) & (ratio < 10)).all()), {"rows": row_norms.tolist(), "lora": lora_norms.tolist(),
                                                         "global": global_norms}
