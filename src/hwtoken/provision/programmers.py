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

One thing no client library can do is read the code an OATH-HOTP *slot* types when it is
touched (a real key types it into the focused window). For a virtual key the check
touches the slot through the key object and reads what it types; for a real key the
check accepts the slot's "configured" bit from the status report (documented weaker).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from hwtoken.errors import DeviceError, InvalidInput
from hwtoken.provision.model import OATH_PERIOD, Mode, Spec
from hwtoken.provision.protocol import Device, KeyConnection, NotProgrammed, Programmer

PATH_ENV = "HWTOKEN_PROVISION_PATH"


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
        return has("yubico") and has("hwtoken.emulator.transports.pyusb_backend")
    return has("yubikit") and has("hwtoken.yubikey.oath")


def _virtual_name(device: Device) -> str:
    return device.spec[len("emu:"):]


def _hmac_command(slot: int) -> int:
    from yubico.yubikey_defs import SLOT

    return SLOT.CHAL_HMAC1 if slot == 1 else SLOT.CHAL_HMAC2


def _otp_config(yk_or_none: Any, spec: Spec, secret: bytes) -> Any:
    """A python-yubico configuration for ``spec`` (from the device, or standalone)."""
    if yk_or_none is not None:
        cfg = yk_or_none.init_config()
    else:
        from yubico.yubikey_usb_hid import YubiKeyConfigUSBHID

        cfg = YubiKeyConfigUSBHID(ykver=(5, 7, 1))
    if spec.mode is Mode.HOTP:
        cfg.mode_oath_hotp(secret, digits=spec.digits, factor_seed=0)
    else:
        cfg.mode_challenge_response(secret, type="HMAC", variable=True,
                                    require_button=spec.touch)
    cfg.extended_flag("SERIAL_API_VISIBLE", True)
    return cfg


# -- python-yubico (OTP slots) ----------------------------------------------------------------
class _YubicoConnection:
    def __init__(self, yk: Any, key: Any | None) -> None:
        self.yk = yk
        self.key = key  # the VirtualKey object, only to touch a virtual HOTP slot

    def program(self, spec: Spec, secret: bytes) -> None:
        import yubico

        cfg = _otp_config(self.yk, spec, secret)
        try:
            self.yk.write_config(cfg, slot=spec.slot)
        except yubico.yubico_exception.YubicoError as exc:
            raise DeviceError(f"the key refused the configuration of slot {spec.slot}: "
                              f"{exc.reason}") from None

    def calculate(self, spec: Spec, challenge: bytes | int | None) -> bytes | str:
        import yubico

        if spec.mode is Mode.CHALRESP:
            assert isinstance(challenge, bytes)
            try:
                return bytes(self.yk.challenge_response(challenge, mode="HMAC", slot=spec.slot,
                                                        variable=True, may_block=True))
            except yubico.yubico_exception.YubicoError:
                raise NotProgrammed(f"slot {spec.slot} gives no HMAC response") from None
        if self.key is None:
            return _real_hotp_status(self.yk, spec)
        return str(self.key.otp.touch(spec.slot))


def _real_hotp_status(yk: Any, spec: Spec) -> str:
    """Real keys: the HOTP code is only typed on a human touch; accept the status bit."""
    status = yk.status()
    configured = status.valid_configs() if hasattr(status, "valid_configs") else []
    if spec.slot not in configured:
        raise NotProgrammed(f"slot {spec.slot} is not configured")
    raise NotProgrammed("a real key's HOTP slot can only be checked by touching it")


class YubicoOtpProgrammer:
    """OTP slots through python-yubico (real USB, or USB/IP for a virtual key)."""

    name = "python-yubico"

    @contextlib.contextmanager
    def connect(self, device: Device) -> Iterator[KeyConnection]:
        import yubico

        if device.virtual:
            from hwtoken.devices import open_virtual, served_key
            from hwtoken.emulator.transports.pyusb_backend import UsbipBackend, use_backend

            with open_virtual(_virtual_name(device)) as handle:
                if handle.key is None:
                    raise DeviceError(f"{device.spec} is served by another process; stop "
                                      "`hwtoken emulate serve` while provisioning it")
                with served_key(handle.key) as (host, port, busid):
                    backend = UsbipBackend(host, port, busid=busid)
                    try:
                        with use_backend(backend):
                            yk = yubico.find_yubikey()
                            yield _YubicoConnection(yk, handle.key)
                    finally:
                        backend.close()
            return
        yield _YubicoConnection(_find_real(yubico, device.serial), None)


def _find_real(yubico: Any, serial: int) -> Any:
    for skip in range(16):
        try:
            yk = yubico.find_yubikey(skip=skip)
        except yubico.yubikey.YubiKeyError:
            break
        try:
            if int(yk.serial()) == serial:
                return yk
        except yubico.yubico_exception.YubicoError:
            continue
    raise DeviceError(f"YubiKey {serial} is not plugged in (or not readable over USB)")


# -- yubikit (OATH applet) ----------------------------------------------------------------------
class _OathConnection:
    def __init__(self, session: Any) -> None:
        self.session = session

    def program(self, spec: Spec, secret: bytes) -> None:
        from yubikit.oath import HASH_ALGORITHM, OATH_TYPE, CredentialData

        data = CredentialData(
            name=spec.name, issuer=None,
            oath_type=OATH_TYPE.TOTP if spec.mode is Mode.OATH_TOTP else OATH_TYPE.HOTP,
            hash_algorithm=HASH_ALGORITHM.SHA1, secret=secret, digits=spec.digits,
            period=OATH_PERIOD, counter=0)
        self.session.put_credential(data, touch_required=spec.touch)

    def calculate(self, spec: Spec, challenge: bytes | int | None) -> bytes | str:
        for cred in self.session.list_credentials():
            if cred.name == spec.name and cred.issuer is None:
                ts = int(challenge) if isinstance(challenge, int) else None
                return str(self.session.calculate_code(cred, ts).value)
        raise NotProgrammed(f"no OATH credential named {spec.name!r} on the key")


class YubikitOathProgrammer:
    """The OATH applet through yubikit's OathSession over PC/SC."""

    name = "yubikit"

    @contextlib.contextmanager
    def connect(self, device: Device) -> Iterator[KeyConnection]:
        from yubikit.oath import OathSession

        with smartcard_connection(device) as conn:
            yield _OathConnection(OathSession(conn))


@contextlib.contextmanager
def smartcard_connection(device: Device) -> Iterator[Any]:
    """A yubikit SmartCardConnection to ``device`` (virtual: through pcscd + vpcd)."""
    from yubikit.core.smartcard import SmartCardConnection

    if device.virtual:
        from hwtoken.yubikey import oath as host_oath

        opener = getattr(host_oath, "smartcard_connection", None)
        if opener is None:
            raise DeviceError("hwtoken.yubikey.oath has no smartcard_connection(); "
                              "use HWTOKEN_PROVISION_PATH=applet")
        with opener(device.spec) as conn:
            yield conn
        return
    from ykman.device import list_all_devices

    for dev, info in list_all_devices():
        if info.serial == device.serial:
            with dev.open_connection(SmartCardConnection) as conn:
                yield conn
            return
    raise DeviceError(f"YubiKey {device.serial} is not plugged in")


# -- interim: the emulator's applet API (virtual keys only) ---------------------------------------
class _AppletConnection:
    def __init__(self, key: Any) -> None:
        self.key = key

    def program(self, spec: Spec, secret: bytes) -> None:
        if spec.mode.uses_slot:
            frame = _otp_config(None, spec, secret).to_frame(slot=spec.slot)
            before = self.key.otp.status()
            after = self.key.otp.command(frame.command, frame.payload)
            if after[3:4] == before[3:4]:  # programming sequence did not move: refused
                raise DeviceError(f"the key refused the configuration of slot {spec.slot}")
            return
        raise DeviceError("the applet path has no OATH support yet; use the client path")

    def calculate(self, spec: Spec, challenge: bytes | int | None) -> bytes | str:
        from hwtoken.emulator.otp.applet import CommandRejected

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
