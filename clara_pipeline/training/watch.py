"""Training you can watch from a terminal: a line when a stage's job starts and a progress line as steps finish.

`clara run` executes the training job in process with Dagster's step logs off the terminal; the launcher's relayed
metrics go to those logs. `TrainingWatcher` instead reads what every run leaves in its folder as it happens,
from a thread:

- `launch.json`, written by the launcher just before it starts the trainer: the stage, max steps, processes,
  and notices such as a DeepSpeed op build;
- `train_config.json`, written by the trainer after setup, before its first step: the step a resumed run
  continues from, and the step count when max_steps is 0 (epochs);
- `metrics.jsonl`, one line per optimizer step, flushed as the step ends.

It prints the first step, every `relay_every`-th (the launch's setting) and the last, with the loss, tokens/s
and an ETA. Pure stdlib, no Dagster: it only reads files.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from clara_model.contract import METRICS_FILE, TRAIN_CONFIG_FILE, clock

from .metrics import MetricsTail
from .runs import LAUNCH_FILE, RUNS_DIR, TRAIN_LOG_FILE, stage_dir


@dataclass
class _Watched:
    """One launch being followed."""

    stage: str
    run_dir: Path
    launched_ns: int  # launch.json's mtime: a train_config.json older than this is an earlier launch's
    total: int | None
    every: int
    tail: MetricsTail
    skip_through: int | None = None  # the step this launch resumes from, once its train_config.json is there
    last_seen: dict[str, Any] | None = None
    last_printed: int | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)


class TrainingWatcher:
    """While entered, prints to `out` what the training runs of `stages` at `compression_rate` are doing.

    Launches that were already in the run folders when it started are history and are not shown. Use as a
    context manager around the job (`with TrainingWatcher(root, 32): job.execute_in_process(...)`); `poll()`
    does one pass, for tests.
    """

    def __init__(self, artifacts_root: str | Path, compression_rate: int | str,
                 stages: Iterable[str] = ("pretrain", "instruct", "e2e"), *, out: TextIO | None = None,
                 poll_s: float = 0.5) -> None:
        self.rate = int(compression_rate)
        self.dirs = {stage: stage_dir(artifacts_root, self.rate, stage) for stage in stages}
        self.out = out if out is not None else sys.stdout
        self.poll_s = poll_s
        self._seen = {path: mtime for path, mtime in self._launch_files()}
        self._watched: dict[str, _Watched] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors: set[str] = set()

    def __enter__(self) -> TrainingWatcher:
        self._thread = threading.Thread(target=self._run, name="clara-training-watcher", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.poll(final=True)  # what the last steps wrote after the thread's last pass

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
            except (OSError, ValueError) as error:  # a garbled file: say so once, keep watching
                if str(error) not in self._errors:
                    self._errors.add(str(error))
                    self._say(f"  (progress unavailable: {error})")

    def poll(self, *, final: bool = False) -> None:
        """Announce new launches and print the progress lines that are due; at `final`, also each run's last step."""
        for path, mtime in self._launch_files():
            if self._seen.get(path) != mtime:
                self._seen[path] = mtime
                self._start(path)
        for watched in self._watched.values():
            self._progress(watched, final=final)

    def _launch_files(self) -> list[tuple[Path, int]]:
        found = []
        for directory in self.dirs.values():
            for path in sorted((directory / RUNS_DIR).glob(f"*/{LAUNCH_FILE}")):
                try:
                    found.append((path, path.stat().st_mtime_ns))
                except FileNotFoundError:  # a superseded run removed meanwhile
                    continue
        return found

    def _start(self, launch_file: Path) -> None:
        launch = json.loads(launch_file.read_text(encoding="utf-8"))
        spec = launch["spec"]
        run_dir = launch_file.parent
        watched = _Watched(stage=spec["stage"], run_dir=run_dir, launched_ns=launch_file.stat().st_mtime_ns,
                           total=spec.get("max_steps") or None, every=max(1, int(spec.get("relay_every") or 10)),
                           tail=MetricsTail(run_dir / METRICS_FILE))
        self._watched[watched.stage] = watched
        steps = f"{watched.total} steps" if watched.total else "the stage config's epochs"
        gpus, nodes, processes = spec.get("num_gpus", 0), spec.get("num_nodes", 0), spec.get("cpu_processes", 1)
        where = (f"{gpus} GPU{'s' if gpus > 1 else ''} per node" + (f" x {nodes} nodes" if nodes > 1 else "")
                 if gpus else f"CPU, {processes} process{'es' if processes > 1 else ''}")
        self._say(f"training {watched.stage} at rate {self.rate}: {steps} on {where} "
                  f"(log: {run_dir / TRAIN_LOG_FILE})")
        for notice in launch.get("notices", []):
            self._say(f"  {notice}")

    def _progress(self, watched: _Watched, *, final: bool) -> None:
        if watched.skip_through is None:
            config = _read_config(watched.run_dir, watched.launched_ns)
            if config is None:
                return  # the trainer is still setting up (and may yet cut an interrupted run's metrics back)
            watched.skip_through = config.get("resumed_from_step") or 0
            total = config.get("derived", {}).get("total_steps")
            watched.total = watched.total or (total if isinstance(total, int) and total > 0 else None)
            if watched.skip_through:
                self._say(f"  {watched.stage:<8} resuming from step {watched.skip_through}")
        for record in watched.tail.read_new():
            step = record.get("step")
            if not isinstance(step, int) or step <= watched.skip_through:
                continue
            watched.last_seen = record
            if watched.last_printed is None or step % watched.every == 0 or step == watched.total:
                self._print_step(watched, record)
        if final and watched.last_seen is not None and watched.last_seen["step"] != watched.last_printed:
            self._print_step(watched, watched.last_seen)

    def _print_step(self, watched: _Watched, record: dict[str, Any]) -> None:
        watched.last_printed = record["step"]
        self._say(f"  {watched.stage:<8} {format_step_line(record, watched.total)}")

    def _say(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def format_step_line(record: dict[str, Any], total: int | None) -> str:
    """Return `step 10/30  loss 3.2145  1,234 tok/s  elapsed 0:12  ETA 0:24` for one metrics record."""
    step = record["step"]
    parts = [f"step {step}/{total}" if total else f"step {step}"]
    if isinstance(record.get("loss"), (int, float)):
        parts.append(f"loss {record['loss']:.4f}")
    if isinstance(record.get("recall@1"), (int, float)):
        parts.append(f"recall@1 {record['recall@1']:.2f}")
    if isinstance(record.get("tokens_per_s"), (int, float)):
        parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
    elapsed = record.get("elapsed_s")
    if isinstance(elapsed, (int, float)):
        parts.append(f"elapsed {clock(elapsed)}")
        if total and step < total:
            # the run's mean step time so far (a resumed run's elapsed_s includes the steps before the resume)
            parts.append(f"ETA {clock(elapsed / step * (total - step))}")
    return "  ".join(parts)


def _read_config(run_dir: Path, newer_than_ns: int) -> dict[str, Any] | None:
    """The trainer's train_config.json when this launch wrote it (None before that: absent or an earlier one's)."""
    path = run_dir / TRAIN_CONFIG_FILE
    try:
        if path.stat().st_mtime_ns < newer_than_ns:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
