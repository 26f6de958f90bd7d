"""Fixtures for the PIV tests through a private pcscd: a key inserted as a card."""

from __future__ import annotations

import pytest
from piv_support import Programs

from hwtoken import paths
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.pcscd import READER_0, shared_pcscd, wait_for_card, wait_for_removal
from hwtoken.emulator.transports.vpcd import VpcdLink


@pytest.fixture(scope="session")
def pcscd():
    """This test process's private pcscd (libpcsclite reads its socket name once)."""
    return shared_pcscd()


@pytest.fixture
def piv_key():
    """A virtual key named "pivcard" in the test's state directory (so `hwtoken emulate`
    sees it too)."""
    key = VirtualKey.create(paths.virtual_key_path("pivcard"), serial=20240521)
    yield key
    key.close()


@pytest.fixture
def card(pcscd, piv_key):
    """``piv_key`` inserted in reader "Virtual PCD 00 00" (and removed after the test,
    once pcscd noticed: the next test's card then is a new insertion)."""
    link = VpcdLink(piv_key, port=pcscd.port).start()
    assert link.wait_connected(10), pcscd.log_tail()
    wait_for_card(READER_0, timeout=10)
    assert link.powered, "pcscd answered for another card"
    yield link
    link.stop()
    wait_for_removal(READER_0, timeout=10)


@pytest.fixture
def programs(pcscd, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return Programs(pcscd, home)
