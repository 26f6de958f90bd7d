"""Fixtures for the provisioning tests (helpers live in provision_helpers.py)."""

from __future__ import annotations

import pytest
from provision_helpers import PASSPHRASE, PgServer


@pytest.fixture(scope="session")
def pg_server():
    server = PgServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def inventory_url(request, tmp_path):
    """A fresh, empty inventory of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inventory.db'}"
    return request.getfixturevalue("pg_server").new_database()


@pytest.fixture(autouse=True)
def _passphrase(monkeypatch):
    monkeypatch.setenv("HWTOKEN_INVENTORY_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("HWTOKEN_FAULT", raising=False)
    monkeypatch.delenv("HWTOKEN_PROVISION_PATH", raising=False)


