"""Process supervision: run the trainer command in its own process group, relay its metrics as they are written,
keep its output (DIR/train.log and the last lines for the error), and forward SIGINT/SIGTERM to the whole group.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clara_model.contract import METRICS_FILE

from ...lifetime import die_with_parent
from ..metrics import MetricsTail, ProgressRelay, format_progress
from ..runs import TRAIN_LOG_FILE
from .spec import LaunchSpec, trainer_environment

STDERR_TAIL_LINES = 20


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
            # Its own group escapes a SIGKILL of ours, which no `finally` here can forward: SIGTERM it when we die.
            preexec_fn=die_with_parent(signal.SIGTERM),
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

