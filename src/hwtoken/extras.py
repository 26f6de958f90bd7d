"""Which optional part of hwtoken needs which Python package: the extras of pyproject.toml.

One table serves the CLI (a missing package is exit 2 with one line naming ``pip install
'hwtoken[EXTRA]'``, never "internal error"), the pytest plugin (the same line as the
test's error) and ``hwtoken doctor`` (which extras are missing, and for what). This module
imports nothing heavy: the error path and ``doctor`` use it on a bare install.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hwtoken.errors import HwtokenError


@dataclass(frozen=True)
class Requirement:
    """One optional Python package: its import name, its PyPI name, the extra that brings
    it and what needs it."""

    module: str
    package: str
    extra: str
    needed_for: str


#: Every optional package, by extra (pyproject.toml's [project.optional-dependencies]).
REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("fido2", "fido2", "fido",
                "FIDO2 commands, the virtual key and the pytest plugin's fixtures"),
    Requirement("usbip", "usbip", "fido",
                "the virtual key as a USB device (emulate run/serve, plugged_key)"),
    Requirement("selenium", "selenium", "browser", "Chromium in the hwtoken_browser fixture"),
    Requirement("yubico", "python-yubico", "yubikey", "hwtoken yubikey (OTP slots)"),
    Requirement("usb", "pyusb", "yubikey", "hwtoken yubikey (libusb through pyusb)"),
    Requirement("yubikit", "yubikey-manager", "pcsc", "hwtoken yubikey oath (yubikit)"),
    Requirement("ykman", "yubikey-manager", "pcsc", "finding keys over PC/SC (ykman)"),
    Requirement("smartcard", "pyscard", "pcsc", "PC/SC (pyscard)"),
    Requirement("pskc", "python-pskc", "provision", "hwtoken provision export --format pskc"),
    Requirement("psycopg", "psycopg", "provision", "PostgreSQL inventories"),
    Requirement("mpremote", "mpremote", "fob", "hwtoken fob (mpremote)"),
    Requirement("serial", "pyserial", "fob", "hwtoken fob (the board's serial port)"),
)

#: The extras in the order they are listed.
EXTRAS: tuple[str, ...] = tuple(dict.fromkeys(r.extra for r in REQUIREMENTS))


def for_module(name: str | None) -> Requirement | None:
    """The requirement whose package provides module ``name`` (a dotted name is fine)."""
    top = (name or "").split(".", 1)[0]
    return next((r for r in REQUIREMENTS if r.module == top), None)


def install_command(extras: Iterable[str]) -> str:
    """``pip install 'hwtoken[a,b]'`` for ``extras`` (in the order of :data:`EXTRAS`)."""
    wanted = set(extras)
    return f"pip install 'hwtoken[{','.join(e for e in EXTRAS if e in wanted)}]'"


class MissingDependency(HwtokenError):
    """An optional Python package is not installed (exit 2: install the extra and retry)."""

    exit_code = 2

    def __init__(self, requirement: Requirement) -> None:
        super().__init__(message(requirement))
        self.requirement = requirement


def message(requirement: Requirement) -> str:
    """The one line that says what is missing, for what, and how to install it."""
    r = requirement
    return (f"the Python package {r.package} is not installed (needed for {r.needed_for}): "
            f"{install_command([r.extra])}")


def missing_dependency(exc: BaseException) -> MissingDependency | None:
    """The :class:`MissingDependency` behind ``exc`` when it is an import of an optional
    package that is not installed (None for anything else, such as a missing module of
    hwtoken itself, which is a bug)."""
    if isinstance(exc, MissingDependency):
        return exc
    if not isinstance(exc, ModuleNotFoundError):
        return None
    requirement = for_module(exc.name)
    return MissingDependency(requirement) if requirement is not None else None


def missing(find_spec: Callable[[str], object] | None = None) -> list[Requirement]:
    """The optional packages that are not installed."""
    if find_spec is None:
        import importlib.util

        find_spec = importlib.util.find_spec
    return [r for r in REQUIREMENTS if find_spec(r.module) is None]


__all__ = ["REQUIREMENTS", "EXTRAS", "Requirement", "MissingDependency", "for_module",
           "install_command", "message", "missing_dependency", "missing"]
