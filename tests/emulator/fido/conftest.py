"""Shared fixtures for the FIDO emulator tests: a fresh virtual key and its CTAP HID device."""

from __future__ import annotations

import pytest
from fido2.ctap2 import Ctap2

from hwtoken.emulator import VirtualKey, fido_device


@pytest.fixture
def key(tmp_path):
    k = VirtualKey.create(tmp_path / "k.key")
    yield k
    k.close()


@pytest.fixture
def device(key):
    return fido_device(key)


@pytest.fixture
def ctap(device):
    return Ctap2(device)
