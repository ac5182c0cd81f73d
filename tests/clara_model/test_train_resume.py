"""Resume pieces without DeepSpeed: per-rank state in checkpoints, RNG states, pruning, metrics truncation,
and the trainer's data reading (clara_model/training/{resume,report,dataset}.py)."""

import json
import random

import numpy as np
import pytest
import torch

from clara_model import Stage, TrainingProgress, load_checkpoint, save_checkpoint
from clara_model.data import DataError
from clara_model.training.dataset import read_training_data
from clara_model.training.report import truncate_metrics
from clara_model.training.resume import prune, resume_checkpoints, rng_state, set_rng_state, step_dir
from tests.clara_model.conftest import FORK_E2E, FORK_PRETRAIN, build_model


def draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_rank_states_and_rng_round_trip_through_a_checkpoint(tmp_path):
    model = build_model(Stage.PRETRAIN)
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    draws()
    shard = {"base_optimizer_state": {"state": {0: {"step": torch.tensor(4.0), "exp_avg": torch.randn(5)}},
                                      "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.95), "params": [0]}]},
             "single_partition_of_fp32_groups": [torch.randn(5)], "ds_version": "0.19.8"}
    states = [{"optimizer": shard, "rng": rng_state()}, {"optimizer": shard, "rng": rng_state()}]
    expected = draws()  # what comes after the saved RNG state
    progress = TrainingProgress(stage="pretrain", global_step=4, extra={"world_size": 2})
    save_checkpoint(model, tmp_path / "ckpt", progress=progress, rank_states=states)
    assert sorted(p.name for p in (tmp_path / "ckpt" / "ranks").iterdir()) == [
        "rank0.json", "rank0.safetensors", "rank1.json", "rank1.safetensors"]

    loaded = load_checkpoint(tmp_path / "ckpt", rank=1)
    assert loaded.saved_ranks == 2 and loaded.progress.global_step == 4
    optimizer = loaded.rank_state["optimizer"]
    torch.testing.assert_close(optimizer["single_partition_of_fp32_groups"][0], shard["single_partition_of_fp32_groups"][0])
    assert optimizer["base_optimizer_state"]["state"][0]["step"].item() == 4.0  # int keys and tuples survive
    assert optimizer["base_optimizer_state"]["param_groups"][0]["betas"] == (0.9, 0.95)
    set_rng_state(loaded.rank_state["rng"])
    assert draws() == expected
    assert load_checkpoint(tmp_path / "ckpt").rank_state is None  # only when asked for


def test_only_complete_checkpoints_count_and_the_newest_are_kept(tmp_path):
    for step in (2, 4, 6):
        step_dir(tmp_path, step).mkdir(parents=True)
        (step_dir(tmp_path, step) / "progress.json").write_text("{}")
    step_dir(tmp_path, 8).mkdir()  # a directory without progress.json is not a checkpoint
    (tmp_path / "resume" / ".step-00000008.tmp-1234").mkdir()  # an interrupted write
    assert [p.name for p in resume_checkpoints(tmp_path)] == ["step-00000002", "step-00000004", "step-00000006"]
    prune(tmp_path, keep=2)
    assert [p.name for p in resume_checkpoints(tmp_path)] == ["step-00000004", "step-00000006"]
    assert not (tmp_path / "resume" / ".step-00000008.tmp-1234").exists()


def test_metrics_are_cut_back_to_the_resumed_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in range(1, 6)]
    path.write_text("\n".join(lines) + '\n{"step": 6, "lo')  # a line torn by a kill
    assert truncate_metrics(path, 3) == 3
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]
    assert truncate_metrics(path, 0) == 0 and path.read_text() == ""
    assert truncate_metrics(tmp_path / "absent.jsonl", 3) == 0


def test_training_data_is_read_with_counts_per_file():
    rows, counts = read_training_data([FORK_PRETRAIN, FORK_PRETRAIN], Stage.PRETRAIN, top_k=1)
    assert counts == [10, 10] and len(rows) == 20


def test_bad_rows_are_reported_as_file_line_reason(tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = json.dumps({"question": ["q?"], "answers": ["a"], "docs": ["d"]})
    bad.write_text(good + "\n" + json.dumps({"question": ["q?"], "answers": [], "docs": ["d"]}) + "\n{oops\n")
    with pytest.raises(DataError) as error:
        read_training_data([bad], Stage.PRETRAIN, top_k=1)
    assert error.value.problems[0] == f"{bad}:2: answers is empty"
    assert error.value.problems[1].startswith(f"{bad}:3: invalid JSON")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="empty.jsonl: no rows"):
        read_training_data([empty], Stage.PRETRAIN, top_k=1)


def test_e2e_rows_need_top_k_candidates():
    # The fork's end-to-end example has 1 document per row: the original crashed mid-training on it (F1).
    with pytest.raises(DataError) as error:
        read_training_data([FORK_E2E], Stage.E2E, top_k=5)
    assert error.value.problems[0] == f"{FORK_E2E}:1: 1 candidates, fewer than stage.generation_top_k=5"
    rows, _ = read_training_data([FORK_E2E], Stage.E2E, top_k=1)
    assert len(rows) == 10
