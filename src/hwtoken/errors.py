"""Exceptions that carry an exit code and a one-line message for the CLI.

Library code raises these; the CLI prints ``error: <message>`` and exits with
``exit_code`` (see :mod:`hwtoken.cli.contract`). Messages never contain secrets.
``details`` (optional) is merged into the JSON error object a ``--json`` run prints.
"""

from __future__ import annotations

from typing import Any


class HwtokenError(Exception):
    """Base class; exit code 2 (bad usage or input) unless a subclass says otherwise."""

    exit_code = 2

    def __init__(self, *args: object, details: dict[str, Any] | None = None) -> None:
        super().__init__(*args)
        self.details = details


class InvalidInput(HwtokenError, ValueError):
    """The user gave input we cannot use (bad base32, malformed URI, missing file...)."""

    exit_code = 2


class CheckFailed(HwtokenError):
    """A check ran and failed: wrong code, bad signature, mismatch. Exit code 1."""

    exit_code = 1


class DeviceError(HwtokenError):
    """A device could not be found, opened or used. Exit code 2 (fix the setup and retry)."""

    exit_code = 2


class DeviceBusy(DeviceError):
    """Another process holds the device (for a virtual key: its state-file lock)."""


class SetupError(DeviceError):
    """This machine's setup is broken (pcscd, libusb, permissions), not one key.

    Retrying with another key cannot help, so a batch run stops at the first one.
    """
