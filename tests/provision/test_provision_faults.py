"""The fault injector the crash tests configure through $HWTOKEN_FAULT: it kills its own
process once, at the configured step of the configured key, and never when unset. Its kill
is replaced here by a list of the signals it would have sent."""

from __future__ import annotations

import os
import signal

import pytest

from hwtoken.provision import faults
from hwtoken.provision.faults import STEPS, FaultInjector


@pytest.fixture
def kills(monkeypatch) -> list[tuple[int, int]]:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(faults.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    return sent


@pytest.mark.parametrize("spec", [None, ""])
def test_an_unset_injector_never_fires_whatever_step_it_is_told(kills, spec):
    injector = FaultInjector(spec)
    for step in (*STEPS, None, ""):
        injector(step, None)
    assert kills == []


def test_it_fires_once_on_the_nth_time_its_step_completes(kills):
    injector = FaultInjector("after:program@2")
    for step in ("record", "program", "verify", "done", "record", "program"):
        injector(step, None)
    assert kills == [(os.getpid(), signal.SIGKILL)]
    for step in ("verify", "done", "record", "program"):
        injector(step, None)
    assert len(kills) == 1


def test_the_first_key_by_default(kills):
    FaultInjector("after:record")("record", None)
    assert kills == [(os.getpid(), signal.SIGKILL)]


def test_it_reads_its_spec_from_the_environment(monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, "after:verify@3")
    injector = FaultInjector.from_env()
    assert (injector.step, injector.nth) == ("verify", 3)
    monkeypatch.delenv(faults.FAULT_ENV)
    assert FaultInjector.from_env().step is None
