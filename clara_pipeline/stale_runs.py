"""Runs whose process is gone: found and marked as failed when `clara run` or `clara dev` starts.

A `clara run` killed with SIGKILL (or a machine that lost power) leaves its in-process runs STARTED forever:
nothing is left to report their end, and Dagster's run monitoring cannot help, because an in-process run
(`execute_in_process`) has no run worker for the monitor to check, and the default run launcher cannot check
a worker's health either. Such runs would hold a slot of the run queue (`max_concurrent_runs`) and show as
running in the UI. So every run that `clara run` starts carries its owner in its tags (`owner_tags`: pid, host
and the process's start time, which tells a reused pid from the original), and at start-up
`fail_runs_of_dead_processes` marks the in-progress runs of owners that are gone as failed.

Runs without those tags (launched by the daemon under `clara dev`, or in process by other tools) are judged
by the pid in the run's own engine events, only on an instance whose storage is SQLite (so on this machine):
a pid that is not running, or that belongs to a process started after the run, is gone. A run that has not
reported a pid yet is left to run monitoring's start timeout (dagster.yaml).
"""

from __future__ import annotations

import logging
import os
import socket

import dagster as dg

logger = logging.getLogger(__name__)

PID_TAG = "clara/pid"
HOST_TAG = "clara/host"
PROCESS_STARTED_TAG = "clara/process_started"  # the owner's start time (s since the epoch, 2 decimals)

# A run in these states may still hold a queue slot or show as running.
IN_PROGRESS = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING,
               dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
_CLOCK_SLACK_S = 1.0  # process start times are read at 10 ms (clock tick) resolution


def _process_started(pid: int) -> float | None:
    """When process `pid` started (s since the epoch), or None when no such process runs."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def owner_tags() -> dict[str, str]:
    """Tags naming this process as the owner of a run it executes in process."""
    started = _process_started(os.getpid())
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), PROCESS_STARTED_TAG: f"{started:.2f}"}


def _alive(pid: int, started_before: float) -> bool:
    """Process `pid` runs and started no later than `started_before` (so it is not a newer process that reused it)."""
    started = _process_started(pid)
    return started is not None and started <= started_before + _CLOCK_SLACK_S


def _worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid in the run's first engine event that reports one (run worker, or the in-process executor)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=20).records
    for record in records:
        data = record.event_log_entry.dagster_event.event_specific_data
        pid = getattr(data, "metadata", {}).get("pid") if data is not None else None
        if pid is not None:
            try:
                return int(pid.value)
            except (TypeError, ValueError):
                return None
    return None


def _local_instance(instance: dg.DagsterInstance) -> bool:
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

    storage = instance.run_storage
    storage = getattr(storage, "_storage", storage)  # LegacyRunStorage wraps the real one
    return isinstance(storage, SqliteRunStorage)


def dead_owner(instance: dg.DagsterInstance, record) -> str | None:
    """Why the run of `record` has no live process (in the user's words), or None when it may still be running."""
    run = record.dagster_run
    tags = run.tags
    if PID_TAG in tags:
        if tags.get(HOST_TAG) != socket.gethostname():
            return None  # another machine's process: only that machine can tell
        pid, started = int(tags[PID_TAG]), float(tags.get(PROCESS_STARTED_TAG) or 0.0)
        if _alive(pid, started):
            return None
        return f"the process that ran it ({tags.get('clara/launched_by', 'pid')} {pid}) is gone (killed, or the machine restarted)"
    if not _local_instance(instance):
        return None
    pid = _worker_pid(instance, run.run_id)
    if pid is None:
        return None  # not started yet, or no pid reported: run monitoring's start timeout applies
    begun = record.start_time or record.create_timestamp.timestamp()
    if _alive(pid, begun):
        return None
    return f"its process (pid {pid}) is gone (killed, or the machine restarted)"


def fail_runs_of_dead_processes(instance: dg.DagsterInstance, *, by: str) -> list[str]:
    """Marks every in-progress run whose process is gone as failed; returns a line per run it marked.

    Args:
        by: who cleans up (`clara run`, `clara dev`), for the run's event log.
    """
    lines = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=IN_PROGRESS)):
        reason = dead_owner(instance, record)
        if reason is None:
            continue
        run = record.dagster_run
        partition = run.tags.get("dagster/partition")
        # Report on the run as stored now: it may have ended between the listing and here.
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.status not in IN_PROGRESS:
            continue
        instance.report_run_failed(current, f"Marked as failed by {by} at start-up: {reason}.")
        # A run killed inside a pool step (gpu: limit 1) still holds its slot: free it, or every later run waits
        # for that pool forever.
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        lines.append(f"run {run.run_id[:8]} of {run.job_name}{f'[{partition}]' if partition else ''} "
                     f"was left {run.status.value}: {reason}; marked as failed")
    return lines
