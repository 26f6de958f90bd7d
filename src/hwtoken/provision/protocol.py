"""The small interfaces the runner programs keys through.

* a :class:`DeviceSource` yields keys as they arrive (real keys plugged in one after
  another, or a pool of virtual keys) and finds a recorded key again for ``resume``;
* a :class:`Programmer` opens a :class:`KeyConnection` to one key; the connection writes
  the secret (``program``) and asks the key itself for a response (``calculate``), which
  :func:`hwtoken.provision.verify.check` compares with the value computed from the secret.

Implementations: :mod:`hwtoken.provision.programmers` (python-yubico for the OTP slots,
yubikit for OATH, and the interim pure-applet path for virtual keys).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from hwtoken.errors import CheckFailed
from hwtoken.provision.model import Record, Spec


@dataclass(frozen=True)
class Device:
    """A key that is present: its serial and how to reach it (``emu:NAME`` or ``usb:SERIAL``)."""

    serial: int
    spec: str

    @property
    def virtual(self) -> bool:
        return self.spec.startswith("emu:")


class NotProgrammed(CheckFailed):
    """The key gives no response for this slot/credential (empty, or another mode)."""


class CannotCheck(CheckFailed):
    """The key may well hold the secret, but cannot be asked now (a real key's HOTP slot
    with nobody to touch it): the record stays pending with this reason, and the key is
    not reprogrammed."""


class KeyConnection(Protocol):
    """An open connection to one key, for one programming mode."""

    def program(self, spec: Spec, secret: bytes) -> None:
        """Write ``secret`` into the slot/credential that ``spec`` names (overwriting it)."""

    def calculate(self, spec: Spec, challenge: bytes | int | None) -> bytes | str:
        """The key's own answer: chalresp -> HMAC response bytes for ``challenge``;
        oath-totp -> the code at unix time ``challenge``; hotp/oath-hotp -> the next code.
        Raises :class:`NotProgrammed` if the key has nothing there, :class:`CannotCheck`
        if it cannot be asked now."""


class Programmer(Protocol):
    """Opens connections to keys for the modes it supports."""

    name: str

    def connect(self, device: Device) -> contextlib.AbstractContextManager[KeyConnection]:
        """Open ``device`` (raises :class:`hwtoken.errors.DeviceError` if it is gone)."""


class DeviceSource(Protocol):
    """Where keys come from."""

    def arrivals(self) -> Iterator[Device]:
        """Keys as they become available, each once; ends when the source is exhausted."""

    def present(self, record: Record) -> Device | None:
        """The recorded key, if it is present now."""
