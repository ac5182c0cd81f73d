"""The issue's end-to-end check: the official stage-1 sample trains on the tiny model with a falling loss."""

import torch

from clara_model import Stage, read_rows
from clara_model.collate import build_collator
from clara_model.modeling import eval_mode
from tests.clara_model.conftest import OFFICIAL_SAMPLE, build_model


def test_official_stage1_sample_trains_with_a_falling_loss():
    rows = read_rows(OFFICIAL_SAMPLE, Stage.PRETRAIN)
    model = build_model(Stage.PRETRAIN)
    collator = build_collator(model.tokenizer, model.tokens, model.config)
    held_out = collator(rows[100:104])

    def held_out_loss():
        with torch.no_grad(), eval_mode(model):
            return model(held_out).loss.item()

    before = held_out_loss()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for step in range(8):  # 8 distinct micro-batches of 2 QA rows
        out = model(collator(rows[2 * step : 2 * step + 2]))
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(out.loss.item())
        assert torch.isfinite(out.loss)
    after = held_out_loss()

    assert sum(losses[-3:]) / 3 < sum(losses[:2]) / 2 - 0.1, losses
    assert after < before - 0.1, (before, after)
