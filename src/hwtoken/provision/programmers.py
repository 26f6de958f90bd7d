"""Programmers: how a key is written and asked for a response, per mode.

* :class:`YubicoOtpProgrammer` -- OTP slots (``hotp``, ``chalresp``, ``yubiotp``) through
  python-yubico:
  on a real key over USB (libusb), on a virtual key over USB/IP loopback through the pyusb
  backend (``hwtoken.devices``), so the same client code runs for both.
* :class:`YubikitOathProgrammer` -- the OATH applet (``oath-totp``, ``oath-hotp``) through
  yubikit's ``OathSession`` over a PC/SC smart-card connection (pcscd; for a virtual key
  the vpcd link of ``hwtoken.yubikey.oath``).
* :class:`AppletProgrammer` -- the *interim* path for virtual keys only: the emulator's
  pure applet API (``key.otp.command``), used when ``HWTOKEN_PROVISION_PATH=applet`` or
  when the client path for a mode is not available in this installation.

An OATH-HOTP or Yubico OTP *slot* only types its code when a person touches it. For a
virtual key the check simulates the touch and reads the code from the key's USB keyboard
endpoint (the same USB/IP link python-yubico uses); a real key's slot cannot be checked
without a human: on a terminal the CLI asks the operator to touch it and reads the code it
types (:data:`touch_reader`); otherwise the record stays ``pending`` with that reason
(``provision resume --code SERIAL=CODE`` settles it with a code typed elsewhere).

Each connection also says what a place holds already (``occupant``), so the runner never
overwrites a slot or credential it did not write unless told to, and presents the access
codes it is given (:class:`~hwtoken.provision.model.Access`) when it writes a slot.

The client programmer for each application is in :data:`CLIENT_PROGRAMMERS`: PIV
(:mod:`hwtoken.provision.piv`, yubikit's PivSession) and FIDO2
(:mod:`hwtoken.provision.fido`, python-fido2) have theirs in their own modules. Each is made
with the :class:`~hwtoken.provision.protocol.Station` of the run (the inventory's journal,
the attestation roots, the CA), which :func:`programmer_for` takes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from hwtoken.errors import CheckFailed, DeviceError, InvalidInput
from hwtoken.provision.model import HOTP_IMF, OATH_PERIOD, Access, Material, Mode, Spec
from hwtoken.provision.protocol import (
    AccessDenied,
    CannotCheck,
    Device,
    KeyConnection,
    NotProgrammed,
    Programmer,
    Station,
    Unsuitable,
)

PATH_ENV = "HWTOKEN_PROVISION_PATH"

#: For real keys' slots that type (HOTP, Yubico OTP): asks the operator to touch the key and
#: returns what it typed (the key types into the terminal). The CLI sets it on a terminal.
touch_reader: Callable[[int], str] | None = None


def programmer_for(spec: Spec, device: Device, station: Station | None = None) -> Programmer:
    """The programmer for ``spec``'s mode and ``device`` (see the module docstring), made
    with the run's ``station`` (a partial of this is the runner's ``programmer_for``)."""
    choice = os.environ.get(PATH_ENV, "client")
    if choice not in ("client", "applet"):
        raise InvalidInput(f"{PATH_ENV} must be 'client' or 'applet'")
    if spec.application not in APPLET_APPLICATIONS and not client_path_available(spec.mode):
        raise DeviceError(f"programming {spec.mode.value} needs the client libraries: pip "
                          "install 'hwtoken[all]'")
    if spec.application in APPLET_APPLICATIONS and (
            choice == "applet" or not client_path_available(spec.mode)):
        if not device.virtual:
            raise DeviceError(f"programming {spec.mode.value} on a real key needs the client "
                              "libraries: pip install 'hwtoken[all]'")
        return AppletProgrammer()
    return CLIENT_PROGRAMMERS[spec.application](station)


def client_path_available(mode: Mode) -> bool:
    """True if this installation has what the client path for ``mode`` needs."""
    import importlib.util

    def has(mod: str) -> bool:
        try:
            return importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            return False

    return all(has(m) for m in CLIENT_MODULES[mode.application])


def _virtual_name(device: Device) -> str:
    return device.spec[len("emu:"):]


def _hmac_command(slot: int) -> int:
    from yubico.yubikey_defs import SLOT

    return SLOT.CHAL_HMAC1 if slot == 1 else SLOT.CHAL_HMAC2


def _hex(data: bytes) -> bytes:
    """Bytes as python-yubico takes them safely (raw bytes starting with ``h:`` or ``m:``
    would be read as hex or modhex)."""
    return b"h:" + data.hex().encode()


def _otp_config(spec: Spec, material: Material, *, access_code: bytes | None = None,
                current: bytes | None = None) -> Any:
    """A standalone python-yubico configuration for ``spec`` (no device needed)."""
    from yubico.yubikey_usb_hid import YubiKeyConfigUSBHID

    cfg = YubiKeyConfigUSBHID(ykver=(5, 7, 1))
    secret = material.secret
    if spec.mode is Mode.HOTP:
        cfg.mode_oath_hotp(_hex(secret), digits=spec.digits, factor_seed=0)  # HOTP_IMF
    elif spec.mode is Mode.YUBIOTP:
        cfg.mode_yubikey_otp(_hex(secret[:6]), _hex(secret[6:]))
        cfg.fixed_string(b"m:" + material.params["public_id"].encode())
        cfg.ticket_flag("APPEND_CR", True)
    else:
        cfg.mode_challenge_response(_hex(secret), type="HMAC", variable=True,
                                    require_button=spec.touch)
    cfg.extended_flag("SERIAL_API_VISIBLE", True)
    if current is not None:
        cfg.unlock_key(_hex(current))
    cfg.access_key(_hex(access_code or bytes(6)))
    return cfg


def _codes_to_try(access: Access) -> list[bytes | None]:
    """The current codes to present in turn: the given ones, then none."""
    out: list[bytes | None] = []
    for code in (*access.current, None):
        if code not in out:
            out.append(code)
    return out


def _slot_kind(touch_triggered: bool | None) -> str:
    if touch_triggered is None:
        return "programmed"
    return ("programmed (it types on touch: HOTP, Yubico OTP or a static password)"
            if touch_triggered else "programmed (challenge-response)")


def model_of(device: Device) -> str:
    """What the key is, in words: discovery's name, or a virtual key's model."""
    if device.model:
        return device.model
    if device.virtual:
        from hwtoken.provision.sources import virtual_model

        return virtual_model(_virtual_name(device)) or device.spec
    return f"key {device.serial}"


def require_interface(device: Device, interface: str, what: str) -> None:
    """A key that discovery saw without ``interface`` cannot take this mode."""
    if device.interfaces is not None and interface not in device.interfaces:
        has = "/".join(sorted(device.interfaces)).upper() or "no"
        model = device.model or "this key"
        kind = "a FIDO-only key" if device.interfaces <= {"fido"} else "a key"
        raise Unsuitable(f"{model} is {kind} ({has} interface only): it has no {what}")


@contextlib.contextmanager
def open_smartcard(device: Device) -> Iterator[Any]:
    """A yubikit SmartCardConnection to ``device`` (OATH and PIV): a virtual key as
    :mod:`hwtoken.yubikey.oath` opens it, a real one by serial over pcscd -- a key just
    seen on USB gets a moment for pcscd to add its reader."""
    from hwtoken.yubikey.oath import open_connection

    with open_connection(device.spec if device.virtual else str(device.serial),
                         settle=0.0 if device.virtual else 10.0) as conn:
        yield conn


# -- python-yubico (OTP slots), through hwtoken.yubikey ------------------------------------------
class _OtpSlotConnection:
    def __init__(self, key: Any) -> None:
        self.key = key  # hwtoken.yubikey.device.OtpKey (python-yubico underneath)

    def occupant(self, spec: Spec) -> str | None:
        slot = self.key.info().slots[spec.slot]
        return f"slot {spec.slot} is {_slot_kind(slot.touch_triggered)}" if slot.programmed \
            else None

    def program(self, spec: Spec, material: Material, access: Access) -> None:
        from hwtoken.yubikey.device import WriteRefused

        # the runner decides what may be (over)written, so the slot is overwritten
        protected = self.key.is_programmed(spec.slot)
        for current in _codes_to_try(access):
            try:
                self._write(spec, material, access.new, current)
                return
            except WriteRefused:
                if not protected:  # an empty slot has no code: the key refused the config
                    raise
        raise AccessDenied(f"slot {spec.slot} is protected by an access code that was not "
                           "given: pass the code it has with --access-code")

    def _write(self, spec: Spec, material: Material, new: bytes | None,
               current: bytes | None) -> None:
        secret = material.secret
        # no new code: all zeros, which leaves the slot unprotected
        codes = {"access_code": new or bytes(6), "current_access_code": current, "force": True}
        if spec.mode is Mode.HOTP:
            self.key.program_hotp(spec.slot, secret, digits=spec.digits, imf=HOTP_IMF, **codes)
        elif spec.mode is Mode.YUBIOTP:
            self.key.program_yubiotp(spec.slot, material.params["public_id"], secret[:6],
                                     secret[6:], **codes)
        else:
            self.key.program_chalresp(spec.slot, secret, touch=spec.touch, **codes)

    def calculate(self, spec: Spec, challenge: bytes | int | None) -> bytes | str:
        if spec.mode is Mode.CHALRESP:
            assert isinstance(challenge, bytes)
            try:
                return bytes(self.key.calculate(spec.slot, challenge))
            except (InvalidInput, CheckFailed) as exc:
                raise NotProgrammed(str(exc)) from None
        if not self.key.is_programmed(spec.slot):
            raise NotProgrammed(f"slot {spec.slot} is not programmed")
        if self.key.virtual_key is None:
            what = "HOTP" if spec.mode is Mode.HOTP else "Yubico OTP"
            if touch_reader is None:
                raise CannotCheck(f"a real key's {what} slot can only be checked by touching "
                                  "it: run on a terminal, or type its code with "
                                  "`provision resume --code SERIAL=CODE`")
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
    virtual key); typed codes are read back from the key's keyboard endpoint."""

    name = "python-yubico"

    def __init__(self, station: Station | None = None) -> None:
        self.station = station

    def check_suitable(self, device: Device) -> None:
        require_interface(device, "otp", "OTP slots")

    @contextlib.contextmanager
    def connect(self, device: Device) -> Iterator[KeyConnection]:
        from hwtoken.yubikey.device import NoOtpInterface, open_key

        self.check_suitable(device)
        try:
            with open_key(device.spec if device.virtual else str(device.serial)) as key:
                yield _OtpSlotConnection(key)
        except NoOtpInterface as exc:
            raise Unsuitable(str(exc)) from None


# -- yubikit (OATH applet), through hwtoken.yubikey.oath ------------------------------------------
class _OathConnection:
    def __init__(self, client: Any) -> None:
        self.client = client  # hwtoken.yubikey.oath.OathClient (yubikit OathSession)

    def occupant(self, spec: Spec) -> str | None:
        if any(a.name == spec.name and not a.issuer for a in self.client.list()):
            return f"the OATH applet holds a credential named {spec.name!r}"
        return None

    def program(self, spec: Spec, material: Material, access: Access) -> None:
        self.client.add(spec.name, material.secret, hotp=spec.mode is Mode.OATH_HOTP,
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

    def __init__(self, station: Station | None = None) -> None:
        self.station = station

    def check_suitable(self, device: Device) -> None:
        require_interface(device, "ccid", "OATH applet (no smart-card interface)")

    @contextlib.contextmanager
    def connect(self, device: Device) -> Iterator[KeyConnection]:
        from hwtoken.yubikey.oath import PASSWORD_ENV, OathClient

        self.check_suitable(device)
        with open_smartcard(device) as conn:
            try:
                client = OathClient(conn, password=os.environ.get(PASSWORD_ENV))
            except DeviceError:  # no OATH applet
                raise Unsuitable(f"{model_of(device)} has no OATH applet (or it is "
                                 "disabled)") from None
            except InvalidInput as exc:  # locked by a password nobody gave
                raise AccessDenied(f"{exc}") from None
            except CheckFailed as exc:  # a wrong password
                raise AccessDenied(f"the OATH applet refused ${PASSWORD_ENV}: {exc}") from None
            yield _OathConnection(client)


def _piv(station: Station | None) -> Programmer:
    from hwtoken.provision.piv import YubikitPivProgrammer

    return YubikitPivProgrammer(station)


def _fido(station: Station | None) -> Programmer:
    from hwtoken.provision.fido import Fido2PinProgrammer

    return Fido2PinProgrammer(station)


#: application -> the programmer of the client path (made with the run's Station), and the
#: modules it needs
CLIENT_PROGRAMMERS: dict[str, Callable[[Station | None], Programmer]] = {
    "otp": YubicoOtpProgrammer, "oath": YubikitOathProgrammer, "piv": _piv, "fido": _fido}
CLIENT_MODULES: dict[str, tuple[str, ...]] = {
    "otp": ("yubico", "hwtoken.yubikey.device"),
    "oath": ("yubikit", "hwtoken.yubikey.oath"),
    "piv": ("yubikit", "ykman", "hwtoken.yubikey.oath"),
    "fido": ("fido2", "ykman", "hwtoken.fido.device")}
#: applications the interim applet path can program (OTP slots only)
APPLET_APPLICATIONS = ("otp",)


# -- interim: the emulator's applet API (virtual keys only) ---------------------------------------
class _AppletConnection:
    def __init__(self, key: Any) -> None:
        self.key = key

    def _touch_level(self) -> int:
        return int.from_bytes(self.key.otp.status()[4:6], "little")

    def occupant(self, spec: Spec) -> str | None:
        if not spec.mode.uses_slot:
            raise DeviceError("the applet path has no OATH support yet; use the client path")
        level = self._touch_level()
        valid, touch = (0x01, 0x04) if spec.slot == 1 else (0x02, 0x08)
        return f"slot {spec.slot} is {_slot_kind(bool(level & touch))}" if level & valid \
            else None

    def program(self, spec: Spec, material: Material, access: Access) -> None:
        if not spec.mode.uses_slot:
            raise DeviceError("the applet path has no OATH support yet; use the client path")
        protected = self.occupant(spec) is not None
        for current in _codes_to_try(access):
            frame = _otp_config(spec, material, access_code=access.new,
                                current=current).to_frame(slot=spec.slot)
            before = self.key.otp.status()
            after = self.key.otp.command(frame.command, frame.payload)
            if after[3:4] != before[3:4]:  # the programming sequence moved: accepted
                return
            if not protected:
                raise DeviceError(f"the key refused the configuration of slot {spec.slot}")
        raise AccessDenied(f"slot {spec.slot} is protected by an access code that was not "
                           "given: pass the code it has with --access-code")

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
        if spec.mode.typed:
            code = self.key.otp.touch(spec.slot)
            if not code:
                raise NotProgrammed(f"slot {spec.slot} types nothing")
            return str(code)
        raise NotProgrammed("the applet path has no OATH support yet")


class AppletProgrammer:
    """Interim: program a virtual key through the emulator's applet API, no transport."""

    name = "applet"

    def check_suitable(self, device: Device) -> None:
        require_interface(device, "otp", "OTP slots")

    @contextlib.contextmanager
    def connect(self, device: Device) -> Iterator[KeyConnection]:
        self.check_suitable(device)
        if not device.virtual:
            raise DeviceError("the applet path works on virtual keys only")
        from hwtoken.devices import open_virtual

        with open_virtual(_virtual_name(device)) as handle:
            if handle.key is None:
                raise DeviceError(f"{device.spec} is served by another process")
            if not handle.key.profile.has("otp"):
                raise Unsuitable(f"{handle.key.profile.model} has no OTP slots")
            yield _AppletConnection(handle.key)
