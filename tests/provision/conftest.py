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


@pytest.fixture
def cheap_kdf(monkeypatch):
    """A new inventory derives its key with Argon2id at 1 MiB and 1 pass instead of 64 MiB
    and 3: for the files that are not about the passphrase's KDF (test_provision_sealing.py
    is), where it took more than half of the time. The inventory records the parameters it
    was made with, so the CLI opens it the same way in a child process."""
    from hwtoken.provision import sealing

    monkeypatch.setattr(sealing, "ARGON2_MEMORY_KIB", 1024)
    monkeypatch.setattr(sealing, "ARGON2_ITERATIONS", 1)
