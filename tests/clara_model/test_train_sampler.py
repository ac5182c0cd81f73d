"""Data order (clara_model/training/sampler.py) and the learning-rate schedule (schedule.py)."""

import math

import pytest
import torch

from clara_model.training.sampler import RankBatches, epoch_order, rank_micro_batches
from clara_model.training.schedule import build_scheduler, lr_multiplier


def test_an_epoch_is_a_seeded_permutation_cut_to_full_global_batches():
    order = epoch_order(10, 0, seed=1, global_batch=4)
    assert len(order) == 8 and len(set(order)) == 8 and set(order) <= set(range(10))
    assert order == epoch_order(10, 0, seed=1, global_batch=4)  # deterministic
    assert order != epoch_order(10, 1, seed=1, global_batch=4)  # reshuffled each epoch
    assert order != epoch_order(10, 0, seed=2, global_batch=4)
    assert epoch_order(10, 0, seed=1, global_batch=4, shuffle=False) == list(range(8))


def test_a_dataset_smaller_than_one_global_batch_is_repeated_to_fill_it():
    order = epoch_order(3, 0, seed=0, global_batch=8)
    assert len(order) == 8 and set(order) == {0, 1, 2}


@pytest.mark.parametrize(("world_size", "micro", "accumulation"), [(1, 2, 2), (2, 1, 2), (2, 2, 1), (4, 1, 1)])
def test_ranks_split_each_global_batch_into_disjoint_shards(world_size, micro, accumulation):
    global_batch = world_size * micro * accumulation
    order = epoch_order(17, 3, seed=5, global_batch=global_batch)
    for step in range(len(order) // global_batch):
        shards = [rank_micro_batches(order, step, rank=r, world_size=world_size, micro_batch=micro,
                                     accumulation=accumulation) for r in range(world_size)]
        rows = [row for shard in shards for batch in shard for row in batch]
        assert sorted(rows) == sorted(order[step * global_batch : (step + 1) * global_batch])
        assert all(len(shard) == accumulation and all(len(b) == micro for b in shard) for shard in shards)
    with pytest.raises(IndexError):
        rank_micro_batches(order, len(order) // global_batch, rank=0, world_size=world_size, micro_batch=micro,
                           accumulation=accumulation)


def test_rank_batches_from_a_position_are_the_tail_of_the_whole_epoch():
    order = epoch_order(24, 0, seed=0, global_batch=8)
    whole = list(RankBatches(order, 0, rank=1, world_size=2, micro_batch=2, accumulation=2))
    tail = list(RankBatches(order, 2, rank=1, world_size=2, micro_batch=2, accumulation=2))
    assert len(whole) == 3 * 2 and len(RankBatches(order, 2, rank=1, world_size=2, micro_batch=2, accumulation=2)) == 2
    assert tail == whole[4:]


def test_the_global_batches_do_not_depend_on_the_world_size():
    # A step trains on the same rows whether 1 rank accumulates 4 micro-batches or 2 ranks accumulate 2.
    order = epoch_order(16, 0, seed=3, global_batch=4)
    one = [row for b in rank_micro_batches(order, 1, rank=0, world_size=1, micro_batch=1, accumulation=4) for row in b]
    two = [row for r in range(2)
           for b in rank_micro_batches(order, 1, rank=r, world_size=2, micro_batch=1, accumulation=2) for row in b]
    assert one == two


def test_warmup_then_cosine_to_the_floor():
    kwargs = dict(total_steps=11, warmup_steps=2, name="cosine", min_ratio=0.1)
    values = [lr_multiplier(s, **kwargs) for s in range(11)]
    assert values[:2] == pytest.approx([1 / 3, 2 / 3])  # no step at lr 0
    assert values[2] == pytest.approx(1.0) and values[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(values[2:], values[3:]))  # decreasing after the warmup
    assert values[6] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))


def test_constant_after_warmup_and_a_single_step_run():
    assert [lr_multiplier(s, total_steps=10, warmup_steps=1, name="constant", min_ratio=0.1) for s in range(3)] == [
        0.5, 1.0, 1.0]
    assert lr_multiplier(0, total_steps=1, warmup_steps=0, name="cosine", min_ratio=0.1) == 1.0


def test_the_scheduler_sets_the_lr_each_step_uses():
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    scheduler = build_scheduler(optimizer, total_steps=5, warmup_steps=1, name="cosine", min_ratio=0.1)
    used = []
    for _ in range(5):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert used == pytest.approx([5e-4, 1e-3, 1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 3))),
                                  1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(2 * math.pi / 3))), 1e-4])
