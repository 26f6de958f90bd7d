"""Finding a YubiKey and driving its OTP slots through python-yubico.

:func:`open_key` gives an :class:`OtpKey` for a ``--device`` spec:

- a real key: python-yubico's own USB discovery (``yubico.find_yubikey``), optionally
  picked by serial number;
- ``emu:NAME``: the virtual key is served on loopback over USB/IP (or a running
  ``hwtoken emulate serve NAME`` is used) and pyusb's default discovery is pointed at it,
  so ``yubico.find_yubikey`` finds it exactly like a plugged-in key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from hwtoken import devices
from hwtoken.errors import CheckFailed, DeviceError, InvalidInput, SetupError
from hwtoken.yubikey.secrets import fit_hmac_key

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.key import VirtualKey
    from hwtoken.emulator.presence import UserPresence

SLOTS = (1, 2)
_CONFIG_SIZE = 52
_MAX_KEYS = 16  # real keys probed by `list`
_YUBICO_VID = 0x1050
_KEYBOARD_EP = 0x81  # interrupt IN of the OTP (keyboard) interface


def _yubico() -> Any:
    try:
        import yubico
    except ImportError:  # pragma: no cover - extra not installed
        raise DeviceError("python-yubico is not installed: pip install 'hwtoken[yubikey]'"
                          ) from None
    return yubico


class WriteRefused(CheckFailed):
    """The key refused a configuration write (the slot's access code was not presented,
    or the configuration was rejected): nothing changed on the key."""


class NoOtpInterface(DeviceError):
    """The key has no OTP slots (a FIDO-only model)."""


@dataclass
class SlotInfo:
    """What the status report tells about one slot (keys never reveal their secrets)."""

    programmed: bool
    touch_triggered: bool | None  # True: types on touch (HOTP, Yubico OTP, static)

    @property
    def kind(self) -> str:
        if not self.programmed:
            return "empty"
        if self.touch_triggered is None:
            return "programmed"
        return "keyboard (types on touch)" if self.touch_triggered else "challenge-response"


@dataclass
class KeyInfo:
    """Identity and slot state of one key."""

    device: str
    serial: int | None
    firmware: str
    model: str
    virtual: bool
    pgm_seq: int
    touch_level: int
    slots: dict[int, SlotInfo] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["slots"] = {str(n): {**asdict(s), "kind": s.kind} for n, s in self.slots.items()}
        return d


class _RawFrame:
    """A prepared frame for python-yubico's public ``write_config`` (delete with a code)."""

    def __init__(self, command: int, payload: bytes) -> None:
        self.command = command
        self.payload = payload.ljust(64, b"\0")

    def version_required(self) -> tuple[int, int]:
        return (2, 0)

    def to_frame(self, slot: int = 1) -> Any:
        from yubico.yubikey_frame import YubiKeyFrame

        return YubiKeyFrame(command=self.command, payload=self.payload)

    def __repr__(self) -> str:  # python-yubico prints configs in debug mode: no secrets
        return f"<frame 0x{self.command:02x}>"


class OtpKey:
    """One opened YubiKey (python-yubico object ``yk``) and the OTP-slot operations."""

    def __init__(self, yk: Any, device: str, *, virtual_key: VirtualKey | None = None,
                 backend: Any = None) -> None:
        self.yk = yk
        self.device = device
        self.virtual_key = virtual_key
        self._backend = backend

    @property
    def is_virtual(self) -> bool:
        return self.device.startswith(devices.VIRTUAL_PREFIX)

    # -- state -------------------------------------------------------------------------------
    def _status(self) -> Any:
        return _call(self.yk.status)

    def serial(self) -> int | None:
        try:
            return int(_call(self.yk.serial))
        except DeviceError:
            return None

    def info(self) -> KeyInfo:
        """Serial, firmware, programming sequence, and which slots are programmed."""
        st = self._status()
        version = st.ykver()
        slots = {}
        valid = st.valid_configs()
        for n in SLOTS:
            touch = None
            if version >= (3, 0, 0) and n in valid:
                touch = bool(st.touch_level & (0x04 if n == 1 else 0x08))
            slots[n] = SlotInfo(programmed=n in valid, touch_triggered=touch)
        return KeyInfo(device=self.device, serial=self.serial(), firmware=st.version(),
                       model=_model(version, getattr(self.yk, "description", "YubiKey")),
                       virtual=self.is_virtual, pgm_seq=st.pgm_seq,
                       touch_level=st.touch_level, slots=slots)

    def is_programmed(self, slot: int) -> bool:
        _check_slot(slot)
        return slot in self._status().valid_configs()

    def _guard_overwrite(self, slot: int, force: bool) -> None:
        if not force and self.is_programmed(slot):
            raise InvalidInput(f"slot {slot} is already programmed and overwriting it destroys "
                               "its secret: pass force=True to overwrite it (on the command "
                               "line: --force)")

    # -- programming ---------------------------------------------------------------------------
    def _new_config(self) -> Any:
        return _call(self.yk.init_config)

    @staticmethod
    def _codes(cfg: Any, access_code: bytes | None, current: bytes | None) -> None:
        """Present ``current`` (unlock) and protect the slot with ``access_code``."""
        if current is not None:
            cfg.unlock_key(b"h:" + current.hex().encode())
        if access_code is not None:
            cfg.access_key(b"h:" + access_code.hex().encode())
        elif current is not None:
            cfg.access_key(b"h:" + current.hex().encode())  # keep the slot protected

    def _write(self, cfg: Any, slot: int, what: str) -> None:
        yubico = _yubico()
        try:
            self.yk.write_config(cfg, slot=slot)
        except yubico.yubikey_usb_hid.YubiKeyUSBHIDError as exc:
            if "programming failed" in str(exc):
                raise WriteRefused(f"the key refused to {what}: the slot is protected by an "
                                  "access code (give the right --access-code) or the "
                                  "configuration was rejected") from None
            raise DeviceError(f"could not {what}: {exc}") from None
        except yubico.yubico_exception.YubicoError as exc:
            raise DeviceError(f"could not {what}: {exc.reason}") from None

    def program_hotp(self, slot: int, secret: bytes, *, digits: int = 6, imf: int = 0,
                     access_code: bytes | None = None,
                     current_access_code: bytes | None = None, append_cr: bool = True,
                     force: bool = False) -> None:
        """OATH-HOTP: a touch types the next ``digits``-digit code (then Enter).

        ``imf`` is the initial counter (a multiple of 16, as the key stores it /16).
        """
        _check_slot(slot)
        if digits not in (6, 8):
            raise InvalidInput("HOTP codes have 6 or 8 digits")
        if imf % 16 or not 0 <= imf <= 0xFFFF0:
            raise InvalidInput("the initial counter must be a multiple of 16 up to 1048560")
        self._guard_overwrite(slot, force)
        cfg = self._new_config()
        # python-yubico packs factor_seed little-endian; keys read uid[4:6] big-endian / 16
        seed = int.from_bytes((imf // 16).to_bytes(2, "big"), "little")
        cfg.mode_oath_hotp(_hex(fit_hmac_key(secret)), digits=digits, factor_seed=seed or None)
        cfg.ticket_flag("APPEND_CR", append_cr)
        self._common_flags(cfg)
        self._codes(cfg, access_code, current_access_code)
        self._write(cfg, slot, f"program slot {slot}")

    def program_chalresp(self, slot: int, secret: bytes, *, touch: bool = False,
                         variable: bool = True, access_code: bytes | None = None,
                         current_access_code: bytes | None = None,
                         force: bool = False) -> None:
        """HMAC-SHA1 challenge-response (what KeePassXC, PAM and LUKS use)."""
        _check_slot(slot)
        self._guard_overwrite(slot, force)
        cfg = self._new_config()
        cfg.mode_challenge_response(_hex(fit_hmac_key(secret)), type="HMAC",
                                    variable=variable, require_button=touch)
        self._common_flags(cfg)
        self._codes(cfg, access_code, current_access_code)
        self._write(cfg, slot, f"program slot {slot}")

    def program_yubiotp(self, slot: int, public_id: str, private_id: bytes, key: bytes, *,
                        access_code: bytes | None = None,
                        current_access_code: bytes | None = None, append_cr: bool = True,
                        force: bool = False) -> None:
        """Yubico OTP: a touch types ``public_id`` (modhex) and a 32-character OTP, the
        ticket with ``private_id`` (6 bytes) encrypted under the AES-128 ``key``."""
        _check_slot(slot)
        if len(private_id) != 6 or len(key) != 16:
            raise InvalidInput("Yubico OTP needs a 6-byte private ID and a 16-byte AES key")
        if len(public_id) > 32 or len(public_id) % 2 or \
                any(c not in "cbdefghijklnrtuv" for c in public_id):
            raise InvalidInput("the public ID must be modhex, at most 16 bytes")
        self._guard_overwrite(slot, force)
        cfg = self._new_config()
        cfg.mode_yubikey_otp(_hex(private_id), _hex(key))
        cfg.fixed_string(b"m:" + public_id.encode())
        cfg.ticket_flag("APPEND_CR", append_cr)
        self._common_flags(cfg)
        self._codes(cfg, access_code, current_access_code)
        self._write(cfg, slot, f"program slot {slot}")

    @staticmethod
    def _common_flags(cfg: Any) -> None:
        cfg.extended_flag("SERIAL_API_VISIBLE", True)
        cfg.extended_flag("ALLOW_UPDATE", True)

    def delete(self, slot: int, *, current_access_code: bytes | None = None) -> None:
        """Erase ``slot`` (needs its access code if it has one)."""
        _check_slot(slot)
        yubico = _yubico()
        command = yubico.yubikey_defs.SLOT.CONFIG if slot == 1 else yubico.yubikey_defs.SLOT.CONFIG2
        payload = bytes(_CONFIG_SIZE) + (current_access_code or bytes(6))
        self._write(_RawFrame(command, payload), slot, f"delete slot {slot}")

    def swap(self, *, current_access_code: bytes | None = None) -> None:
        """Exchange the two slots' configurations."""
        cfg = _call(self.yk.init_config, swap=True)
        if current_access_code is not None:
            cfg.unlock_key(b"h:" + current_access_code.hex().encode())
        self._write(cfg, 1, "swap the slots")

    # -- using ---------------------------------------------------------------------------------
    def calculate(self, slot: int, challenge: bytes, *, variable: bool = True) -> bytes:
        """HMAC-SHA1 response of ``slot`` to ``challenge`` (up to 64 bytes)."""
        _check_slot(slot)
        if len(challenge) > 64:
            raise InvalidInput("a challenge is at most 64 bytes")
        info = self.info().slots[slot]
        if not info.programmed:
            raise InvalidInput(f"slot {slot} is not programmed")
        if info.touch_triggered:
            raise InvalidInput(f"slot {slot} types on touch; it is not a challenge-response "
                               "slot")
        yubico = _yubico()
        try:
            return bytes(self.yk.challenge_response(challenge, mode="HMAC", slot=slot,
                                                    variable=variable, may_block=True))
        except yubico.yubikey_base.YubiKeyTimeout:
            raise CheckFailed(f"slot {slot} gave no response (touch the key when it "
                              "blinks; a slot needing touch waits about 15 s)") from None
        except yubico.yubico_exception.YubicoError as exc:
            raise DeviceError(f"challenge-response failed: {exc.reason}") from None

    def touch(self, slot: int, *, timeout: float = 5.0) -> str:
        """Virtual key only: touch the button and read what it types from the keyboard.

        The text is read back from the key's USB keyboard endpoint over USB/IP (the server
        python-yubico uses) and decoded from HID usage codes.
        """
        _check_slot(slot)
        if self.virtual_key is None and self.is_virtual:
            raise InvalidInput(f"{self.device} is served by `hwtoken emulate serve` in another "
                               "process, which cannot simulate a touch of an OTP slot: stop "
                               "that serve and run this again (the key is then loaded here)")
        if self.virtual_key is None:
            raise InvalidInput("a touch can only be simulated on a virtual key (emu:NAME); "
                               "touch the real key instead")
        import usb.core
        import usb.util

        from hwtoken.emulator.applets.otp.hid import press
        from hwtoken.emulator.applets.otp.keyboard import decode

        # The keyboard endpoint is read like any USB keyboard, with pyusb's public API on a
        # session of its own (the virtual key sends keyboard reports to every session,
        # as a real one sends input reports to every hidraw reader); python-yubico has no
        # API for it, and its USB handle is private.
        if self._backend is None:
            raise InvalidInput(f"{self.device} is not reachable over USB/IP here")
        try:
            dev = usb.core.find(idVendor=_YUBICO_VID, backend=self._backend)
            if dev is None:
                raise DeviceError(f"{self.device} did not answer over USB/IP")
            try:
                dev.set_configuration(1)
                expected = press(self.virtual_key, slot)
                # a press and a release report per typed character
                reports = [bytes(dev.read(_KEYBOARD_EP, 8, int(timeout * 1000)))
                           for _ in range(2 * len(expected))]
            finally:
                usb.util.dispose_resources(dev)
        except usb.core.USBError as exc:
            raise DeviceError(f"reading the keyboard failed: {exc}") from None
        return decode(reports)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.yk._device._close()  # release the USB interface now, not at GC time
        self.yk = None


def _hex(data: bytes) -> bytes:
    """Bytes as python-yubico takes them safely: raw bytes that happen to start with
    ``h:`` or ``m:`` would be read as hex or modhex."""
    return b"h:" + data.hex().encode()


def _model(version: tuple[int, int, int], described: str) -> str:
    # python-yubico names every key from firmware 4 on "YubiKey 4"
    return f"YubiKey {version[0]}" if version[0] >= 5 else described


def _check_slot(slot: int) -> None:
    if slot not in SLOTS:
        raise InvalidInput("slot must be 1 or 2")


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    yubico = _yubico()
    try:
        return fn(*args, **kwargs)
    except yubico.yubico_exception.YubicoError as exc:
        raise DeviceError(str(exc.reason)) from None


def _find(skip: int = 0) -> Any | None:
    """python-yubico's discovery; None when there is no (further) key."""
    yubico = _yubico()
    import usb.core

    try:
        return yubico.find_yubikey(skip=skip)
    except yubico.yubikey_base.YubiKeyError as exc:
        if "No YubiKey found" in str(exc):
            return None
        raise DeviceError(f"cannot open the YubiKey: {exc.reason}") from None
    except usb.core.NoBackendError:
        raise SetupError("pyusb found no USB backend: install libusb-1.0 (apt install "
                         "libusb-1.0-0)") from None
    except usb.core.USBError as exc:
        if exc.errno == 13:
            raise SetupError("permission denied opening the YubiKey: install the udev rules "
                             "(`hwtoken udev install`) and re-plug it") from None
        raise DeviceError(f"cannot open the YubiKey: {exc}") from None
    except yubico.yubico_exception.YubicoError as exc:
        raise DeviceError(f"cannot open the YubiKey: {exc.reason}") from None


@contextlib.contextmanager
def open_key(device: str | None = None, *,
             presence: UserPresence | None = None) -> Iterator[OtpKey]:
    """Open the key ``device`` names (see :func:`hwtoken.devices.parse_spec`)."""
    spec = devices.parse_spec(device)
    if spec.raw is None:
        spec = devices.parse_spec(_pick_one())
    if spec.is_virtual:
        assert spec.name is not None
        with _open_virtual(spec.name, presence) as key:
            yield key
        return
    if spec.path is not None:
        raise InvalidInput(f"no YubiKey matches {spec.raw!r}: pick a real YubiKey's OTP "
                           "interface by its serial number (or plug in just one), a virtual "
                           "one with emu:NAME")
    key = _open_real(spec.serial)
    try:
        yield key
    finally:
        key.close()


def _pick_one() -> str:
    """The one YubiKey present: a real one (by serial) or a served virtual one."""
    real: list[str] = []
    problem: DeviceError | None = None
    try:
        for skip in range(_MAX_KEYS):
            yk = _find(skip)
            if yk is None:
                break
            key = OtpKey(yk, "")
            try:
                found = key.serial()
            finally:
                key.close()
            real.append(str(found) if found is not None else "")
    except DeviceError as exc:  # no libusb, no permission: served virtual keys still count
        problem = exc
    if "" in real and len(real) == 1 and not devices.served_virtual_names(transport="usbip"):
        return ""  # one real key with a hidden serial: opened as "the only key"
    try:
        return devices.pick_one([r or "(serial hidden)" for r in real], what="YubiKey",
                                transport="usbip")
    except DeviceError:
        if problem is not None:
            raise problem from None
        raise


def touch_held_key(device: str | None, slot: int) -> str | None:
    """Touch virtual key ``emu:NAME`` in the testbed that holds it (``emulate run``,
    ``serve --local``); None if no testbed holds it."""
    spec = devices.parse_spec(device)
    if spec.name is None:
        return None
    name = spec.name
    doc = devices.running_serve(name)
    local = (doc or {}).get("local") or {}
    if not local.get("control"):
        return None
    from hwtoken.emulator.transports.umockdev.control import touch

    _check_slot(slot)
    return touch(local["control"], name, slot)


def _open_real(serial: int | None) -> OtpKey:
    for skip in range(_MAX_KEYS):
        yk = _find(skip)
        if yk is None:
            break
        key = OtpKey(yk, "")
        found = key.serial()
        key.device = str(found) if found is not None else f"#{skip}"
        if serial is None or found == serial:
            return key
        key.close()
    if serial is None:
        raise DeviceError("no YubiKey found: plug one in (or use --device emu:NAME for a "
                          "virtual key); on Linux check `hwtoken doctor`")
    raise DeviceError(f"no YubiKey with serial {serial} is plugged in")


def _require_otp(profile_name: str, device: str) -> None:
    """A virtual key whose model has no OTP slots (a Security Key) has no OTP interface."""
    from hwtoken.emulator.profiles import get_profile

    profile = get_profile(profile_name)
    if not profile.has("otp"):
        raise NoOtpInterface(f"{device} has no OTP slots: it is a {profile.model} "
                          f"(profile {profile.name})")


@contextlib.contextmanager
def _open_virtual(name: str, presence: UserPresence | None) -> Iterator[OtpKey]:
    from hwtoken.emulator.key import VirtualKey
    from hwtoken.emulator.profiles import DEFAULT_PROFILE

    identity = VirtualKey.peek(devices.key_path_for(name)).section("identity")
    _require_otp(str(identity.get("profile", DEFAULT_PROFILE)),
                 f"{devices.VIRTUAL_PREFIX}{name}")
    with devices.open_virtual(name, presence=presence) as handle:
        if handle.key is not None:
            with open_virtual_key(handle.key, device=f"{devices.VIRTUAL_PREFIX}{name}") as key:
                yield key
            return
        if handle.usbip is None and handle.runtime.get("local"):
            # held by a testbed: inside it the key is the USB device it is plugged in as
            if devices.local_plug(handle.runtime) is None:
                raise DeviceError(devices.unreachable_local(name, handle.runtime))
            key = _open_real(int(handle.runtime["serial"]))
            try:
                yield key
            finally:
                key.close()
            return
        if handle.usbip is None:
            raise InvalidInput(f"virtual key {name!r} is served without USB/IP; restart "
                               f"`hwtoken emulate serve {name}` with USB/IP enabled")
        with _over_usbip(handle.usbip, f"{devices.VIRTUAL_PREFIX}{name}", None) as key:
            yield key


@contextlib.contextmanager
def open_virtual_key(vkey: VirtualKey, *, device: str = "emu:") -> Iterator[OtpKey]:
    """Serve an open :class:`VirtualKey` on loopback and open it through python-yubico.

    For tests and demos that hold the key object: ``OtpKey.touch`` works, and every
    other call goes through python-yubico over USB/IP exactly like ``emu:NAME``.
    """
    _require_otp(vkey.profile.name, device)
    with devices.served_key(vkey) as endpoint, _over_usbip(endpoint, device, vkey) as key:
        yield key


@contextlib.contextmanager
def _over_usbip(endpoint: tuple[str, int, str], device: str,
                vkey: VirtualKey | None) -> Iterator[OtpKey]:
    from hwtoken.emulator.transports.pyusb_backend import UsbipBackend, use_backend

    host, port, busid = endpoint
    with UsbipBackend(host, port, busid=busid) as backend, use_backend(backend):
        yk = _find(0)
        if yk is None:
            raise DeviceError(f"{device} did not answer over USB/IP")
        key = OtpKey(yk, device, virtual_key=vkey, backend=backend)
        try:
            yield key
        finally:
            key.close()


def list_keys(*, include_virtual: bool = True,
              problems: list[str] | None = None) -> list[KeyInfo]:
    """Every real key python-yubico finds, then every virtual key (through USB/IP too).

    Why real keys could not be searched (no libusb, no permission) is appended to
    ``problems`` when given.
    """
    found: list[KeyInfo] = []
    for skip in range(_MAX_KEYS):
        try:
            yk = _find(skip)
        except DeviceError as exc:
            if problems is not None:
                problems.append(str(exc))
            break
        if yk is None:
            break
        key = OtpKey(yk, f"#{skip}")
        try:
            info = key.info()
            info.device = str(info.serial) if info.serial is not None else f"#{skip}"
            found.append(info)
        finally:
            key.close()
    if include_virtual:
        for name in devices.virtual_key_names():
            try:
                with open_key(f"{devices.VIRTUAL_PREFIX}{name}") as vk:
                    found.append(vk.info())
            except DeviceError as exc:  # busy (e.g. held by a test) or broken
                found.append(KeyInfo(device=f"{devices.VIRTUAL_PREFIX}{name}", serial=None,
                                     firmware="?", model=f"unavailable: {exc}", virtual=True,
                                     pgm_seq=0, touch_level=0))
    return found


__all__ = ["open_key", "open_virtual_key", "list_keys", "OtpKey", "KeyInfo", "SlotInfo",
           "WriteRefused", "NoOtpInterface"]
