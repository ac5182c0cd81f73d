"""Checks that never make the host wait for an accelerator (clara_model/asserts.py), on the CPU."""

import pytest
import torch

from clara_model.asserts import check


def test_a_failed_check_on_the_cpu_raises_its_message():
    check(torch.tensor([True, True]), "unused")
    with pytest.raises(ValueError, match="row 1 is bad"):
        check(torch.tensor([True, False]), "row 1 is bad")


def test_a_message_function_is_called_only_on_failure():
    calls = []

    def message():
        calls.append(1)
        return "built on failure"

    check(torch.tensor(True), message)
    assert calls == []
    with pytest.raises(ValueError, match="built on failure"):
        check(torch.tensor(False), message)
