"""Run folders: fingerprints, checkpoint digests, the current run of a stage, and the plan of one run."""

import json

import pytest

from clara_pipeline.training.runs import (
    CURRENT_FILE,
    CurrentRun,
    checkpoint_digest,
    directory_bytes,
    publish_run,
    read_init_compression_rate,
    run_fingerprint,
    stage_dir,
)
from clara_pipeline.training.stages import STAGES, plan_stage_run, stage_code_version


def make_checkpoint(path, rate=32, weights=b"w1"):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"clara": {"model": {"compression_rate": rate}}}))
    (path / "adapters").mkdir()
    (path / "adapters" / "weights.bin").write_bytes(weights)
    return path


def test_fingerprint_ignores_key_order_and_sees_every_value():
    a = run_fingerprint({"stage": "pretrain", "data": ["abc"], "max_steps": 30})
    assert a == run_fingerprint({"max_steps": 30, "data": ["abc"], "stage": "pretrain"})
    assert a != run_fingerprint({"stage": "pretrain", "data": ["abd"], "max_steps": 30})
    assert len(a) == 16


def test_checkpoint_digest_covers_names_and_contents(tmp_path):
    one = make_checkpoint(tmp_path / "one")
    two = make_checkpoint(tmp_path / "two")
    assert checkpoint_digest(one) == checkpoint_digest(two)  # same files, another folder
    (two / "adapters" / "weights.bin").write_bytes(b"w2")
    assert checkpoint_digest(one) != checkpoint_digest(two)
    (one / "adapters" / "weights.bin").rename(one / "adapters" / "other.bin")
    assert checkpoint_digest(one) != checkpoint_digest(make_checkpoint(tmp_path / "three"))
    assert directory_bytes(one) == len((one / "config.json").read_bytes()) + 2
    with pytest.raises(FileNotFoundError):
        checkpoint_digest(tmp_path / "missing")
    # where training stood is bookkeeping, not the model: a resumed export with its own progress.json is the same
    before = checkpoint_digest(two)
    (two / "progress.json").write_text('{"epoch": 9}')
    (two / "ranks").mkdir()
    (two / "ranks" / "rank0.json").write_text("{}")
    assert checkpoint_digest(two) == before
    assert read_init_compression_rate(one) == 32


def test_publish_run_points_current_at_the_run_and_removes_superseded_runs(tmp_path):
    directory = stage_dir(tmp_path, 32, "pretrain")
    assert directory == tmp_path / "training" / "rate-32" / "pretrain"
    assert CurrentRun.read(directory) is None
    old, new = directory / "runs" / "aaaa", directory / "runs" / "bbbb"
    make_checkpoint(old / "final")
    make_checkpoint(new / "final", weights=b"new")
    current = publish_run(directory, new, "digest-b")
    assert current == CurrentRun(run_dir=new, checkpoint=new / "final", data_version="digest-b", fingerprint="bbbb")
    assert not old.exists() and new.exists()
    assert json.loads((directory / CURRENT_FILE).read_text())["checkpoint"] == "runs/bbbb/final"
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        publish_run(directory, directory / "runs" / "cccc", "x")


@pytest.fixture
def datasets(tmp_path):
    folder = tmp_path / "datasets"
    folder.mkdir()
    for spec in STAGES.values():
        (folder / spec.data_file).write_text('{"question": "q"}\n')
    return folder


def plan(stage, tmp_path, datasets, previous=None, **kwargs):
    settings = dict(compression_rate=32, base_model="tiny", overrides=["train.micro_batch_size=2"],
                    launch_options={"max_steps": 20})
    settings.update(kwargs)
    return plan_stage_run(STAGES[stage], artifacts_root=tmp_path, datasets_dir=datasets, previous=previous,
                          **settings)


def test_the_same_work_plans_the_same_run_folder(tmp_path, datasets):
    first = plan("pretrain", tmp_path, datasets)
    assert first == plan("pretrain", tmp_path, datasets)  # a re-launch resumes in the same folder
    assert first.run_dir == tmp_path / "training" / "rate-32" / "pretrain" / "runs" / first.fingerprint
    spec = first.spec
    assert spec.overrides == ("model.base_model=tiny", "train.micro_batch_size=2")
    assert spec.compression_rate == 32 and spec.max_steps == 20 and spec.init_from is None
    assert spec.data == (str(datasets / "pretrain.jsonl"),)

    others = [
        plan("pretrain", tmp_path, datasets, compression_rate=16),
        plan("pretrain", tmp_path, datasets, base_model="Qwen/Qwen3-4B-Instruct-2507"),
        plan("pretrain", tmp_path, datasets, overrides=[]),
        plan("pretrain", tmp_path, datasets, launch_options={"max_steps": 21}),
        plan("pretrain", tmp_path, datasets, launch_options={"max_steps": 20, "cpu_processes": 2}),
    ]
    assert len({p.fingerprint for p in others} | {first.fingerprint}) == 6
    (datasets / "pretrain.jsonl").write_text('{"question": "changed"}\n')
    assert plan("pretrain", tmp_path, datasets).fingerprint != first.fingerprint
    # relaying and resuming do not change what is computed
    assert plan("pretrain", tmp_path, datasets, launch_options={"max_steps": 20, "relay_every": 1,
                                                                "resume": False}).run_dir.name == \
        plan("pretrain", tmp_path, datasets).fingerprint


def test_later_stages_start_from_the_previous_checkpoint(tmp_path, datasets):
    with pytest.raises(ValueError, match="starts from stage pretrain"):
        plan("instruct", tmp_path, datasets)
    previous = CurrentRun(run_dir=tmp_path / "r", checkpoint=tmp_path / "r" / "final", data_version="v1",
                          fingerprint="r")
    instruct = plan("instruct", tmp_path, datasets, previous=previous)
    assert instruct.spec.init_from == str(tmp_path / "r" / "final")
    assert instruct.spec.overrides == ("train.micro_batch_size=2",)  # the architecture came with the checkpoint
    newer = CurrentRun(run_dir=previous.run_dir, checkpoint=previous.checkpoint, data_version="v2", fingerprint="r")
    assert plan("instruct", tmp_path, datasets, previous=newer).fingerprint != instruct.fingerprint


def test_code_version_follows_the_stage_config(monkeypatch, tmp_path):
    import clara_pipeline.training.stages as stages

    before = {name: stage_code_version(spec) for name, spec in STAGES.items()}
    assert all(v.startswith(name) for name, v in before.items())
    assert len(set(before.values())) == 3
    changed = tmp_path / "configs"
    changed.mkdir()
    for name in STAGES:
        (changed / f"{name}.yaml").write_bytes((stages.CONFIG_DIR / f"{name}.yaml").read_bytes())
    (changed / "pretrain.yaml").write_text((changed / "pretrain.yaml").read_text() + "\n# edited\n")
    monkeypatch.setattr(stages, "CONFIG_DIR", changed)
    assert stage_code_version(STAGES["pretrain"]) != before["pretrain"]
    assert stage_code_version(STAGES["instruct"]) == before["instruct"]
    monkeypatch.setattr(stages, "TRAINER_VERSION", "next")
    assert stage_code_version(STAGES["instruct"]) != before["instruct"]


def test_the_pipeline_takes_the_trainers_version_stages_and_configs_from_the_contract():
    from clara_model import contract
    from clara_model.training.config import TRAINER_VERSION as trainer_version
    from clara_pipeline.training.stages import CONFIG_DIR, TRAINER_VERSION

    assert TRAINER_VERSION is contract.TRAINER_VERSION and trainer_version is contract.TRAINER_VERSION
    assert tuple(STAGES) == contract.STAGES
    assert sorted(p.name for p in CONFIG_DIR.glob("*.yaml")) == [f"{stage}.yaml" for stage in sorted(contract.STAGES)]


def test_the_contract_and_the_launcher_load_without_torch():
    import subprocess
    import sys

    probe = ("import sys, clara_model.contract, clara_pipeline.training.launch, clara_pipeline.training.stages, "
             "clara_pipeline.training.watch; print(sorted(m for m in ('torch', 'deepspeed', 'transformers', 'dagster') "
             "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
