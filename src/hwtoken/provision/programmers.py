"""Programmers: how a key is written and asked for a response, per mode.

* :class:`YubicoOtpProgrammer` -- OTP slots (``hotp``, ``chalresp``) through python-yubico:
  on a real key over USB (libusb), on a virtual key over USB/IP loopback through the pyusb
  backend (``hwtoken.devices``), so the same client code runs for both.
* :class:`YubikitOathProgrammer` -- the OATH applet (``oath-totp``, ``oath-hotp``) through
  yubikit's ``OathSession`` over a PC/SC smart-card connection (pcscd; for a virtual key
  the vpcd link of ``hwtoken.yubikey.oath``).
* :class:`AppletProgrammer` -- the *interim* path for virtual keys only: the emulator's
  pure applet API (``key.otp.command``), used when ``HWTOKEN_PROVISION_PATH=applet`` or
  when the client path for a mode is not available in this installation.

An OATH-HOTP *slot* only types its code when a person touches it. For a virtual key the
check simulates the touch and reads the code from the key's USB keyboard endpoint (the
same USB/IP link python-yubico uses); a real key's HOTP slot cannot be checked without a
human: on a terminal the CLI asks the operator to touch it and reads the code it types
(:data:`touch_reader`); otherwise the record stays ``pending`` with that reason.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from hwtoken.errors import DeviceError, InvalidInput
from hwtoken.provision.model import HOTP_IMF, OATH_PERIOD, Mode, Spec
from hwtoken.provision.protocol import (
    CannotCheck,
    Device,
    KeyConnection,
    NotProgrammed,
    Programmer,
)

PATH_ENV = "HWTOKEN_PROVISION_PATH"

#: For real keys' HOTP slots: asks the operator to touch the key and returns what it typed
#: (the key types into the terminal). The CLI sets it when it runs on a terminal.
touch_reader: Callable[[int], str] | None = None


def programmer_for(spec: Spec, device: Device) -> Programmer:
    """The programmer for ``spec``'s mode and ``device`` (see the module docstring)."""
    choice = os.environ.get(PATH_ENV, "client")
    if choice not in ("client", "applet"):
        raise InvalidInput(f"{PATH_ENV} must be 'client' or 'applet'")
    if choice == "applet" or not client_path_available(spec.mode):
        if not device.virtual:
            raise DeviceError(f"programming {spec.mode.value} on a real key needs the client "
                              "libraries: pip install 'hwtoken[all]'")
        return AppletProgrammer()
    if spec.mode.uses_slot:
        return YubicoOtpProgrammer()
    return YubikitOathProgrammer()


def client_path_available(mode: Mode) -> bool:
    """True if this installation has what the client path for ``mode`` needs."""
    import importlib.util

    def has(mod: str) -> bool:
        try:
            return importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            return False

    if mode.uses_slot:
        return has("yubico") and has("hwtoken.yubikey.device")
    return has("yubikit") and has("hwtoken.yubikey.oath")


def _virtual_name(device: Device) -> str:
    return device.spec[len("emu:"):]


def _hmac_command(slot: int) -> int:
    from yubico.yubikey_defs import SLOT

    return SLOT.CHAL_HMAC1 if slot == 1 else SLOT.CHAL_HMAC2


def _otp_config(spec: Spec, secret: bytes) -> Any:
    """A standalone python-yubico configuration for ``spec`` (no device needed)."""
    from yubico.yubikey_usb_hid import YubiKeyConfigUSBHID

    cfg = YubiKeyConfigUSBHID(ykver=(5, 7, 1))
    if spec.mode is Mode.HOTP:
        cfg.mode_oath_hotp(secret, digits=spec.digits, factor_seed=0)  # HOTP_IMF
    else:
        cfg.mode_challenge_response(secret, type="HMAC", variable=True,
                                    require_button=spec.touch)
    cfg.extended_flag("SERIAL_API_VISIBLE", True)
    return cfg


# -- python-yubico (OTP slots), through hwtoken.yubikey ------------------------------------------
class _OtpSlotConnection:
    def __init__(self, key: Any) -> None:
        self.key = key  # hwtoken.yubikey.device.OtpKey (python-yubico underneath)

    def program(self, spec: Spec, secret: bytes) -> None:
        # the inventory decides what may be (re)programmed, so the slot is overwritten
        if spec.mode is Mode.HOTP:
            self.key.program_hotp(spec.slot, secret, digits=spec.digits, imf=HOTP_IMF, force=True)
        else:
            self.key.program_chalresp(spec.slot, secret, touch=spec.touch, force=True)

    def calculate(self, spec: Spec, challenge: bytes | int | None) -> bytes | str:
        from hwtoken.errors import CheckFailed

        if spec.mode is Mode.CHALRESP:
            assert isinstance(challenge, bytes)
            try:
                return bytes(self.key.calculate(spec.slot, challenge))
            except (InvalidInput, CheckFailed) as exc:
                raise NotProgrammed(str(exc)) from None
        if not self.key.is_programmed(spec.slot):
            raise NotProgrammed(f"slot {spec.slot} is not programmed")
        if self.key.virtual_key is None:
            if touch_reader is None:
                raise CannotCheck("a real key's HOTP slot can only be checked by touching "
                                  "it: run on a terminal, or check a code by hand")
            code = touch_reader(spec.slot).strip()
            if not code:  # nobody touched it: that says nothing about the slot
                raise CannotCheck(f"nothing was typed for slot {spec.slot}: touch the key "
                                  "when asked")
        else:
            code = str(self.key.touch(spec.slot)).strip()
        if not code:
            raise NotProgrammed(f"slot {spec.slot} types nothing")
        return code


class YubicoOtpProgrammer:
    """OTP slots through ``hwtoken.yubikey`` (python-yubico over USB, or over USB/IP for a
    virtual key); HOTP codes are read back from the key's keyboard endpoint."""

    name = "python-yubico"

    @contextlib.contextmanager
    def connect(self, device: Device) -> Iterator[KeyConnection]:
        from hwtoken.yubikey.device import open_key

        with open_key(device.spec if device.virtual else str(device.serial)) as key:
            yield _OtpSlotConnection(key)


# -- yubikit (OATH applet), through hwtoken.yubikey.oath ------------------------------------------
class _OathConnection:
    def __init__(self, client: Any) -> None:
        self.client = client  # hwtoken.yubikey.oath.OathClient (yubikit OathSession)

    def program(self, spec: Spec, secret: bytes) -> None:
        self.client.add(spec.name, secret, hotp=spec.mode is Mode.OATH_HOTP,
                        digits=spec.digits, period=OATH_PERIOD, touch=spec.touch,
                        overwrite=True)

    def calculate(self, spec: Spec, challenge: bytes | int | None) -> bytes | str:
        if not any(a.name == spec.name and not a.issuer for a in self.client.list()):
            raise NotProgrammed(f"no OATH credential named {spec.name!r} on the key")
        ts = challenge if isinstance(challenge, int) else None
        return str(self.client.codes(spec.name, timestamp=ts)[0].code)


class YubikitOathProgrammer:
    """The OATH applet through yubikit's OathSession over PC/SC (pcscd; for a virtual key
    the vpcd link that ``hwtoken.yubikey.oath`` sets up)."""

    name = "yubikit"

    @contextlib.contextmanager
    def connect(self, device: Device) -> Iterator[KeyConnection]:
        from hwtoken.yubikey.oath import PASSWORD_ENV, OathClient, open_connection

        # a key just seen on USB: pcscd adds its reader a moment later
        with open_connection(device.spec if device.virtual else str(device.serial),
                             settle=0.0 if device.virtual else 10.0) as conn:
            yield _OathConnection(OathClient(conn, password=os.environ.get(PASSWORD_ENV)))


# -- interim: the emulator's applet API (virtual keys only) ---------------------------------------
class _AppletConnection:
    def __init__(self, key: Any) -> None:
        self.key = key

    def program(self, spec: Spec, secret: bytes) -> None:
        if spec.mode.uses_slot:
            frame = _otp_config(spec, secret).to_frame(slot=spec.slot)
            before = self.key.otp.status()
            after = self.key.otp.command(frame.command, frame.payload)
            if after[3:4] == before[3:4]:  # programming sequence did not move: refused
                raise DeviceError(f"the key refused the configuration of slot {spec.slot}")
            return
        raise DeviceError("the applet path has no OATH support yet; use the client path")

    def calculate(self, spec: Spec, challenge: bytes | int | None) -> bytes | str:
        from hwtoken.emulator.applets.otp.applet import CommandRejected

        if spec.mode is Mode.CHALRESP:
            assert isinstance(challenge, bytes)
            pad = b"\x00" if challenge[-1:] != b"\x00" else b"\xff"
            try:
                return bytes(self.key.otp.command(_hmac_command(spec.slot),
                                                  challenge.ljust(64, pad)))[:20]
            except CommandRejected:
                raise NotProgrammed(f"slot {spec.slot} gives no HMAC response") from None
        if spec.mode is Mode.HOTP:
            code = self.key.otp.touch(spec.slot)
            if not code:
                raise NotProgrammed(f"slot {spec.slot} types nothing")
            return str(code)
        raise NotProgrammed("the applet path has no OATH support yet")


class AppletProgrammer:
    """Interim: program a virtual key through the emulator's applet API, no transport."""

    name = "applet"

    @contextlib.contextmanager
    def connect(self, device: Device) -> Iterator[KeyConnection]:
        if not device.virtual:
            raise DeviceError("the applet path works on virtual keys only")
        from hwtoken.devices import open_virtual

        with open_virtual(_virtual_name(device)) as handle:
            if handle.key is None:
                raise DeviceError(f"{device.spec} is served by another process")
            yield _AppletConnection(handle.key)
