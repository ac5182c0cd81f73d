"""Running `dagster dev` under `clara dev` so that Ctrl-C or SIGTERM stops all of it within seconds.

`dagster dev` starts a webserver, a daemon, code servers and run workers. Started in the background (or
by a process manager) it ignores SIGINT, and a SIGTERM to it alone leaves its children behind: before this
module `clara dev` exec'ed it and kept processes for more than 40 s after either signal. Here it runs in its
own session (so its whole tree is one process group, and a terminal's Ctrl-C reaches it only through us);
a SIGINT or SIGTERM to `clara dev` is forwarded to the group as SIGINT (dagster dev's graceful shutdown), and
whatever is left after `GRACE_S` is killed with SIGKILL. On Linux the group leader also gets SIGINT when
`clara dev` itself dies (even by SIGKILL), so it does not outlive us.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from .lifetime import die_with_parent

GRACE_S = 5.0  # for dagster dev's own shutdown (its daemon takes about 4 s); then SIGKILL
KILL_WAIT_S = 2.0  # after SIGKILL, for the kernel to tear the group down; GRACE_S + KILL_WAIT_S < 10 s


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs. Zombies do not count: killed orphans wait for init to reap
    them, which some containers' init does late or never."""
    import psutil

    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError):
            continue
    return False


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_process_group(command: Sequence[str], env: Mapping[str, str], *, grace_s: float = GRACE_S) -> int:
    """Runs `command` in its own session until it exits or we are told to stop; returns its exit status (0
    after a stop we were asked for). Nothing of its process group is left running when this returns."""
    stop_requested: list[float] = []

    def request_stop(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
        if not stop_requested:
            stop_requested.append(time.monotonic())
            _signal_group(proc.pid, signal.SIGINT)

    proc = subprocess.Popen(list(command), env=dict(env), start_new_session=True,
                            preexec_fn=die_with_parent(signal.SIGINT))
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while proc.poll() is None:
            if stop_requested and time.monotonic() - stop_requested[0] > grace_s:
                _signal_group(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        # The leader is gone; its children (code servers, run workers) may not be.
        deadline = time.monotonic() + (max(0.0, grace_s - (time.monotonic() - stop_requested[0]))
                                       if stop_requested else 1.0)
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _group_alive(proc.pid):
            _signal_group(proc.pid, signal.SIGKILL)
            deadline = time.monotonic() + KILL_WAIT_S
            while _group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        if proc.poll() is None:  # an exception in the loop: do not leave the tree behind
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stop_requested else proc.returncode
