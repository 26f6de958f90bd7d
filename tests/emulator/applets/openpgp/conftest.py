"""Fixtures for the OpenPGP tests through a private pcscd: a key inserted as a card, and
GnuPG or ykman in front of it."""

from __future__ import annotations

import pytest
from openpgp_support import SERIAL, GnuPG, Ykman

from hwtoken import paths
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.pcscd import READER_0, shared_pcscd, wait_for_card, wait_for_removal
from hwtoken.emulator.transports.vpcd import VpcdLink


@pytest.fixture(scope="session")
def pcscd():
    """This test process's private pcscd (libpcsclite reads its socket name once)."""
    return shared_pcscd()


@pytest.fixture
def pgp_key():
    """A virtual key named "pgpcard" in the test's state directory (so `hwtoken emulate`
    sees it too)."""
    key = VirtualKey.create(paths.virtual_key_path("pgpcard"), serial=SERIAL)
    yield key
    key.close()


@pytest.fixture
def card(pcscd, pgp_key):
    """``pgp_key`` inserted in reader "Virtual PCD 00 00" (removed after the test, once
    pcscd noticed)."""
    link = VpcdLink(pgp_key, port=pcscd.port).start()
    assert link.wait_connected(10), pcscd.log_tail()
    wait_for_card(READER_0, timeout=10)
    assert link.powered, "pcscd answered for another card"
    yield link
    link.stop()
    wait_for_removal(READER_0, timeout=10)


@pytest.fixture
def gnupg(pcscd, card):
    """gpg with a GNUPGHOME of its own for the card in "Virtual PCD 00 00"; its agent and
    scdaemon are killed by PID afterwards (before the card leaves the reader)."""
    gpg = GnuPG(pcscd.client_env(), READER_0)
    yield gpg
    gpg.close()


@pytest.fixture
def ykman(pcscd, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return Ykman(pcscd.client_env(), READER_0, home)
