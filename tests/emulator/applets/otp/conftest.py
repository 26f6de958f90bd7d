"""Fixtures for the OTP applet tests: a fresh virtual key and its OTP HID engine."""

from __future__ import annotations

import pytest
from yubikit.core.otp import OtpConnection

from hwtoken.emulator import VirtualKey
from hwtoken.emulator.applets.otp.hid import OtpHidEngine


class EngineConnection(OtpConnection):
    """yubikit's OTP transport interface carried straight into the HID engine."""

    def __init__(self, engine: OtpHidEngine) -> None:
        self.engine = engine

    def receive(self) -> bytes:
        return self.engine.get_feature()

    def send(self, data: bytes) -> None:
        self.engine.set_feature(data)

    def close(self) -> None:
        pass


@pytest.fixture
def vkey(tmp_path):
    key = VirtualKey.create(tmp_path / "otp.key", serial=12345678)
    yield key
    key.close()


@pytest.fixture
def engine(vkey):
    return OtpHidEngine(vkey)


@pytest.fixture
def connection(engine):
    return EngineConnection(engine)


@pytest.fixture
def connect():
    """Factory: a yubikit OtpConnection into an engine."""
    return EngineConnection
