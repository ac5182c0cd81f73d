"""The inner step's bookkeeping (clara_model/training/step.py), with a stand-in for the DeepSpeed engine."""

import pytest
import torch

from clara_model import Stage
from clara_model.collate import RetrievalBatch
from clara_model.modeling import ClaraOutput
from clara_model.training.step import STAT_FIELDS, count_tokens, train_step, trainable_digest
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
        labels=torch.zeros(b, dec_mask_len, dtype=torch.long),
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
