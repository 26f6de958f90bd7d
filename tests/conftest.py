"""Shared test set-up: every test gets its own hwtoken state directory, and every hypothesis
test runs under one profile.

The ``hwtoken`` profile sets hypothesis' deadline explicitly to None: a per-example time
limit fails at random on a loaded two-core machine, and the project asserts nothing about
time in tests. It also bounds ``max_examples``; a test may ask for fewer or more examples
(a bounded number) but never sets a deadline of its own (tests/test_hypothesis_profile.py
checks that).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from hwtoken import paths

PROFILE = "hwtoken"
settings.register_profile(PROFILE, deadline=None, max_examples=100,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(PROFILE)


@pytest.fixture(autouse=True)
def _isolated_state_dir(tmp_path_factory, monkeypatch):
    d = tmp_path_factory.mktemp("hwtoken-state")
    monkeypatch.setenv("HWTOKEN_STATE_DIR", str(d))
    paths.set_state_dir(None)
    yield d
    paths.set_state_dir(None)


@pytest.fixture
def as_terminal(monkeypatch):
    """Commands that confirm see a person at a terminal (click's runner has no tty)."""
    from hwtoken.cli import common

    monkeypatch.setattr(common, "is_interactive", lambda: True)
