"""The training stages and the evaluation through a real Dagster instance, real Pipes subprocesses and the real
trainer (`clara_model.train`) on the tiny model and tiny data."""

import json
import os
import signal
import subprocess
import sys
import time

import dagster as dg
import pytest

from clara_pipeline.definitions import build_definitions
from clara_pipeline.defs.training import (
    GPU_POOL,
    TrainingSettings,
    compression_rates,
    ensure_gpu_pool_limit,
    training_checks,
    training_jobs,
)
from clara_pipeline.settings import Settings
from clara_pipeline.training.runs import CurrentRun, checkpoint_digest, stage_dir
from tests.clara_pipeline.training.conftest import write_tiny_datasets

pytestmark = pytest.mark.slow

# Optimizer steps of 4 samples (2 micro-batches of 2): a trainer step of the tiny model takes well under a second.
CPU_OVERRIDES = ["batch.global_batch_size=4"]
STEPS = {"clara_stage1_pretrain": 6, "clara_stage2_instruct": 4, "clara_stage3_e2e": 4}


def definitions(tmp_path, artifacts) -> dg.Definitions:
    """The project's definitions pointed at `artifacts`, training the tiny model with small steps."""
    settings = Settings(raw_data=tmp_path / "raw", artifacts=artifacts, dagster_home=tmp_path / "home")
    return build_definitions(settings, resources={
        "training": TrainingSettings(base_model="tiny", overrides=CPU_OVERRIDES),
        # one thread per trainer: on a busy 2-core machine OpenMP hand-offs slow steps many times over
        "pipes_subprocess_client": dg.PipesSubprocessClient(env={"OMP_NUM_THREADS": "1"})})


def run_config(**steps):
    return {"ops": {asset: {"config": {"max_steps": n, "relay_every": 2}} for asset, n in steps.items()}}


def metadata_of(result, asset):
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return event.materialization


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Stages 1 -> 2 -> 3 at compression rate 32 in one run of `train_all_stages`, then the evaluation."""
    root = tmp_path_factory.mktemp("training")
    artifacts = root / "artifacts"
    write_tiny_datasets(artifacts / "datasets")
    defs = definitions(root, artifacts)
    with dg.instance_for_test() as instance:
        training = defs.resolve_job_def("train_all_stages").execute_in_process(
            instance=instance, partition_key="32", run_config=run_config(**STEPS), raise_on_error=False)
        evaluation = None
        if training.success:
            evaluation = defs.resolve_job_def("evaluate_clara").execute_in_process(
                instance=instance, partition_key="32", raise_on_error=False,
                run_config={"ops": {"clara_evaluation": {"config": {"max_rows": 2, "max_new_tokens": 8}}}})
        yield artifacts, defs, instance, training, evaluation


def test_definitions_load_with_the_training_graph(tmp_path):
    defs = definitions(tmp_path, tmp_path / "artifacts")
    # In an instance of its own: an earlier module's instance can leave Dagster's definitions-state context
    # variable pointing at its closed storage, which the first resolution of a Definitions would read.
    with dg.instance_for_test():
        graph = defs.resolve_asset_graph()
    stage2 = graph.get(dg.AssetKey("clara_stage2_instruct"))
    assert {k.to_user_string() for k in stage2.parent_keys} == {"clara_base_model", "clara_stage1_pretrain",
                                                                 "instruction_dataset"}
    assert stage2.partitions_def == compression_rates and compression_rates.get_partition_keys() == \
        ["4", "16", "32", "64", "128"]
    assert stage2.group_name == "training"
    assert all(defs.get_assets_def(key).op.pool == GPU_POOL for key in ("clara_stage1_pretrain",
                                                                        "clara_stage3_e2e", "clara_evaluation"))
    assert stage2.code_version.startswith("instruct-")
    assert {j.name for j in training_jobs} == {"train_stage1_pretrain", "train_stage2_instruct", "train_stage3_e2e",
                                              "train_all_stages"}
    specs = {(key.asset_key.to_user_string(), key.name): spec for c in training_checks
             for key, spec in zip(c.check_keys, c.check_specs)}
    assert len(specs) == 6
    assert all(spec.blocking == (name == "checkpoint_loads") for (_, name), spec in specs.items())


def test_the_gpu_pool_gets_a_limit_of_one_unless_one_was_set():
    with dg.instance_for_test() as instance:
        assert ensure_gpu_pool_limit(instance)
        assert instance.event_log_storage.get_concurrency_info(GPU_POOL).slot_count == 1
        instance.event_log_storage.set_concurrency_slots(GPU_POOL, 3)  # a user's choice is kept
        assert not ensure_gpu_pool_limit(instance)
        assert instance.event_log_storage.get_concurrency_info(GPU_POOL).slot_count == 3


def test_stage1_reports_its_run_through_pipes(trained):
    artifacts, _, instance, result, _ = trained
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    materialization = metadata_of(result, "clara_stage1_pretrain")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    current = CurrentRun.read(stage_dir(artifacts, 32, "pretrain"))
    assert meta["steps"] == STEPS["clara_stage1_pretrain"] and meta["world_size"] == 1
    assert meta["best_loss"] <= meta["final_loss"] and meta["best_loss"] <= meta["first_loss"]
    assert meta["tokens_per_s"] > 0 and meta["train_wall_s"] > 0
    assert meta["checkpoint"] == str(current.checkpoint) and meta["checkpoint_bytes"] > 0
    assert meta["loss_curve"].startswith("![pretrain loss curve](data:image/png;base64,")
    assert (current.run_dir / "loss_curve.png").read_bytes().startswith(b"\x89PNG")
    assert "clara_model.train --stage pretrain" in meta["command"]
    assert "model.compression_rate=32" in meta["command"] and "model.base_model=tiny" in meta["command"]
    assert meta["run_inputs"]["compression_rate"] == 32 and meta["fingerprint"] == current.fingerprint
    assert materialization.tags["dagster/data_version"] == checkpoint_digest(current.checkpoint)
    # progress was relayed as structured logs, not only as raw stdout
    logs = [e.message for e in instance.all_logs(result.run_id) if e.message and e.message.startswith("step ")]
    assert any(line.startswith(f"step 2/{STEPS['clara_stage1_pretrain']}") for line in logs), logs


def test_the_three_stages_chain_and_their_checks_pass(trained):
    artifacts, _, _, result, _ = trained
    assert result.success
    checks = {(c.asset_key.to_user_string(), c.check_name): c for c in result.get_asset_check_evaluations()}
    assert len(checks) == 6
    for asset in STEPS:
        assert checks[(asset, "checkpoint_loads")].passed, checks[(asset, "checkpoint_loads")].metadata
        assert checks[(asset, "checkpoint_loads")].metadata["compression_rate"].value == 32
    # each stage started from the previous stage's exported checkpoint
    for stage, previous in (("instruct", "pretrain"), ("e2e", "instruct")):
        launch = json.loads((CurrentRun.read(stage_dir(artifacts, 32, stage)).run_dir / "launch.json").read_text())
        assert launch["spec"]["init_from"] == str(CurrentRun.read(stage_dir(artifacts, 32, previous)).checkpoint)
    meta = metadata_of(result, "clara_stage3_e2e").metadata
    assert "final_recall@1" in meta  # stage 3 logs retrieval recall per step


def test_the_same_work_again_reuses_the_checkpoint_without_training(trained):
    artifacts, defs, instance, first, _ = trained
    assert first.success
    current = CurrentRun.read(stage_dir(artifacts, 32, "pretrain"))
    launched = (current.run_dir / "launch.json").read_bytes()
    again = defs.resolve_job_def("train_stage1_pretrain").execute_in_process(
        instance=instance, partition_key="32", run_config=run_config(clara_stage1_pretrain=STEPS["clara_stage1_pretrain"]),
        raise_on_error=False)
    assert again.success
    materialization = metadata_of(again, "clara_stage1_pretrain")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta["reused"] is True and meta["steps"] == STEPS["clara_stage1_pretrain"]
    assert meta["loss_curve"].startswith("![pretrain loss curve](data:image/png;base64,")
    assert materialization.tags["dagster/data_version"] == current.data_version
    assert (current.run_dir / "launch.json").read_bytes() == launched  # no new launch
    assert CurrentRun.read(stage_dir(artifacts, 32, "pretrain")) == current


def test_evaluation_reports_a_table_against_the_baselines(trained):
    artifacts, _, _, _, result = trained
    assert result is not None and result.success
    meta = metadata_of(result, "clara_evaluation").metadata
    table = meta["results"].value
    for system in ("stage2", "stage3", "untrained_docs", "untrained_retrieval", "full_text_rag", "closed_book"):
        assert f"| {system} " in table
    report = json.loads((artifacts / "evaluation" / "rate-32" / "report.json").read_text())
    assert report["systems"]["stage3"]["rows"] == 2
    assert set(report["systems"]["stage3"]["recall"]) >= {"recall@1", "recall@3", "recall@5"}
    # the same question for every system; what the decoder reads differs
    assert meta["full_text_rag/prompt_tokens"].value == meta["stage2/prompt_tokens"].value
    assert meta["full_text_rag/decoder_tokens"].value > meta["stage2/decoder_tokens"].value > \
        meta["closed_book/decoder_tokens"].value
    # empty predictions are counted, and a system that wrote nothing at all fails the (warning) check
    (check,) = result.get_asset_check_evaluations()
    all_empty = [name for name, r in report["systems"].items() if r["empty_predictions"] == r["rows"]]
    assert (check.check_name, check.severity, check.passed) == \
        ("predictions_not_empty", dg.AssetCheckSeverity.WARN, not all_empty)
    assert check.metadata["systems_all_empty"].value == len(all_empty)


def test_evaluating_the_same_checkpoints_again_reuses_the_report(trained):
    artifacts, defs, instance, _, first = trained
    assert first is not None and first.success
    path = artifacts / "evaluation" / "rate-32" / "report.json"
    stored = path.read_bytes()
    config = {"ops": {"clara_evaluation": {"config": {"max_rows": 2, "max_new_tokens": 8}}}}
    again = defs.resolve_job_def("evaluate_clara").execute_in_process(
        instance=instance, partition_key="32", raise_on_error=False, run_config=config)
    assert again.success
    meta = metadata_of(again, "clara_evaluation").metadata
    assert meta["reused"].value is True and path.read_bytes() == stored
    assert meta["results"].value == metadata_of(first, "clara_evaluation").metadata["results"].value


def test_a_later_stage_without_its_previous_checkpoint_fails_with_a_reason(tmp_path):
    artifacts = tmp_path / "artifacts"
    write_tiny_datasets(artifacts / "datasets")
    defs = definitions(tmp_path, artifacts)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("train_stage2_instruct").execute_in_process(
            instance=instance, partition_key="64", raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "clara_stage1_pretrain[64], which has no checkpoint yet" in \
        failure.step_failure_data.user_failure_data.description


def test_a_trainer_that_refuses_its_settings_fails_the_step_with_its_reason(tmp_path):
    artifacts = tmp_path / "artifacts"
    write_tiny_datasets(artifacts / "datasets")
    defs = definitions(tmp_path, artifacts)
    config = {"ops": {"clara_stage1_pretrain": {"config": {"max_steps": 2, "overrides": ["optim.no_such_key=1"]}}}}
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("train_stage1_pretrain").execute_in_process(
            instance=instance, partition_key="64", run_config=config, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith("clara_stage1_pretrain[64]: the trainer exited with 2: --set: unknown key "
                                  "'optim.no_such_key'"), description
    assert CurrentRun.read(stage_dir(artifacts, 64, "pretrain")) is None  # nothing published


def test_stage1_backfills_over_two_compression_rates(tmp_path):
    artifacts = tmp_path / "artifacts"
    write_tiny_datasets(artifacts / "datasets")
    defs = definitions(tmp_path, artifacts)
    job = defs.resolve_job_def("train_stage1_pretrain")
    with dg.instance_for_test() as instance:
        for rate in ("4", "16"):  # what a backfill of the stage over two partitions launches: a run each
            result = job.execute_in_process(instance=instance, partition_key=rate, run_config=run_config(
                clara_stage1_pretrain=3), tags={"dagster/backfill": "rates"}, raise_on_error=False)
            assert result.success, rate
        materialized = instance.get_materialized_partitions(dg.AssetKey("clara_stage1_pretrain"))
    assert materialized == {"4", "16"}
    n_mem = {}
    for rate in (4, 16):
        current = CurrentRun.read(stage_dir(artifacts, rate, "pretrain"))
        config = json.loads((current.checkpoint / "config.json").read_text())
        assert config["clara"]["model"]["compression_rate"] == rate
        n_mem[rate] = len(config["tokens"]["mem_ids"])
    assert n_mem[4] == 4 * n_mem[16]


def _children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:  # field 4 of stat: the parent pid
                found.append(int(entry))
    return found


def test_sigterm_stops_the_trainers_process_group_and_a_relaunch_resumes(tmp_path):
    data = write_tiny_datasets(tmp_path / "datasets") / "pretrain.jsonl"
    out = tmp_path / "run"
    command = [sys.executable, "-m", "clara_pipeline.training.launch", "--stage", "pretrain", "--data", str(data),
               "--output", str(out), "--set", "model.base_model=tiny", "--set", "train.save_every=1",
               "--max-steps", "60", "--relay-every", "1"]
    for item in CPU_OVERRIDES:
        command += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 180
        while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().count("\n") >= 2):
            assert launcher.poll() is None, launcher.communicate()
            assert time.monotonic() < deadline, "the trainer logged no step within 180 s"
            time.sleep(0.2)
        (trainer,) = _children(launcher.pid)
        assert os.getpgid(trainer) == trainer != os.getpgid(launcher.pid)  # its own process group
        launcher.send_signal(signal.SIGTERM)
        _, stderr = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 1
    assert "stopped by SIGTERM" in stderr
    with pytest.raises(ProcessLookupError):
        os.killpg(trainer, 0)  # no rank outlived the launcher
    assert not (out / "final").exists()

    # the same launch again picks the run up from its last resume checkpoint
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    report = json.loads(again.stdout)  # stdout carries the report alone
    # step 2 was logged before the kill; its resume checkpoint may not have been written yet
    assert report["steps"] == 60 and report["resumed_from_step"] >= 1
    assert report["data_version"] == checkpoint_digest(out / "final")
