"""Fixtures for the USB/IP transport tests: a fresh key served on a free loopback port."""

from __future__ import annotations

import pytest

from hwtoken.emulator import VirtualKey
from hwtoken.emulator.serve import served


@pytest.fixture
def usbip_key(tmp_path):
    key = VirtualKey.create(tmp_path / "usbip.key", serial=12345678)
    try:
        yield key
    finally:
        key.close()


@pytest.fixture
def usbip_server(usbip_key):
    with served(usbip_key) as srv:
        yield srv
