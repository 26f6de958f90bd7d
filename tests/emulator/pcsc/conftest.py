"""Fixtures for the PC/SC tests: a private pcscd (vpcd driver) and a key linked to it."""

from __future__ import annotations

import pytest

from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.pcscd import READER_0, shared_pcscd, wait_for_card
from hwtoken.emulator.transports.vpcd import VpcdLink


@pytest.fixture(scope="session")
def pcscd():
    """A pcscd of our own on loopback ports, started once and stopped at exit.

    One per test process: libpcsclite reads PCSCLITE_CSOCK_NAME only once.
    """
    daemon = shared_pcscd()
    yield daemon


@pytest.fixture
def vkey(tmp_path):
    key = VirtualKey.create(tmp_path / "card.key", serial=7654321)
    yield key
    key.close()


@pytest.fixture
def linked(pcscd, vkey):
    """``vkey`` inserted as a card in reader "Virtual PCD 00 00" of ``pcscd``."""
    link = VpcdLink(vkey, port=pcscd.port).start()
    assert link.wait_connected(10), pcscd.log_tail()
    wait_for_card(READER_0, timeout=10)
    yield link
    link.stop()
