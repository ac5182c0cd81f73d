"""Checks on tensor values that never make the host wait for an accelerator.

Reading a CUDA tensor's value on the host (`bool(t)`, `.item()`, `.tolist()`) waits for every kernel queued before
it. A check like that in every micro-step stalls the queue several times per step, so on an accelerator the checks
here queue an asynchronous device-side assert instead; on the CPU, where nothing is queued, they read the value and
raise a ValueError with the full message.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def check(condition: torch.Tensor, message: str | Callable[[], str]) -> None:
    """Raise ValueError(message) unless every element of the bool tensor `condition` is True.

    `message` may be a function, called only on failure on the CPU (it may read tensors there). On an accelerator
    a failure surfaces as a RuntimeError at the next synchronisation, with `message` when it is a string.

    Raises:
        ValueError: on the CPU, when an element is False.
    """
    if condition.device.type == "cpu":
        if not bool(condition.all()):
            raise ValueError(message() if callable(message) else message)
    else:
        torch._assert_async(condition.all(), message if isinstance(message, str) else "a CLaRa tensor check failed")
