"""Exceptions that carry an exit code and a one-line message for the CLI.

Library code raises these; the CLI prints ``error: <message>`` and exits with
``exit_code``. Messages never contain secrets.
"""

from __future__ import annotations


class HwtokenError(Exception):
    """Base class; exit code 2 (bad usage or input) unless a subclass says otherwise."""

    exit_code = 2


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
