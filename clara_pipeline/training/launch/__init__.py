"""The training launcher: the Dagster Pipes child that runs one training stage as a DeepSpeed job.

    python -m clara_pipeline.training.launch                # under Dagster Pipes: everything comes from extras
    python -m clara_pipeline.training.launch --stage pretrain --data pretrain.jsonl --output out/ \\
        --set model.base_model=tiny --max-steps 20          # standalone, for debugging (no Dagster)

What it does, in order:

0. checks the inputs, and announces the DeepSpeed C++ op a CPU job builds on its first run (about a minute,
   cached in TORCH_EXTENSIONS_DIR; see ..ops), or refuses to start when the compiler it needs is missing;
1. builds the trainer command (`spec`): `python -m clara_model.train ...` for one CPU process; `python -m
   deepspeed.launcher.runner [--hostfile H] [--num_nodes N] --num_gpus G --module clara_model.train ...` when
   GPUs, a hostfile or several processes are asked for (on CPU DeepSpeed runs G processes over gloo);
2. starts it in its own process group (session), with the DAGSTER_PIPES_* variables removed from its
   environment, so that N ranks never write into the one Pipes message channel (`supervise`);
3. tails the rank-0 `metrics.jsonl` while it runs and relays every `relay_every`-th step as a Pipes log line
   and a custom message; the trainer's output goes to DIR/train.log and (unless `echo` is off) to our stderr, and
   its last lines are kept for the error;
4. forwards SIGINT/SIGTERM to the whole group (`os.killpg`): Dagster signals only this process, and waits
   20 s before giving up. After `grace_s` the group is killed;
5. reports the materialization (`report`): losses, steps, throughput, wall time, a loss-curve PNG (embedded as
   Markdown and written next to the checkpoint), checkpoint path and size, the command; data version = the
   checkpoint's digest. A trainer that fails makes the launcher exit 1 with the trainer's last stderr lines.

Modules: `spec` (LaunchSpec, the command, the environment, the standalone options), `supervise` (the process
group), `report` (the result). Imports only the standard library, dagster-pipes, matplotlib (for the plot) and
`clara_model.contract`: no torch, no dagster.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from ...storage import write_bytes_atomic, write_json_atomic
from ..ops import missing_build_tools, pending_op_build
from ..runs import FAILURE_FILE, LAUNCH_FILE, REPORT_FILE, clear_failure, read_init_compression_rate
from .report import LaunchResult, collect_result, pipes_metadata, read_report
from .spec import (
    RUN_OPTIONS,
    LaunchError,
    LaunchSpec,
    add_launch_arguments,
    build_command,
    launch_settings,
    spec_from_arguments,
    trainer_arguments,
    trainer_environment,
)
from .supervise import Reporter, TrainerRun, run_trainer

__all__ = [
    "EXTRAS_KEY",
    "RUN_OPTIONS",
    "LaunchError",
    "LaunchResult",
    "LaunchSpec",
    "Reporter",
    "TrainerRun",
    "build_command",
    "collect_result",
    "launch",
    "launch_settings",
    "main",
    "pipes_metadata",
    "read_report",
    "run_trainer",
    "trainer_arguments",
    "trainer_environment",
]

EXTRAS_KEY = "launch"  # the Pipes extra that carries LaunchSpec.to_dict()


def launch(spec: LaunchSpec, reporter: Reporter, *, python: str = sys.executable,
           grace_s: float = 15.0) -> LaunchResult:
    """Run one training job from start to checkpoint; return what to report.

    Raises:
        LaunchError: when the job cannot start, fails or is stopped; the reason is also in DIR/launch_failed.txt.
    """
    output = Path(spec.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    clear_failure(output)
    try:
        _check_inputs(spec)
        notices = _check_op_build(spec)
        command = build_command(spec, python)
        write_json_atomic(output / LAUNCH_FILE, {"spec": spec.to_dict(), "command": command, "notices": notices,
                                                 "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        reporter.info(f"launching stage {spec.stage}: {shlex.join(command)}")
        for notice in notices:
            reporter.info(notice)
        run = run_trainer(spec, command, reporter, grace_s=grace_s)
        result = collect_result(spec, run)
        write_json_atomic(output / REPORT_FILE, asdict(result))
        return result
    except LaunchError as error:
        write_bytes_atomic(output / FAILURE_FILE, (str(error) + "\n").encode("utf-8"))
        raise


def _check_op_build(spec: LaunchSpec) -> list[str]:
    """Return the notice of a DeepSpeed op the trainer will build first (none when it is cached or not needed).

    Raises:
        LaunchError: when the build is needed and the compiler or ninja is missing (DeepSpeed would fail later, in
            every rank, with a long traceback).
    """
    build = pending_op_build(spec.num_gpus)
    if build is None:
        return []
    missing = missing_build_tools()
    if missing:
        raise LaunchError(f"training on CPU needs DeepSpeed's {build.name} C++ op, built once into {build.directory}, "
                          f"and this machine lacks {' and '.join(missing)}")
    return [build.notice]


def _check_inputs(spec: LaunchSpec) -> None:
    missing = [p for p in spec.data if not Path(p).is_file()]
    if missing:
        raise LaunchError(f"data file(s) not found: {', '.join(missing)}")
    if spec.hostfile and not Path(spec.hostfile).is_file():
        raise LaunchError(f"hostfile not found: {spec.hostfile}")
    if spec.config_file and not Path(spec.config_file).is_file():
        raise LaunchError(f"config file not found: {spec.config_file}")
    if spec.init_from:
        if not Path(spec.init_from).is_dir():
            raise LaunchError(f"init_from {spec.init_from} is not a checkpoint folder; train the previous stage first")
        rate = read_init_compression_rate(spec.init_from)
        if spec.compression_rate is not None and rate is not None and rate != spec.compression_rate:
            raise LaunchError(f"stage {spec.stage} at compression rate {spec.compression_rate} would start from "
                              f"{spec.init_from}, a checkpoint trained at compression rate {rate}")


# -- entry point -----------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run under Dagster Pipes when launched by Dagster, else from the command line; return the exit code."""
    from dagster_pipes import PipesEnvVarParamsLoader

    if PipesEnvVarParamsLoader().is_dagster_pipes_process():
        return _main_pipes()
    return _main_standalone(argv)


def _main_pipes() -> int:
    from dagster_pipes import open_dagster_pipes

    try:
        with open_dagster_pipes() as pipes:
            spec = LaunchSpec.from_dict(pipes.get_extra(EXTRAS_KEY))
            reporter = Reporter(info=pipes.log.info, error=pipes.log.error,
                                progress=lambda record: pipes.report_custom_message({"metrics": record}))
            result = launch(spec, reporter)
            pipes.report_asset_materialization(metadata=pipes_metadata(result), data_version=result.data_version)
    except LaunchError as error:
        # open_dagster_pipes has already sent the error to Dagster (an engine event with the message).
        print(f"clara launch: {error}", file=sys.stderr)
        return 1
    return 0


def _main_standalone(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clara_pipeline.training.launch",
                                     description="Run one CLaRa training stage (standalone: no Dagster)")
    add_launch_arguments(parser)
    args = parser.parse_args(argv)
    try:
        spec = spec_from_arguments(args)
    except ValueError as error:
        parser.error(str(error))
    say = lambda message: print(f"[launch] {message}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        result = launch(spec, Reporter(info=say, error=say))
    except LaunchError as error:
        print(f"clara launch: {error}", file=sys.stderr)
        return 1
    report = {**result.metadata, **result.paths, "data_version": result.data_version}
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0
