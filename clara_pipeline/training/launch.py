"""The training launcher: the Dagster Pipes child that runs one training stage as a DeepSpeed job.

    python -m clara_pipeline.training.launch                # under Dagster Pipes: everything comes from extras
    python -m clara_pipeline.training.launch --stage pretrain --data pretrain.jsonl --output out/ \\
        --set model.base_model=tiny --max-steps 20          # standalone, for debugging (no Dagster)

What it does, in order:

0. checks the inputs, and announces the DeepSpeed C++ op a CPU job builds on its first run (about a minute,
   cached in TORCH_EXTENSIONS_DIR; see ops.py), or refuses to start when the compiler it needs is missing;
1. builds the trainer command: `python -m clara_model.train ...` for one CPU process; `python -m
   deepspeed.launcher.runner [--hostfile H] [--num_nodes N] --num_gpus G --module clara_model.train ...` when
   GPUs, a hostfile or several processes are asked for (on CPU DeepSpeed runs G processes over gloo);
2. starts it in its own process group (session), with the DAGSTER_PIPES_* variables removed from its
   environment, so that N ranks never write into the one Pipes message channel;
3. tails the rank-0 `metrics.jsonl` while it runs and relays every `relay_every`-th step as a Pipes log line
   and a custom message; the trainer's output goes to DIR/train.log and (unless `echo` is off) to our stderr, and
   its last lines are kept for the error;
4. forwards SIGINT/SIGTERM to the whole group (`os.killpg`): Dagster signals only this process, and waits
   20 s before giving up. After `grace_s` the group is killed;
5. reports the materialization: losses, steps, throughput, wall time, a loss-curve PNG (embedded as Markdown and
   written next to the checkpoint), checkpoint path and size, the command; data version = the checkpoint's
   digest. A trainer that fails makes the launcher exit 1 with the trainer's last stderr lines.

Imports only the standard library, dagster-pipes and matplotlib (for the plot): no torch, no dagster.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..storage import write_bytes_atomic, write_json_atomic
from .metrics import MetricsTail, ProgressRelay, format_progress, read_metrics
from .ops import missing_build_tools, pending_op_build
from .plots import loss_curve_png, png_markdown
from .runs import (
    FAILURE_FILE,
    FINAL_DIR,
    LAUNCH_FILE,
    LOSS_CURVE_FILE,
    METRICS_FILE,
    REPORT_FILE,
    TRAIN_LOG_FILE,
    SUMMARY_FILE,
    checkpoint_digest,
    clear_failure,
    directory_bytes,
    read_init_compression_rate,
)

STAGES = ("pretrain", "instruct", "e2e")
TRAINER_MODULE = "clara_model.train"
PIPES_ENV_PREFIX = "DAGSTER_PIPES_"
EXTRAS_KEY = "launch"
STDERR_TAIL_LINES = 20
TRAINER_ERROR_PREFIX = "clara_model.train: error:"  # the trainer's last stderr line when it fails


class LaunchError(RuntimeError):
    """The training job could not be started or did not finish with a checkpoint; the message says why."""


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
    compression_rate: int | None = None  # pretrain: set on the model; later stages: checked against init_from
    max_steps: int = 0  # 0: as many steps as the config's epochs make
    resume: bool = True  # resume from DIR/resume/ when the folder holds an interrupted run
    num_gpus: int = 0  # GPUs per node; 0 trains on CPU
    num_nodes: int = 0  # 0: every node of the hostfile (or this machine alone without one)
    hostfile: str | None = None  # DeepSpeed hostfile (`worker-0 slots=8` per line) for multi-node jobs
    cpu_processes: int = 1  # processes on CPU when num_gpus is 0 (2: DeepSpeed with gloo)
    master_port: int = 0  # 0: DeepSpeed's default (29500)
    relay_every: int = 10  # relay one metrics line in this many steps
    echo: bool = True  # copy the trainer's output to our stderr (it always goes to DIR/train.log)

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
            raise ValueError(f"init_from: stage {self.stage} starts from the previous stage's checkpoint (DIR/final)")
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


def trainer_arguments(spec: LaunchSpec) -> list[str]:
    """Return the arguments of `clara_model.train` for `spec` (the trainer's CLI contract)."""
    args = ["--stage", spec.stage]
    for path in spec.data:
        args += ["--data", path]
    args += ["--output", spec.output_dir]
    if spec.init_from:
        args += ["--init-from", spec.init_from]
    if spec.config_file:
        args += ["--config", spec.config_file]
    sets = list(spec.overrides)
    if spec.stage == "pretrain" and spec.compression_rate is not None:
        # The architecture is chosen in stage 1 only; later stages inherit it from --init-from.
        sets.insert(0, f"model.compression_rate={spec.compression_rate}")
    for item in sets:
        args += ["--set", item]
    if spec.max_steps:
        args += ["--max-steps", str(spec.max_steps)]
    if not spec.resume:
        args.append("--no-resume")
    return args


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


# -- running -------------------------------------------------------------------------------------------------


@dataclass
class Reporter:
    """Where the launcher's progress goes: Pipes logs and custom messages, or stderr when standalone."""

    info: Callable[[str], None]
    error: Callable[[str], None]
    progress: Callable[[dict[str, Any]], None] = lambda record: None


@dataclass
class TrainerRun:
    """How the trainer process ended."""

    command: list[str]
    returncode: int
    wall_s: float
    stderr_tail: list[str] = field(default_factory=list)
    signal_received: int | None = None  # SIGINT/SIGTERM forwarded to the group, if any
    relayed_steps: int = 0


def run_trainer(
    spec: LaunchSpec,
    command: Sequence[str],
    reporter: Reporter,
    *,
    poll_s: float = 0.5,
    grace_s: float = 15.0,
    environ: dict[str, str] | None = None,
) -> TrainerRun:
    """Run `command` in its own process group, relay its metrics, forward SIGINT/SIGTERM; return how it ended.

    Must be called from the main thread (it installs signal handlers, and restores them before returning).
    """
    output = Path(spec.output_dir)
    tail = MetricsTail(output / METRICS_FILE)
    tail.read_new()  # an interrupted run's lines are history: relay only what this launch adds
    relay = ProgressRelay(spec.relay_every)
    total = spec.max_steps or None
    started = time.monotonic()
    received: list[int] = []
    process: subprocess.Popen | None = None

    def forward(signum: int, _frame: Any) -> None:
        received.append(signum)
        if process is not None:
            _signal_group(process, signum)

    # Our handlers go in before the trainer starts: a signal that comes while it starts is forwarded, not lost,
    # and the trainer starts with the default actions for both signals (a handled signal is reset to default
    # across exec, an ignored one would stay ignored: a launcher started in the background ignores SIGINT).
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    pump: threading.Thread | None = None
    relayed = 0
    log = None
    try:
        output.mkdir(parents=True, exist_ok=True)
        log = open(output / TRAIN_LOG_FILE, "ab")  # noqa: SIM115 - closed after the pump has drained the pipe
        process = subprocess.Popen(
            list(command), env=trainer_environment(environ, master_port=spec.master_port),
            # The trainer's stdout and stderr go to DIR/train.log and (echo) to our stderr: the standalone launcher's
            # stdout carries its JSON report alone.
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        if received:  # it came while the trainer was starting
            _signal_group(process, received[0])
        pump = threading.Thread(target=_pump_output, args=(process.stdout, stderr_tail, log, spec.echo),
                                daemon=True)
        pump.start()
        deadline = None
        while process.poll() is None:
            if received and deadline is None:
                _announce_stop(reporter, received[0], process.pid)
                deadline = time.monotonic() + grace_s
            if deadline is not None and time.monotonic() > deadline:
                reporter.error(f"the training job did not stop within {grace_s:.0f} s: killing it")
                _signal_group(process, signal.SIGKILL)
                deadline = float("inf")
            relayed += _relay(tail, relay, reporter, total)
            try:
                process.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                pass
        if received and deadline is None:  # the group stopped before the loop saw the signal
            _announce_stop(reporter, received[0], process.pid)
        relayed += _relay(tail, relay, reporter, total, final=True)
    finally:
        if process is not None:
            if process.poll() is None:  # the launcher itself failed: never leave ranks behind
                _signal_group(process, signal.SIGKILL)
                process.wait()
            # Ranks that outlived the launcher process (the group leader) are still in the group.
            _signal_group(process, signal.SIGKILL)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pump is not None:
            pump.join(timeout=5)
        if log is not None:
            log.close()
    return TrainerRun(command=list(command), returncode=process.returncode, wall_s=time.monotonic() - started,
                      stderr_tail=list(stderr_tail), signal_received=received[0] if received else None,
                      relayed_steps=relayed)


def _relay(tail: MetricsTail, relay: ProgressRelay, reporter: Reporter, total: int | None,
           *, final: bool = False) -> int:
    try:
        new = tail.read_new()
    except ValueError as error:  # a garbled line must not stop the training it reports on
        reporter.error(str(error))
        new = []
    records = relay.select(new) + (relay.finish() if final else [])
    for record in records:
        reporter.info(format_progress(record, total))
        reporter.progress(record)
    return len(records)


def _announce_stop(reporter: Reporter, signum: int, group: int) -> None:
    reporter.info(f"{signal.Signals(signum).name} received: stopping the training job (process group {group})")


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # start_new_session: the group id is the child's pid
    except ProcessLookupError:
        pass  # the whole group is gone already


def _pump_output(stream, tail: collections.deque, log, echo: bool) -> None:
    """Append the trainer's output (stdout and stderr) to `log` and, when `echo`, copy it to our stderr; keep its
    last lines (progress-bar redraws split on \\r). Never stops reading: a full pipe would stall the trainer."""
    sinks = [log] + ([sys.stderr.buffer] if echo and hasattr(sys.stderr, "buffer") else [])
    pending = b""
    for chunk in iter(lambda: stream.read1(65536), b""):
        for sink in list(sinks):
            try:
                sink.write(chunk)
                sink.flush()
            except (OSError, ValueError):  # a full disk or a closed stream: keep draining without it
                sinks.remove(sink)
        pending += chunk
        *lines, pending = pending.replace(b"\r", b"\n").split(b"\n")
        tail.extend(line.decode("utf-8", "replace").rstrip() for line in lines if line.strip())
    if pending.strip():
        tail.append(pending.decode("utf-8", "replace").rstrip())


# -- results ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchResult:
    """What a successful launch reports: materialization metadata (plain values) and the data version."""

    metadata: dict[str, Any]
    markdown: dict[str, str]  # metadata keys whose values are Markdown
    paths: dict[str, str]  # metadata keys whose values are paths
    data_version: str


def collect_result(spec: LaunchSpec, run: TrainerRun) -> LaunchResult:
    """Read the finished run folder; write the loss curve next to the checkpoint; return what to report.

    Raises:
        LaunchError: when the trainer failed, was stopped, or left no checkpoint or summary.
    """
    output = Path(spec.output_dir)
    if run.signal_received is not None:
        raise LaunchError(f"stopped by {signal.Signals(run.signal_received).name} (trainer exit {run.returncode}); "
                          f"a re-launch resumes from the last checkpoint in {output / 'resume'}")
    if run.returncode != 0:
        raise LaunchError(f"the trainer exited with {run.returncode}: {_failure_reason(run.stderr_tail)}")
    final, summary_path = output / FINAL_DIR, output / SUMMARY_FILE
    if not final.is_dir() or not summary_path.exists():
        raise LaunchError(f"the trainer exited with 0 but left no {FINAL_DIR}/ or {SUMMARY_FILE} in {output}")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    records = read_metrics(output / METRICS_FILE)
    losses = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), (int, float))]

    metadata: dict[str, Any] = {
        "stage": spec.stage,
        "steps": summary.get("steps", len(records)),
        "epochs": summary.get("epochs"),
        "samples": summary.get("samples"),
        "first_loss": summary.get("first_loss", losses[0][1] if losses else None),
        "final_loss": summary.get("final_loss", losses[-1][1] if losses else None),
        "best_loss": summary.get("best_loss", min(v for _, v in losses) if losses else None),
        "tokens_per_s": summary.get("tokens_per_s"),
        "train_wall_s": summary.get("wall_s"),
        "launch_wall_s": round(run.wall_s, 2),
        "world_size": summary.get("world_size"),
        "resumed_from_step": summary.get("resumed_from_step"),
        "checkpoint_bytes": directory_bytes(final),
        "command": shlex.join(run.command),
    }
    if spec.compression_rate is not None:
        metadata["compression_rate"] = spec.compression_rate
    for key in ("recall@1", "recall@3", "recall@5"):
        if records and isinstance(records[-1].get(key), (int, float)):
            metadata[f"final_{key}"] = records[-1][key]
    metadata = {k: v for k, v in metadata.items() if v is not None}
    markdown, paths = {}, {"checkpoint": str(final), "run_dir": str(output), "metrics": str(output / METRICS_FILE)}
    if losses:
        recall = [(r["step"], r["recall@1"]) for r in records if isinstance(r.get("recall@1"), (int, float))]
        png = loss_curve_png([s for s, _ in losses], [v for _, v in losses], loss_label=_loss_label(records),
                             recall=recall,
                             title=f"stage {spec.stage}: training loss" + (f" at compression rate {spec.compression_rate}"
                                                                           if spec.compression_rate else ""))
        write_bytes_atomic(output / LOSS_CURVE_FILE, png)
        markdown["loss_curve"] = png_markdown(png, f"{spec.stage} loss curve")
        paths["loss_curve_png"] = str(output / LOSS_CURVE_FILE)
    return LaunchResult(metadata=metadata, markdown=markdown, paths=paths, data_version=checkpoint_digest(final))


def _loss_label(records: Sequence[dict[str, Any]]) -> str:
    """What the trainer's `loss` adds up for this run: the answer's cross-entropy, plus the weighted MSE
    (stage 1) or the retrieval term (stage 3) when they were on."""
    numbers = [r for r in records if all(isinstance(r.get(k), (int, float)) for k in ("loss", "ce"))]
    if any(isinstance(r.get("retrieval_loss"), (int, float)) for r in records):
        return "loss = cross-entropy + retrieval term"
    if any(abs(r["loss"] - r["ce"]) > 1e-6 * max(1.0, abs(r["ce"])) for r in numbers):
        return "loss = cross-entropy + weighted MSE"  # the only other term (stage.mse_weight)
    return "loss (cross-entropy)"


def read_report(run_dir: str | Path) -> LaunchResult | None:
    """Return what the launcher reported for a finished run folder (None when it has no report)."""
    path = Path(run_dir) / REPORT_FILE
    if not path.exists():
        return None
    return LaunchResult(**json.loads(path.read_text(encoding="utf-8")))


def pipes_metadata(result: LaunchResult) -> dict[str, Any]:
    """The report as Pipes metadata: plain values, Markdown and paths typed as such."""
    metadata: dict[str, Any] = dict(result.metadata)
    metadata.update({k: {"raw_value": v, "type": "md"} for k, v in result.markdown.items()})
    metadata.update({k: {"raw_value": v, "type": "path"} for k, v in result.paths.items()})
    return metadata


def _failure_reason(stderr_tail: Sequence[str]) -> str:
    """The trainer's own one-line reason when it gave one (`clara_model.train: error: ...`), else its last lines."""
    stated = [line for line in stderr_tail if TRAINER_ERROR_PREFIX in line]
    if stated:
        return stated[-1][stated[-1].index(TRAINER_ERROR_PREFIX) + len(TRAINER_ERROR_PREFIX):].strip()
    return "\n".join(stderr_tail[-8:]) or "no output on stderr"


def launch(spec: LaunchSpec, reporter: Reporter, *, python: str = sys.executable, grace_s: float = 15.0) -> LaunchResult:
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
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--data", required=True, action="append")
    parser.add_argument("--output", required=True)
    parser.add_argument("--init-from")
    parser.add_argument("--config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--compression-rate", type=int)
    parser.add_argument("--max-steps", type=int, default=0)
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument("--num-gpus", type=int, default=0)
    parser.add_argument("--num-nodes", type=int, default=0)
    parser.add_argument("--hostfile")
    parser.add_argument("--cpu-processes", type=int, default=1)
    parser.add_argument("--master-port", type=int, default=0)
    parser.add_argument("--relay-every", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        spec = LaunchSpec(
            stage=args.stage, data=tuple(args.data), output_dir=args.output, init_from=args.init_from,
            config_file=args.config, overrides=tuple(args.overrides), compression_rate=args.compression_rate,
            max_steps=args.max_steps, resume=not args.no_resume, num_gpus=args.num_gpus, num_nodes=args.num_nodes,
            hostfile=args.hostfile, cpu_processes=args.cpu_processes, master_port=args.master_port,
            relay_every=args.relay_every,
        )
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


if __name__ == "__main__":
    sys.exit(main())
