"""One training job as the launcher sees it: `LaunchSpec` (what the trainer gets and how it is launched), the
command that runs it, and its environment.

The launch settings have their home here. Each operational field of `LaunchSpec` carries its help text in its
metadata; the standalone launcher's options are generated from those fields plus the trainer's own
(`clara_model.contract.TrainerArgs`), and the Launchpad's `TrainStageConfig` (clara_pipeline.defs.training) is
generated from the `RUN_OPTIONS` fields.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from clara_model.contract import FINAL_DIR, STAGES, TRAINER_MODULE, TrainerArgs

PIPES_ENV_PREFIX = "DAGSTER_PIPES_"


class LaunchError(RuntimeError):
    """The training job could not be started or did not finish with a checkpoint; the message says why."""


def _setting(default: Any, help: str, *, cli: bool = True) -> Any:
    """An operational LaunchSpec field; `cli=False` when the trainer's own option (TrainerArgs) carries it."""
    return field(default=default, metadata={"help": help, "cli": cli})


@dataclass(frozen=True)
class LaunchSpec:
    """One training job: what the trainer gets, and how it is launched.

    Raises:
        ValueError: on a contradiction, naming the field.
    """

    stage: str
    data: tuple[str, ...]
    output_dir: str
    init_from: str | None = None  # the previous stage's DIR/final; required for instruct and e2e
    config_file: str | None = None  # the stage's YAML hyperparameters
    overrides: tuple[str, ...] = ()  # `key=value`, passed as --set
    compression_rate: int | None = _setting(
        None, "pretrain: set on the model; later stages: checked against the --init-from checkpoint")
    max_steps: int = _setting(0, "optimizer steps; 0 trains for the stage config's epochs", cli=False)
    resume: bool = _setting(True, "resume an interrupted run of the same work from its last checkpoint", cli=False)
    num_gpus: int = _setting(0, "GPUs per node; 0 trains on CPU")
    num_nodes: int = _setting(0, "nodes; 0: every node of the hostfile (this machine alone without one)")
    hostfile: str | None = _setting(None, "DeepSpeed hostfile for multi-node jobs (`worker-0 slots=8` per line)")
    cpu_processes: int = _setting(1, "on CPU (num_gpus 0): 1 plain process, 2+ DeepSpeed ranks over gloo")
    master_port: int = _setting(0, "0: DeepSpeed's default (29500); set one when two jobs share a machine")
    relay_every: int = _setting(10, "relay one metrics line in this many steps")
    echo: bool = _setting(True, "copy the trainer's output to stderr (it always goes to DIR/train.log)", cli=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", tuple(str(d) for d in self.data))
        object.__setattr__(self, "overrides", tuple(self.overrides))
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if not self.data:
            raise ValueError("data must name at least one JSONL file")
        if self.stage == "pretrain" and self.init_from:
            raise ValueError("init_from: stage pretrain starts from the base model, not from a checkpoint")
        if self.stage != "pretrain" and not self.init_from:
            raise ValueError(f"init_from: stage {self.stage} starts from the previous stage's checkpoint "
                             f"(DIR/{FINAL_DIR})")
        for name in ("max_steps", "num_gpus", "num_nodes", "master_port"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.cpu_processes < 1:
            raise ValueError(f"cpu_processes must be >= 1, got {self.cpu_processes}")
        if self.relay_every < 1:
            raise ValueError(f"relay_every must be >= 1, got {self.relay_every}")
        if self.num_nodes > 1 and not self.hostfile:
            raise ValueError(f"num_nodes={self.num_nodes} needs a hostfile listing the nodes")
        if self.compression_rate is not None and self.compression_rate < 1:
            raise ValueError(f"compression_rate must be >= 1, got {self.compression_rate}")
        bad = [o for o in self.overrides if "=" not in o or not o.split("=", 1)[0].strip()]
        if bad:
            raise ValueError(f"overrides must be key=value, got {bad}")

    @property
    def distributed(self) -> bool:
        """Whether the job goes through the DeepSpeed launcher (else one plain Python process)."""
        return self.num_gpus > 0 or bool(self.hostfile) or self.num_nodes > 1 or self.cpu_processes > 1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["data"], data["overrides"] = list(self.data), list(self.overrides)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LaunchSpec:
        """Rebuild from `to_dict` output. Unknown keys raise ValueError (a typo should not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown launch settings {unknown}; known: {sorted(known)}")
        return cls(**data)

    def trainer_args(self) -> TrainerArgs:
        """Return the trainer's command line for this job."""
        sets = list(self.overrides)
        if self.stage == "pretrain" and self.compression_rate is not None:
            # The architecture is chosen in stage 1 only; later stages inherit it from --init-from.
            sets.insert(0, f"model.compression_rate={self.compression_rate}")
        return TrainerArgs(stage=self.stage, data=self.data, output=self.output_dir, init_from=self.init_from,
                           config=self.config_file, overrides=tuple(sets), max_steps=self.max_steps or None,
                           resume=self.resume)


# The settings a run of a stage takes from the Launchpad (TrainStageConfig): the job itself (stage, data, folders,
# compression rate) comes from the asset and its partition, `echo` from the TrainingSettings resource.
RUN_OPTIONS = ("max_steps", "num_gpus", "num_nodes", "hostfile", "cpu_processes", "resume", "master_port",
               "relay_every")


def launch_settings(names: typing.Iterable[str] = RUN_OPTIONS) -> dict[str, tuple[Any, Any, str]]:
    """Return {name: (type, default, help)} of LaunchSpec's operational fields `names` (for generated configs)."""
    hints = typing.get_type_hints(LaunchSpec)
    by_name = {f.name: f for f in fields(LaunchSpec)}
    return {name: (hints[name], by_name[name].default, by_name[name].metadata["help"]) for name in names}


def trainer_arguments(spec: LaunchSpec) -> list[str]:
    """Return the arguments of `clara_model.train` for `spec` (the trainer's CLI contract)."""
    return spec.trainer_args().to_argv()


def build_command(spec: LaunchSpec, python: str = sys.executable) -> list[str]:
    """Return the command that runs the trainer for `spec`: plain Python, or the DeepSpeed launcher."""
    if not spec.distributed:
        return [python, "-m", TRAINER_MODULE, *trainer_arguments(spec)]
    launcher = [python, "-m", "deepspeed.launcher.runner"]  # the `deepspeed` script, without relying on PATH
    if spec.hostfile:
        launcher += ["--hostfile", spec.hostfile]
    if spec.num_nodes:
        launcher += ["--num_nodes", str(spec.num_nodes)]
    # On CPU, DeepSpeed's --num_gpus is the number of local processes (gloo backend).
    launcher += ["--num_gpus", str(spec.num_gpus if spec.num_gpus > 0 else spec.cpu_processes)]
    if spec.master_port:
        launcher += ["--master_port", str(spec.master_port)]
    return [*launcher, "--module", TRAINER_MODULE, *trainer_arguments(spec)]


def trainer_environment(environ: dict[str, str] | None = None, *, master_port: int = 0) -> dict[str, str]:
    """Return the trainer's environment: ours without DAGSTER_PIPES_*, unbuffered output."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items()
           if not k.startswith(PIPES_ENV_PREFIX)}
    env["PYTHONUNBUFFERED"] = "1"
    if master_port:
        env["MASTER_PORT"] = str(master_port)  # read by a single-process trainer's process group
    return env


# -- the standalone command line ---------------------------------------------------------------------------------


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the trainer's options and an option per operational LaunchSpec field (`--num-gpus`, ...) to `parser`."""
    TrainerArgs.add_arguments(parser)
    hints = typing.get_type_hints(LaunchSpec)
    for f in fields(LaunchSpec):
        if not f.metadata.get("cli"):
            continue
        kind = typing.get_args(hints[f.name])[0] if typing.get_args(hints[f.name]) else hints[f.name]  # X | None: X
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=f.default,
                            help=f.metadata["help"])


def spec_from_arguments(args: argparse.Namespace) -> LaunchSpec:
    """Return the LaunchSpec `add_launch_arguments` options parsed into `args`.

    Raises:
        ValueError: on a contradiction (LaunchSpec's).
    """
    trainer = TrainerArgs.from_namespace(args)
    launch = {f.name: getattr(args, f.name) for f in fields(LaunchSpec) if f.metadata.get("cli")}
    return LaunchSpec(stage=trainer.stage, data=trainer.data, output_dir=trainer.output, init_from=trainer.init_from,
                      config_file=trainer.config, overrides=trainer.overrides, max_steps=trainer.max_steps or 0,
                      resume=trainer.resume, **launch)
