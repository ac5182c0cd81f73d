"""The three CLaRa training stages: partitioned by compression rate, launched through Dagster Pipes.

Each stage asset plans a run (clara_pipeline.training.stages), runs the launcher
(`python -m clara_pipeline.training.launch`) through the `pipes_subprocess_client` resource, and makes the run
the stage's current checkpoint once it succeeded. The launcher starts DeepSpeed in its own process group,
relays rank-0 metrics as logs, forwards cancellation, and reports the materialization (metadata, and the
checkpoint's digest as data version).

Re-materializing the same partition with the same data and settings resumes an interrupted run from its last
checkpoint; new data or settings train from the previous stage's checkpoint in a fresh folder.
"""

import os
import sys
from pathlib import Path

import dagster as dg
import pydantic
from dagster._core.errors import DagsterPipesExecutionError  # not exported by `dagster` in 1.13

from clara_model.contract import METRICS_FILE

from ..training.launch import EXTRAS_KEY, RUN_OPTIONS, LaunchResult, launch_settings, read_report
from ..training.metrics import loss_fell, read_metrics
from ..training.probe import probe_checkpoint
from ..training.runs import CurrentRun, publish_run, read_failure, stage_dir
from ..training.stages import (
    COMPRESSION_RATES,
    STAGES,
    StageSpec,
    plan_stage_run,
    stage_code_version,
)
from ..training.base_model import CPU_BASE, TINY, read_record
from .resources import ArtifactStoreResource

GPU_POOL = "gpu"  # one training or evaluation step at a time (ensure_gpu_pool_limit)
GPU_POOL_LIMIT = 1
LAUNCHER_MODULE = "clara_pipeline.training.launch"

compression_rates = dg.StaticPartitionsDefinition(list(COMPRESSION_RATES))


# The embedded defaults: the tiny model on CPU, with optimizer steps of 8 samples instead of the paper's 128
# (stages 1-2) and 32 (stage 3), so that a few dozen steps take a minute or two.
TINY_CPU_OVERRIDES = ("batch.global_batch_size=8", "train.save_every=10")


class TrainingSettings(dg.ConfigurableResource):
    """How this deployment trains: the base model, settings for every stage, the Python that runs the launcher.

    The defaults pretrain the project's small CPU base (clara_base_model) and train on it on CPU with small
    batches. On GPUs set `base_model` to "Qwen/Qwen3-4B-Instruct-2507" (or a folder) and `overrides` to [] (the
    stage configs, clara_model/configs/, hold the paper's settings), and raise the run config's `max_steps` (or
    set it to 0 to train for the configs' epochs).
    """

    base_model: str = CPU_BASE  # "clara-cpu", "tiny" (random init, cannot learn), a hub id or a local folder
    overrides: list[str] = list(TINY_CPU_OVERRIDES)  # `key=value` for every stage, before the run's own
    python: str = ""  # interpreter for the launcher and the trainer; "" means this one
    echo_trainer_output: bool = True  # the trainer's log lines in the step's output too (always in train.log)
    cpu_base_steps: int = 0  # steps of the CPU base on the corpus (after its shipped reading skill); 0: the default

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, *, echo_trainer_output: bool = True) -> "TrainingSettings":
        """`CLARA_BASE_MODEL` (default "clara-cpu"; "tiny"; a hub id or a local folder trains with the stage
        configs as shipped), `CLARA_TRAIN_PYTHON` (the interpreter of the training environment, default this one)
        and `CLARA_CPU_BASE_STEPS` (steps of the CPU base on the corpus, after its shipped reading skill)."""
        env = os.environ if environ is None else environ
        base_model = env.get("CLARA_BASE_MODEL") or CPU_BASE
        small = base_model in (CPU_BASE, TINY)
        return cls(base_model=base_model, overrides=list(TINY_CPU_OVERRIDES) if small else [],
                   python=env.get("CLARA_TRAIN_PYTHON", ""), echo_trainer_output=echo_trainer_output,
                   cpu_base_steps=int(env.get("CLARA_CPU_BASE_STEPS") or 0))

    def interpreter(self) -> str:
        return self.python or sys.executable


class _StageRunConfig(dg.Config):
    def launch_options(self) -> dict:
        """The LaunchSpec fields this config sets (everything but `overrides`, which join the stage's --set)."""
        options = self.model_dump(exclude={"overrides"})
        return {**options, "hostfile": options["hostfile"] or None}


# The Launchpad's config of a stage run: LaunchSpec's RUN_OPTIONS (types, defaults, help: their one home is
# clara_pipeline.training.launch.spec), with a quick CPU run as the default length, plus the run's own overrides.
TrainStageConfig = pydantic.create_model(
    "TrainStageConfig",
    __base__=_StageRunConfig,
    __module__=__name__,
    __doc__="Operational knobs of one training run (the Launchpad's config for a stage).",
    **{
        **{name: (kind, pydantic.Field(default, description=text))
           for name, (kind, default, text) in launch_settings(RUN_OPTIONS).items()},
        "max_steps": (int, pydantic.Field(30, description="optimizer steps (a quick CPU run); 0 trains for the "
                                                          "stage config's epochs")),
        "overrides": (list[str], pydantic.Field([], description="`key=value`, passed to the trainer as --set "
                                                                '(e.g. "optim.lr=5e-5")')),
    },
)


def training_resources() -> dict[str, dg.ConfigurableResource | dg.PipesSubprocessClient]:
    """The resources the training assets need, with the embedded defaults."""
    # PYTHONUNBUFFERED: the launcher's and the trainer's output reaches the compute logs as it is written.
    return {"training": TrainingSettings.from_env(),
            "pipes_subprocess_client": dg.PipesSubprocessClient(env={"PYTHONUNBUFFERED": "1"})}


def ensure_gpu_pool_limit(instance: dg.DagsterInstance) -> bool:
    """Give the `gpu` pool a limit of one step unless someone set one (UI, `dagster instance concurrency set`).

    dagster.yaml has a default limit for every pool (`concurrency.pools.default_limit`) but none per pool.
    Returns whether the limit was set now.
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return False
    explicit = {limit.name for limit in storage.get_pool_limits() if not limit.from_default}
    if GPU_POOL in explicit:
        return False
    storage.set_concurrency_slots(GPU_POOL, GPU_POOL_LIMIT)
    return True


def resolve_stage_base(artifacts_root, requested: str) -> tuple[str, str | None]:
    """The trainer's `model.base_model` and the base's digest: from clara_base_model's record when it was made for
    `requested`; "tiny" and real weights without a record are used as named (no digest).

    Raises:
        dg.Failure: when the CPU base is asked for and clara_base_model has not built it.
    """
    record = read_record(artifacts_root)
    if record is not None and record.requested == requested:
        return record.name_or_path, record.digest
    if requested == CPU_BASE:
        raise dg.Failure("the CPU base model is not built yet: materialize clara_base_model first", allow_retries=False)
    return requested, None


def train_stage(
    context: dg.AssetExecutionContext,
    stage: StageSpec,
    config: TrainStageConfig,
    client: dg.PipesSubprocessClient,
    artifacts: ArtifactStoreResource,
    training: TrainingSettings,
) -> dg.MaterializeResult:
    """Train `stage` at the partition's compression rate; return the launcher's reported materialization."""
    store = artifacts.store()
    rate = int(context.partition_key)
    previous = CurrentRun.read(stage_dir(store.root, rate, stage.previous)) if stage.previous else None
    if stage.previous and previous is None:
        raise dg.Failure(f"{stage.asset}[{rate}] starts from {STAGES[stage.previous].asset}[{rate}], which has no "
                         "checkpoint yet: materialize it first", allow_retries=False)
    base_name, base_digest = resolve_stage_base(store.root, training.base_model)
    plan = plan_stage_run(stage, artifacts_root=store.root, datasets_dir=store.datasets_dir, compression_rate=rate,
                          previous=previous, base_model=base_name, base_digest=base_digest,
                          overrides=[*training.overrides, *config.overrides],
                          launch_options={**config.launch_options(), "echo": training.echo_trainer_output})
    context.log.info(f"run folder {plan.run_dir} (fingerprint {plan.fingerprint})")
    current = CurrentRun.read(plan.stage_dir)
    report = read_report(plan.run_dir)
    if current and current.fingerprint == plan.fingerprint and report and current.checkpoint.is_dir():
        # Training is deterministic in its inputs, and these are the inputs of the current checkpoint.
        context.log.info(f"{stage.asset}[{rate}] is up to date: the current checkpoint was trained from the same "
                         "data, checkpoint and settings; not training again (change max_steps or overrides to retrain)")
        return dg.MaterializeResult(metadata={**_metadata_values(report), "fingerprint": plan.fingerprint,
                                              "run_inputs": dg.MetadataValue.json(plan.inputs),
                                              "reused": True},
                                    data_version=dg.DataVersion(current.data_version))
    try:
        result = client.run(context=context, command=[training.interpreter(), "-m", LAUNCHER_MODULE],
                            extras={EXTRAS_KEY: plan.spec.to_dict()}).get_materialize_result()
    except DagsterPipesExecutionError as error:
        reason = read_failure(plan.run_dir) or str(error)
        raise dg.Failure(description=f"{stage.asset}[{rate}]: {reason}",
                         metadata={"run_dir": dg.MetadataValue.path(str(plan.run_dir))}) from error
    if result.data_version is None:  # the launcher never reported (dagster-io/dagster#17868)
        raise dg.Failure(f"{stage.asset}[{rate}]: the launcher finished without reporting a checkpoint")
    publish_run(plan.stage_dir, plan.run_dir, result.data_version.value)
    return dg.MaterializeResult(metadata={**result.metadata, "fingerprint": plan.fingerprint,
                                          "run_inputs": dg.MetadataValue.json(plan.inputs)},
                                data_version=result.data_version)


def _metadata_values(report: LaunchResult) -> dict[str, object]:
    """A stored launcher report as Dagster metadata (what the Pipes materialization carried)."""
    metadata: dict[str, object] = dict(report.metadata)
    metadata.update({k: dg.MetadataValue.md(v) for k, v in report.markdown.items()})
    metadata.update({k: dg.MetadataValue.path(v) for k, v in report.paths.items()})
    return metadata


def _stage_asset(stage: StageSpec) -> dg.AssetsDefinition:
    deps = [dg.AssetDep("clara_base_model"), dg.AssetDep(stage.dataset_asset)]
    if stage.previous:
        deps.insert(0, dg.AssetDep(STAGES[stage.previous].asset, partition_mapping=dg.IdentityPartitionMapping()))

    @dg.asset(
        name=stage.asset,
        deps=deps,
        partitions_def=compression_rates,  # no backfill_policy: a backfill is one run (one job) per rate
        group_name="training",
        pool=GPU_POOL,
        code_version=stage_code_version(stage),
        kinds={"pytorch", "deepspeed"},
        description=_DESCRIPTIONS[stage.stage],
    )
    def train(context: dg.AssetExecutionContext, config: TrainStageConfig,
              pipes_subprocess_client: dg.PipesSubprocessClient, artifacts: ArtifactStoreResource,
              training: TrainingSettings) -> dg.MaterializeResult:
        return train_stage(context, stage, config, pipes_subprocess_client, artifacts, training)

    return train


_DESCRIPTIONS = {
    "pretrain": "Stage 1, salient compressor pretraining: encoder + decoder LoRA and the memory-token rows learn to "
                "answer QA pairs about, and paraphrase, one compressed document (CE + 0.1 MSE).",
    "instruct": "Stage 2, compression instruction tuning: answer a question from k compressed documents, starting "
                "from stage 1's encoder with a fresh decoder.",
    "e2e": "Stage 3, end to end: the query reasoner picks top-k of N compressed candidates through a "
           "differentiable top-k, and only the answer's loss trains reasoner and decoder.",
}

clara_stage1_pretrain = _stage_asset(STAGES["pretrain"])
clara_stage2_instruct = _stage_asset(STAGES["instruct"])
clara_stage3_e2e = _stage_asset(STAGES["e2e"])
training_assets = [clara_stage1_pretrain, clara_stage2_instruct, clara_stage3_e2e]


# -- checks --------------------------------------------------------------------------------------------------


def loss_fell_result(artifacts_root, compression_rate: int, stage: StageSpec) -> dg.AssetCheckResult:
    """The `loss_fell` check of a stage's current run (a warning when it fails, not a gate)."""
    current = CurrentRun.read(stage_dir(artifacts_root, compression_rate, stage.stage))
    if current is None:
        return dg.AssetCheckResult(passed=False, metadata={"details": "no checkpoint for this partition"})
    trend = loss_fell(read_metrics(current.run_dir / METRICS_FILE))
    # A warning: a short CPU run can be noisy; a broken checkpoint is what must stop the next stage.
    return dg.AssetCheckResult(passed=trend.passed, severity=dg.AssetCheckSeverity.WARN,
                               metadata=trend.to_metadata())


def checkpoint_loads_result(artifacts_root, datasets_dir, compression_rate: int,
                            stage: StageSpec) -> dg.AssetCheckResult:
    """The `checkpoint_loads` check of a stage's current run: it loads, at this rate, as this stage, and computes."""
    current = CurrentRun.read(stage_dir(artifacts_root, compression_rate, stage.stage))
    if current is None:
        return dg.AssetCheckResult(passed=False, metadata={"details": "no checkpoint for this partition"})
    where = {"checkpoint": dg.MetadataValue.path(str(current.checkpoint))}
    try:
        probe = probe_checkpoint(current.checkpoint, Path(datasets_dir) / stage.data_file)
    except Exception as error:  # noqa: BLE001 - any failure to load or compute is what this check reports
        return dg.AssetCheckResult(passed=False, metadata={**where, "details": f"{type(error).__name__}: {error}"})
    problems = [problem for problem, bad in (
        (f"the loss is {probe.loss}", not probe.finite),
        (f"compression rate {probe.compression_rate}, partition {compression_rate}",
         probe.compression_rate != compression_rate),
        (f"a {probe.stage} checkpoint, not {stage.stage}", probe.stage != stage.stage)) if bad]
    return dg.AssetCheckResult(passed=not problems, metadata={
        **where, "details": "; ".join(problems) or "loads and computes", "loss": probe.loss, "rows": probe.rows,
        "stage": probe.stage, "adapters": ", ".join(probe.adapters), "compression_rate": probe.compression_rate,
        "expected_compression_rate": compression_rate, "n_mem": probe.n_mem})


def _loss_fell_check(stage: StageSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=stage.asset, name="loss_fell", partitions_def=compression_rates,
                    description="The mean loss of the last steps is below that of the first steps (metrics.jsonl).")
    def check(context: dg.AssetCheckExecutionContext, artifacts: ArtifactStoreResource) -> dg.AssetCheckResult:
        return loss_fell_result(artifacts.store().root, int(context.partition_key), stage)

    return check


def _checkpoint_loads_check(stage: StageSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=stage.asset, name="checkpoint_loads", partitions_def=compression_rates, blocking=True,
                    description="The exported checkpoint loads as inference loads it, at this partition's "
                                "compression rate, and one forward pass on the stage's data gives a finite loss.")
    def check(context: dg.AssetCheckExecutionContext, artifacts: ArtifactStoreResource) -> dg.AssetCheckResult:
        store = artifacts.store()
        return checkpoint_loads_result(store.root, store.datasets_dir, int(context.partition_key), stage)

    return check


training_checks = [make(STAGES[name]) for name in STAGES for make in (_loss_fell_check, _checkpoint_loads_check)]


# -- jobs ------------------------------------------------------------------------------------------------------


def _job(name: str, assets: list[dg.AssetsDefinition], description: str):
    return dg.define_asset_job(name, selection=dg.AssetSelection.assets(*assets),
                               executor_def=dg.in_process_executor, description=description)


training_jobs = [
    _job("train_stage1_pretrain", [clara_stage1_pretrain], "Stage 1 at one compression rate (its checks included)."),
    _job("train_stage2_instruct", [clara_stage2_instruct], "Stage 2 at one compression rate."),
    _job("train_stage3_e2e", [clara_stage3_e2e], "Stage 3 at one compression rate."),
    _job("train_all_stages", training_assets,
         "Stages 1, 2 and 3 at one compression rate, in order; a failed checkpoint_loads check stops the next stage."),
]
