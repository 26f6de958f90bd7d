"""Shared test set-up: every test gets its own hwtoken state directory."""

from __future__ import annotations

import pytest

from hwtoken import paths


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
