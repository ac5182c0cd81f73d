"""metrics.jsonl tailing, the loss-fell validator, and which steps get relayed."""

import json
import math

import pytest

from clara_pipeline.training.metrics import (
    MetricsTail,
    ProgressRelay,
    dedupe_steps,
    format_progress,
    loss_fell,
    read_metrics,
)


def record(step, loss=1.0, **extra):
    return {"step": step, "loss": loss, **extra}


def append(path, *records, newline=True):
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in records) if newline else json.dumps(records[0]))


def test_tail_returns_only_complete_new_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.read_new() == []  # the trainer has not started writing
    append(path, record(1), record(2))
    assert [r["step"] for r in tail.read_new()] == [1, 2]
    assert tail.read_new() == []
    with open(path, "a") as handle:  # rank 0 is mid-write: half a line
        handle.write('{"step": 3, "lo')
    assert tail.read_new() == []
    with open(path, "a") as handle:
        handle.write('ss": 0.5}\n')
    assert tail.read_new() == [{"step": 3, "loss": 0.5}]


def test_tail_starts_over_when_the_file_is_replaced(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    append(path, record(1), record(2), record(3))
    assert len(tail.read_new()) == 3
    path.unlink()
    append(path, record(1, 9.0))  # a fresh run in the same folder: shorter, new inode
    assert tail.read_new() == [record(1, 9.0)]


def test_tail_rejects_a_complete_line_that_is_not_json(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("not json\n")
    with pytest.raises(ValueError, match="not JSON"):
        MetricsTail(path).read_new()


def test_read_metrics_keeps_the_last_record_of_a_step_written_twice(tmp_path):
    path = tmp_path / "metrics.jsonl"
    # killed after step 3, resumed from the step-2 checkpoint: step 3 is trained and logged again
    append(path, record(1, 5.0), record(2, 4.0), record(3, 3.5), record(3, 3.25), record(4, 3.0))
    append(path, record(5, 2.0), newline=False)  # a partial last line (killed mid-write) is not a step
    records = read_metrics(path)
    assert [(r["step"], r["loss"]) for r in records] == [(1, 5.0), (2, 4.0), (3, 3.25), (4, 3.0)]
    assert read_metrics(tmp_path / "missing.jsonl") == []
    assert [r["step"] for r in dedupe_steps([record(2), {"loss": 1}, record(1)])] == [1, 2]


def test_loss_fell_compares_the_first_and_last_windows():
    falling = [record(s, 10.0 - s) for s in range(1, 9)]  # 9, 8, ..., 2
    trend = loss_fell(falling)
    assert trend.passed and trend.window == 2
    assert trend.first_mean == pytest.approx(8.5) and trend.last_mean == pytest.approx(2.5)
    assert "fell" in trend.reason

    rising = [record(s, float(s)) for s in range(1, 9)]
    assert not loss_fell(rising).passed
    flat = [record(s, 3.0) for s in range(1, 9)]
    assert not loss_fell(flat).passed  # equal is not lower


def test_loss_fell_window_never_overlaps_and_is_capped():
    noisy_but_falling = [record(s, v) for s, v in enumerate([5, 6, 4, 5, 3, 4, 2, 3], start=1)]
    trend = loss_fell(noisy_but_falling, window=10)  # asked for more than half: clamped to 4
    assert trend.window == 4 and trend.passed
    long = [record(s, 100.0 - s) for s in range(1, 201)]
    assert loss_fell(long).window == 20


@pytest.mark.parametrize("records, why", [
    ([], "too few"),
    ([record(1, 2.0)], "too few"),
    ([record(1, 2.0), record(2, math.nan), record(3, 1.0)], "not finite"),
    ([record(1, 2.0), {"step": 2}, record(3, 1.0)], "missing"),
])
def test_loss_fell_fails_without_enough_finite_losses(records, why):
    trend = loss_fell(records)
    assert not trend.passed and why in trend.reason
    assert math.isnan(trend.to_metadata()["last_mean_loss"])


def test_progress_relay_picks_the_first_every_nth_and_the_last_step():
    relay = ProgressRelay(every=10)
    chosen = relay.select([record(s) for s in range(1, 15)])
    assert [r["step"] for r in chosen] == [1, 10]
    chosen = relay.select([record(s) for s in range(15, 24)])
    assert [r["step"] for r in chosen] == [20]
    assert [r["step"] for r in relay.finish()] == [23]
    assert relay.finish() == []  # once
    with pytest.raises(ValueError):
        ProgressRelay(0)


def test_format_progress_names_the_step_and_the_numbers():
    line = format_progress({"step": 20, "loss": 3.21456, "lr": 1e-4, "tokens_per_s": 1234.4, "recall@1": 0.5}, 50)
    assert line == "step 20/50 loss 3.2146 lr 1.0e-04 tok/s 1,234 recall@1 0.500"
