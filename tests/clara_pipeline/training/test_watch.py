"""Following training runs from their folders: the stage line, the progress lines, the op-build notice."""

import io
import json
import os

from clara_pipeline.training.runs import stage_dir
from clara_pipeline.training.watch import TrainingWatcher, format_step_line


def write_launch(run_dir, stage="pretrain", max_steps=25, relay_every=10, notices=()):
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = {"stage": stage, "max_steps": max_steps, "relay_every": relay_every, "num_gpus": 0, "num_nodes": 0,
            "cpu_processes": 1}
    (run_dir / "launch.json").write_text(json.dumps({"spec": spec, "command": [], "notices": list(notices)}))


def write_config(run_dir, resumed_from_step=None, total_steps=25):
    (run_dir / "train_config.json").write_text(json.dumps({"resumed_from_step": resumed_from_step,
                                                            "derived": {"total_steps": total_steps}}))


def append_steps(run_dir, steps):
    with open(run_dir / "metrics.jsonl", "a") as f:
        for step in steps:
            f.write(json.dumps({"step": step, "loss": 10.0 / step, "tokens_per_s": 1234.0,
                                "elapsed_s": 2.0 * step}) + "\n")


def test_a_stage_is_announced_and_its_steps_are_printed_as_they_come(tmp_path):
    out = io.StringIO()
    watcher = TrainingWatcher(tmp_path, 32, out=out)
    run = stage_dir(tmp_path, 32, "pretrain") / "runs" / "abc"
    write_launch(run, notices=["building DeepSpeed's deepspeed_shm_comm C++ op once (about a minute; cached in x)"])
    watcher.poll()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("training pretrain at rate 32: 25 steps on CPU, 1 process")
    assert lines[1] == "  building DeepSpeed's deepspeed_shm_comm C++ op once (about a minute; cached in x)"

    write_config(run)
    append_steps(run, range(1, 13))
    watcher.poll()  # while the run goes on: the first step and every 10th
    progress = out.getvalue().splitlines()[2:]
    assert progress == ["  pretrain step 1/25  loss 10.0000  1,234 tok/s  elapsed 0:02  ETA 0:48",
                        "  pretrain step 10/25  loss 1.0000  1,234 tok/s  elapsed 0:20  ETA 0:30"]
    append_steps(run, range(13, 24))
    watcher.poll(final=True)  # the job ended after step 23: its last step is shown
    assert out.getvalue().splitlines()[-2:] == [
        "  pretrain step 20/25  loss 0.5000  1,234 tok/s  elapsed 0:40  ETA 0:10",
        "  pretrain step 23/25  loss 0.4348  1,234 tok/s  elapsed 0:46  ETA 0:04"]


def test_earlier_launches_are_history_and_a_resumed_run_shows_only_new_steps(tmp_path):
    run = stage_dir(tmp_path, 4, "e2e") / "runs" / "abc"
    write_launch(run, stage="e2e", max_steps=0, relay_every=5)
    write_config(run, total_steps=12)
    append_steps(run, range(1, 8))  # an interrupted run: its steps are in metrics.jsonl
    out = io.StringIO()
    watcher = TrainingWatcher(tmp_path, 4, out=out)
    watcher.poll()
    assert out.getvalue() == ""  # nothing launched since the watcher started

    write_launch(run, stage="e2e", max_steps=0, relay_every=5)  # the relaunch
    launched = (run / "launch.json").stat().st_mtime_ns
    os.utime(run / "train_config.json", ns=(launched - 10**9, launched - 10**9))  # the previous launch's
    watcher.poll()
    assert out.getvalue().splitlines() == ["training e2e at rate 4: the stage config's epochs on CPU, 1 process "
                                           f"(log: {run / 'train.log'})"]
    write_config(run, resumed_from_step=5, total_steps=12)  # the trainer resumes from its step-5 checkpoint
    (run / "metrics.jsonl").write_text("")
    append_steps(run, range(1, 6))  # what the trainer kept (metrics cut back to the resumed step)
    append_steps(run, range(6, 13))
    watcher.poll(final=True)
    assert [line.split("  loss")[0] for line in out.getvalue().splitlines()[1:]] == [
        "  e2e      resuming from step 5", "  e2e      step 6/12", "  e2e      step 10/12", "  e2e      step 12/12"]


def test_the_watcher_thread_reports_while_the_block_runs(tmp_path):
    out = io.StringIO()
    run = stage_dir(tmp_path, 16, "instruct") / "runs" / "abc"
    with TrainingWatcher(tmp_path, 16, out=out, poll_s=0.01):
        write_launch(run, stage="instruct", max_steps=3)
        write_config(run, total_steps=3)
        append_steps(run, [1, 2, 3])
    assert out.getvalue().splitlines()[-1].startswith("  instruct step 3/3  loss 3.3333")


def test_a_step_line_says_recall_and_no_eta_at_the_end():
    record = {"step": 30, "loss": 1.5, "recall@1": 0.625, "tokens_per_s": 99.6, "elapsed_s": 3725.0}
    assert format_step_line(record, 30) == "step 30/30  loss 1.5000  recall@1 0.62  100 tok/s  elapsed 1:02:05"
    assert format_step_line({"step": 3}, None) == "step 3"
