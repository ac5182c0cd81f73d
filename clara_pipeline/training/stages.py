"""The three training stages as the pipeline runs them: their data, their hand-off, their versions, and the plan
of one run (which folder, which command settings).

Pure: no Dagster, no torch. `clara_pipeline.defs.training` turns each `StageSpec` into an asset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clara_model.contract import TRAINER_VERSION  # torch-free: loading the Dagster definitions loads no torch

from ..storage import DATASET_FILES, eval_file_name
from .launch import LaunchSpec
from .runs import RUNS_DIR, CurrentRun, file_digests, run_fingerprint, stage_dir

COMPRESSION_RATES = ("4", "16", "32", "64", "128")
# The stage configs the trainer ships (clara_model/configs/<stage>.yaml).
CONFIG_DIR = Path(importlib.util.find_spec("clara_model").origin).parent / "configs"


@dataclass(frozen=True)
class StageSpec:
    """One stage: the trainer's name for it, its Dagster asset, its training data, and the stage it starts from."""

    stage: str  # the trainer's --stage
    asset: str
    dataset_asset: str
    data_file: str  # under the artifacts' datasets/ folder (storage.DATASET_FILES)
    eval_file: str | None  # held-out rows, same format
    previous: str | None  # the stage whose checkpoint this one starts from

    @property
    def config_file(self) -> Path:
        """The stage's hyperparameters (YAML), passed to the trainer with --config."""
        return CONFIG_DIR / f"{self.stage}.yaml"


STAGES = {
    "pretrain": StageSpec("pretrain", "clara_stage1_pretrain", "pretrain_dataset", DATASET_FILES["pretrain"], None,
                          None),
    "instruct": StageSpec("instruct", "clara_stage2_instruct", "instruction_dataset", DATASET_FILES["instruct"],
                          eval_file_name(DATASET_FILES["instruct"]), "pretrain"),
    "e2e": StageSpec("e2e", "clara_stage3_e2e", "end_to_end_dataset", DATASET_FILES["e2e"],
                     eval_file_name(DATASET_FILES["e2e"]), "instruct"),
}


def stage_code_version(stage: StageSpec) -> str:
    """Return the hash of the stage's YAML config and TRAINER_VERSION: what makes its checkpoints stale."""
    h = hashlib.sha256(f"trainer {TRAINER_VERSION}\n".encode())
    h.update(stage.config_file.read_bytes())
    return f"{stage.stage}-{h.hexdigest()[:12]}"


@dataclass(frozen=True)
class StageRunPlan:
    """Where one run of a stage goes and what it is launched with."""

    spec: LaunchSpec
    stage_dir: Path
    run_dir: Path
    fingerprint: str
    inputs: dict  # what the fingerprint hashes: why this run folder and not another


def plan_stage_run(
    stage: StageSpec,
    *,
    artifacts_root: str | Path,
    datasets_dir: str | Path,
    compression_rate: int,
    previous: CurrentRun | None,
    base_model: str,
    overrides: Sequence[str],
    base_digest: str | None = None,
    launch_options: Mapping[str, Any] | None = None,
) -> StageRunPlan:
    """Return the plan of one run of `stage` at `compression_rate`.

    The run folder is named by a fingerprint of everything that decides the result (see runs.py), so the same
    work always lands in the same folder, and resumes there after an interruption. `launch_options` are the
    run's operational LaunchSpec fields (max_steps, num_gpus, num_nodes, hostfile, cpu_processes, master_port,
    relay_every, echo, resume); of those, only what changes the computation enters the fingerprint.

    Raises:
        ValueError: when a stage that needs the previous stage's checkpoint gets none.
        FileNotFoundError: when the data file or the stage config is missing.
    """
    if stage.previous and previous is None:
        raise ValueError(f"stage {stage.stage} starts from stage {stage.previous}'s checkpoint, which does not exist "
                         f"at compression rate {compression_rate}")
    data = Path(datasets_dir) / stage.data_file
    sets = list(overrides)
    if stage.previous is None:
        sets.insert(0, f"model.base_model={base_model}")  # the architecture is chosen in stage 1 only
    directory = stage_dir(artifacts_root, compression_rate, stage.stage)
    spec = LaunchSpec(
        stage=stage.stage, data=(str(data),), output_dir="", init_from=str(previous.checkpoint) if previous else None,
        config_file=str(stage.config_file), overrides=tuple(sets), compression_rate=compression_rate,
        **(launch_options or {}),
    )
    hostfile_digest = file_digests([spec.hostfile])[0] if spec.hostfile else None
    inputs = {
        "trainer_version": TRAINER_VERSION,
        "stage": stage.stage,
        "compression_rate": compression_rate,
        "data": file_digests([data]),
        "init_from": previous.data_version if previous else None,
        "base": base_digest,  # the base's weights (clara_base_model), so a new base trains in a new folder
        "config": file_digests([stage.config_file]),
        "overrides": sets,
        "max_steps": spec.max_steps,
        "processes": [spec.num_gpus, spec.num_nodes, hostfile_digest, spec.cpu_processes],
    }
    fingerprint = run_fingerprint(inputs)
    run_dir = directory / RUNS_DIR / fingerprint
    return StageRunPlan(spec=dataclasses.replace(spec, output_dir=str(run_dir)), stage_dir=directory,
                        run_dir=run_dir, fingerprint=fingerprint, inputs=inputs)
