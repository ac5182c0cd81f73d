"""The training entrypoint as users and the Dagster launcher run it: `python -m clara_model.train` and
`deepspeed --module clara_model.train` as real processes on CPU (DeepSpeed ZeRO-2 over gloo), tiny model.

What is checked: the output contract (train_config.json, metrics.jsonl, tensorboard/, resume/, final/,
summary.json), the stage chain pretrain -> instruct -> e2e, two ranks on disjoint shards ending with identical
weights, a SIGKILL followed by a resume that reproduces the uninterrupted run's losses, a dataset smaller than
one global batch, and the one-line failures.
"""

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clara_model import load_checkpoint
from clara_model.training.distributed import free_port
from clara_model.training.resume import resume_checkpoints
from clara_model.training.schedule import lr_multiplier
from clara_model.training.step import trainable_digest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "clara_model" / "configs"
DEEPSPEED = Path(sys.executable).with_name("deepspeed")
SMALL_MODEL = ["--set", "model.doc_max_length=32", "--set", "model.compression_rate=8", "--set", "model.max_len=160"]
BATCH_4x2 = ["--set", "batch.global_batch_size=4", "--set", "batch.micro_batch_size=2"]
SUMMARY_KEYS = {"stage", "steps", "epochs", "samples", "first_loss", "final_loss", "best_loss", "tokens_per_s",
                "wall_s", "world_size", "resumed_from_step", "final_checkpoint"}
METRIC_KEYS = {"step", "epoch", "samples", "loss", "ce", "mse", "lr", "grad_norm", "tokens_per_s", "samples_per_s",
               "elapsed_s"}
DIGEST_LINE = re.compile(r"trainable parameters sha256: (.*)$", re.MULTILINE)


def train_command(*args, ranks: int | None = None) -> list[str]:
    if ranks is None:
        return [sys.executable, "-m", "clara_model.train", *args]
    # An explicit free port: the launcher's default 29500 may be taken by another run on this machine.
    return [str(DEEPSPEED), "--num_gpus", str(ranks), "--master_port", str(free_port()), "--module",
            "clara_model.train", *args]


def child_env() -> dict[str, str]:
    # One thread per rank: two ranks sharing a busy 2-core machine at 2 threads each run many times slower.
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def train(*args, ranks: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(train_command(*args, ranks=ranks), env=child_env(), cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def check_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"rc {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"


def read_metrics(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def write_town_data(directory: Path, *, towns: int = 12) -> dict[str, Path]:
    """Small rows of all three stages about made-up towns; short answers keep the tiny model's steps fast.
    e2e rows have 6 candidates (the top-k is 5) and a pos_index."""
    rng = random.Random(0)
    names = [f"Town{chr(65 + i)}{chr(97 + (3 * i) % 26)}" for i in range(towns)]
    facts = {n: (rng.choice(["red", "blue", "green", "amber"]), rng.randint(2, 9)) for n in names}

    def doc(n):
        return f"{n} is a small town. Its gate is painted {facts[n][0]}. It has {facts[n][1]} bridges."

    pretrain, instruct, e2e = [], [], []
    for i, n in enumerate(names):
        if i % 3 == 2:
            pretrain.append({"data_type": "paraphrase", "question": [], "docs": [doc(n)],
                             "answers": [f"{n} has a {facts[n][0]} gate and {facts[n][1]} bridges."]})
        else:
            pretrain.append({"data_type": "qa", "question": [f"What color is the gate of {n}?"],
                             "answers": [facts[n][0]], "docs": [doc(n)]})
        instruct.append({"question": f"What color is the gate of {n}?", "docs": [doc(n), doc(names[i - 1])],
                         "answer": facts[n][0], "pos_index": [0]})
        candidates = [doc(m) for m in rng.sample([m for m in names if m != n], 5)]
        position = rng.randrange(6)
        candidates.insert(position, doc(n))
        e2e.append({"question": f"How many bridges does {n} have?", "docs": candidates,
                    "answer": str(facts[n][1]), "pos_index": [position]})
    paths = {}
    for name, rows in (("pretrain", pretrain), ("instruct", instruct), ("e2e", e2e)):
        paths[name] = directory / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(row) + "\n" for row in rows))
    return paths


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """pretrain -> instruct -> e2e, each a standalone process (no launcher) with the shipped YAML config."""
    root = tmp_path_factory.mktemp("chain")
    data = write_town_data(root)
    runs = {}
    previous = None
    for stage in ("pretrain", "instruct", "e2e"):
        output = root / stage
        args = ["--stage", stage, "--config", str(CONFIGS / f"{stage}.yaml"), "--data", str(data[stage]),
                "--output", str(output), *BATCH_4x2, "--max-steps", "3"]
        if stage == "pretrain":
            args += SMALL_MODEL  # stages 2 and 3 take the model from --init-from
        else:
            args += ["--init-from", str(previous / "final")]
        runs[stage] = (train(*args), output, data[stage])
        check_ok(runs[stage][0])
        previous = output
    return runs


@pytest.mark.slow
def test_pretrain_writes_the_output_contract(chain):
    result, output, data = chain["pretrain"]
    summary = read_json(output / "summary.json")
    assert set(summary) == SUMMARY_KEYS
    assert summary["stage"] == "pretrain" and summary["steps"] == 3 and summary["samples"] == 12
    assert summary["world_size"] == 1 and summary["resumed_from_step"] is None and summary["final_checkpoint"] == "final"
    assert summary["epochs"] == pytest.approx(1.0)  # 12 rows, global batch 4: 3 steps per epoch

    metrics = read_metrics(output)
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert all(METRIC_KEYS <= set(m) for m in metrics)
    assert [m["samples"] for m in metrics] == [4, 8, 12]
    assert [m["lr"] for m in metrics] == pytest.approx(
        [1e-4 * lr_multiplier(s, total_steps=3, warmup_steps=1, name="cosine", min_ratio=0.1) for s in range(3)])
    assert summary["first_loss"] == metrics[0]["loss"] and summary["final_loss"] == metrics[-1]["loss"]
    assert summary["best_loss"] == min(m["loss"] for m in metrics)
    assert all(m["grad_norm"] > 0 and m["tokens_per_s"] > 0 for m in metrics)
    for m in metrics:  # loss = ce + 0.1 mse, averaged over the micro-batches
        assert m["loss"] == pytest.approx(m["ce"] + 0.1 * m["mse"], rel=1e-6)

    config = read_json(output / "train_config.json")
    assert config["job"]["stage"] == "pretrain" and config["job"]["world_size"] == 1
    assert config["job"]["data"] == [{"path": str(data), "sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
                                      "rows": 12}]
    assert config["model"]["compression_rate"] == 8 and config["optim"]["lr"] == 1e-4
    assert config["derived"]["gradient_accumulation_steps"] == 2 and config["derived"]["total_steps"] == 3

    assert list((output / "tensorboard").glob("events.out.tfevents.*"))
    assert [p.name for p in (output / "resume").iterdir()] == ["step-00000003"]  # the end always saves
    # The export is what rank 0 trained: same parameters as the digest it logged.
    logged = DIGEST_LINE.search(result.stderr).group(1)
    exported = trainable_digest(load_checkpoint(output / "final").model)
    assert logged == f"rank 0 {exported}"


@pytest.mark.slow
def test_instruct_starts_from_the_pretrain_export(chain):
    result, output, _ = chain["instruct"]
    config = read_json(output / "train_config.json")
    assert config["job"]["init_from"] == str(chain["pretrain"][1] / "final")
    # The architecture comes from the checkpoint, not from instruct.yaml or the defaults (256 / 32).
    assert (config["model"]["doc_max_length"], config["model"]["compression_rate"]) == (32, 8)
    assert config["stage"]["adapter_init"] == {"encoder": "checkpoint", "decoder": "fresh"}
    assert read_json(output / "summary.json")["steps"] == 3
    assert sorted(p.name for p in (output / "final" / "adapters").iterdir()) == ["decoder", "encoder"]


@pytest.mark.slow
def test_e2e_logs_real_recall_at_k(chain):
    _, output, _ = chain["e2e"]
    metrics = read_metrics(output)
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert all(m["lr"] <= 5e-6 for m in metrics) and metrics[-1]["lr"] == pytest.approx(5e-6)  # constant
    for m in metrics:
        r1, r3, r5 = m["recall@1"], m["recall@3"], m["recall@5"]
        assert 0 <= r1 <= r3 <= r5 <= 1
        # 4 rows per step, one positive each: recall is a count of hits over 4
        assert all(abs(4 * r - round(4 * r)) < 1e-9 for r in (r1, r3, r5))
        # e2e trains on CE + the InfoNCE term on pos_index (weight 1 by default; MSE is only logged)
        assert m["loss"] == pytest.approx(m["ce"] + m["retrieval_loss"])
    assert sum(m["recall@5"] for m in metrics) > 0  # the reference's key was always 0 (B8)
    adapters = sorted(p.name for p in (output / "final" / "adapters").iterdir())
    assert adapters == ["decoder", "encoder", "query_reasoner"]


@pytest.mark.slow
def test_two_ranks_train_disjoint_shards_and_end_identical(tmp_path):
    data = write_town_data(tmp_path)
    output = tmp_path / "out"
    result = train("--stage", "pretrain", "--data", str(data["pretrain"]), "--output", str(output), *SMALL_MODEL,
                   "--set", "batch.global_batch_size=4", "--set", "batch.micro_batch_size=1", "--max-steps", "3",
                   "--set", "train.save_every=2", "--set", "log.level=debug", ranks=2)
    check_ok(result)
    log = result.stdout + result.stderr
    rows = {(int(r), int(s)): json.loads(batches)
            for r, s, batches in re.findall(r"rank (\d) step (\d+) rows (\[\[.*?\]\])", log)}
    assert sorted(rows) == [(r, s) for r in (0, 1) for s in (1, 2, 3)]
    seen = []
    for step in (1, 2, 3):
        mine = [sorted(row for batch in rows[(r, step)] for row in batch) for r in (0, 1)]
        assert len(mine[0]) == len(mine[1]) == 2  # micro 1 x accumulation 2 on each rank
        assert not set(mine[0]) & set(mine[1])
        seen += mine[0] + mine[1]
    assert sorted(seen) == list(range(12))  # the 3 steps of epoch 0 cover the data once

    digests = re.findall(r"rank (\d) ([0-9a-f]{64})", DIGEST_LINE.search(log).group(1))
    assert [r for r, _ in digests] == ["0", "1"] and digests[0][1] == digests[1][1]
    assert digests[0][1] == trainable_digest(load_checkpoint(output / "final").model)

    summary = read_json(output / "summary.json")
    assert summary["world_size"] == 2 and summary["steps"] == 3 and summary["samples"] == 12
    config = read_json(output / "train_config.json")
    assert config["job"]["world_size"] == 2 and config["derived"]["gradient_accumulation_steps"] == 2
    for step in ("step-00000002", "step-00000003"):
        assert sorted(p.name for p in (output / "resume" / step / "ranks").iterdir()) == [
            "rank0.json", "rank0.safetensors", "rank1.json", "rank1.safetensors"]


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_with_the_same_losses(tmp_path):
    data = write_town_data(tmp_path)
    args = ["--stage", "pretrain", "--data", str(data["pretrain"]), *SMALL_MODEL, *BATCH_4x2, "--max-steps", "8",
            "--set", "train.save_every=2"]
    reference = tmp_path / "reference"
    check_ok(train(*args, "--output", str(reference)))

    output = tmp_path / "killed"
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(train_command(*args, "--output", str(output)), env=child_env(), cwd=REPO,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 600
        while not resume_checkpoints(output):  # the first one (step 2); later saves prune it, so not by name
            assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (output / "summary.json").exists(), "the run ended before it could be killed"

    resumed = train(*args, "--output", str(output))
    check_ok(resumed)
    assert re.search(r"resuming from .*step-0000000[2468]", resumed.stderr)
    summary = read_json(output / "summary.json")
    assert summary["resumed_from_step"] in (2, 4, 6, 8) and summary["steps"] == 8

    expected, got = read_metrics(reference), read_metrics(output)
    assert [m["step"] for m in got] == list(range(1, 9))  # no step twice, none missing
    for key in ("loss", "ce", "mse", "lr", "grad_norm"):
        torch.testing.assert_close(torch.tensor([m[key] for m in got]), torch.tensor([m[key] for m in expected]))
    assert [m["samples"] for m in got] == [m["samples"] for m in expected]
    final, uninterrupted = (load_checkpoint(d / "final").model for d in (output, reference))
    for (name, a), (_, b) in zip(final.trainable_parameters().items(), uninterrupted.trainable_parameters().items()):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.slow
def test_a_dataset_smaller_than_one_global_batch_still_trains(tmp_path):
    data = tmp_path / "three.jsonl"
    data.write_text("".join(write_town_data(tmp_path)["pretrain"].read_text().splitlines(keepends=True)[:3]))
    output = tmp_path / "out"
    result = train("--stage", "pretrain", "--data", str(data), "--output", str(output), *SMALL_MODEL,
                   "--set", "batch.global_batch_size=8", "--set", "batch.micro_batch_size=2")
    check_ok(result)
    assert "the data has 3 rows, fewer than one global batch (8)" in result.stderr
    summary = read_json(output / "summary.json")
    assert summary["steps"] == 1 and summary["samples"] == 8
    assert [m["step"] for m in read_metrics(output)] == [1]


@pytest.mark.slow
def test_changed_settings_refuse_to_resume_and_no_resume_starts_over(tmp_path):
    data = write_town_data(tmp_path)
    output = tmp_path / "out"
    args = ["--stage", "pretrain", "--data", str(data["pretrain"]), "--output", str(output), *SMALL_MODEL,
            *BATCH_4x2, "--max-steps", "2"]
    check_ok(train(*args))
    refused = train(*args, "--set", "optim.lr=3e-4")
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1].startswith("clara_model.train: error: cannot resume from")
    assert "optim.lr: 0.0001 -> 0.0003" in refused.stderr and "--no-resume" in refused.stderr

    again = train(*args, "--set", "optim.lr=3e-4", "--no-resume", "--max-steps", "1")
    check_ok(again)
    summary = read_json(output / "summary.json")
    assert summary["resumed_from_step"] is None and summary["steps"] == 1
    assert [m["step"] for m in read_metrics(output)] == [1]
    assert [p.name for p in (output / "resume").iterdir()] == ["step-00000001"]


def test_bad_data_fails_with_file_line_reason(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"question": ["q?"], "answers": ["a"], "docs": ["d"]}) + "\n"
                    + json.dumps({"question": ["q?"], "answers": [], "docs": ["d"]}) + "\n")
    result = train("--stage", "pretrain", "--data", str(data), "--output", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == f"clara_model.train: error: {data}:2: answers is empty"
    assert not (tmp_path / "out" / "summary.json").exists()


def test_unknown_keys_and_missing_init_from_fail_clearly(tmp_path):
    data = write_town_data(tmp_path)
    result = train("--stage", "pretrain", "--data", str(data["pretrain"]), "--output", str(tmp_path / "out"),
                   "--set", "optim.lrr=1e-3")
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert last.startswith("clara_model.train: error: --set: unknown key 'optim.lrr'") and "lr" in last
    result = train("--stage", "instruct", "--data", str(data["instruct"]), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == ("clara_model.train: error: stage instruct needs --init-from: "
                                              "the previous stage's DIR/final")
