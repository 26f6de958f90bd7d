"""Shared fixtures for the FIDO emulator tests, on top of the hwtoken pytest plugin's own
``virtual_key`` and ``fido_device`` (src/hwtoken/testing.py)."""

from __future__ import annotations

import pytest
from fido2.ctap2 import Ctap2


@pytest.fixture
def key(virtual_key):
    return virtual_key


@pytest.fixture
def device(fido_device):
    return fido_device


@pytest.fixture
def ctap(device):
    return Ctap2(device)
