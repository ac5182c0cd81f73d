"""A child process that dies with its parent: Linux's PR_SET_PDEATHSIG, for children in their own session.

`clara dev` runs `dagster dev`, and the training launcher runs the trainer, each in its own process group so that
a signal reaches all of it. A group of its own also escapes a SIGKILL of the parent's group, which no `finally`
can forward: without this, a killed `clara run` left its trainer running, writing into the run folder the next
run resumes from. Standard library only (the launcher imports it).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """Return a `preexec_fn` that has the child receive `sig` when its parent dies (Linux), or None elsewhere.

    libc is loaded here, in the parent: between fork and exec the child calls prctl and nothing else (no import,
    no dlopen, whose locks another thread of the parent may have held at the fork).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(_PR_SET_PDEATHSIG, sig)
