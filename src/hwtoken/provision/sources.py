"""Where keys come from: a pool of virtual keys (rehearsal, tests) or real keys plugged in."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from hwtoken import paths
from hwtoken.errors import DeviceBusy, DeviceError, InvalidInput
from hwtoken.provision.model import Record
from hwtoken.provision.protocol import Device

VIRTUAL_PREFIX = "prov"
CREATE_WAIT = 10.0


def pool_name(index: int, prefix: str = VIRTUAL_PREFIX) -> str:
    """Name of the ``index``-th (1-based) virtual key of a pool: ``prov-0001``..."""
    return f"{prefix}-{index:04d}"


def virtual_serial(name: str) -> int | None:
    """Serial of virtual key ``name`` read without locking it, or None if it does not exist."""
    from hwtoken.emulator.key import VirtualKey

    path = paths.virtual_key_path(name)
    if not path.exists():
        return None
    return int(VirtualKey.peek(path).section("identity")["serial"])


def virtual_model(name: str) -> str | None:
    """The model virtual key ``name`` is (its profile's), or None if it does not exist."""
    from hwtoken.emulator.key import VirtualKey
    from hwtoken.emulator.profiles import DEFAULT_PROFILE, get_profile

    path = paths.virtual_key_path(name)
    if not path.exists():
        return None
    identity = VirtualKey.peek(path).section("identity")
    return get_profile(str(identity.get("profile", DEFAULT_PROFILE))).model


def ensure_virtual(name: str) -> int:
    """Create virtual key ``name`` unless it exists (another station may create it at the
    same moment: then wait for its file) and return its serial."""
    from hwtoken.emulator.key import VirtualKey

    path = paths.virtual_key_path(name)
    if not path.exists():
        with contextlib.suppress(InvalidInput, DeviceBusy):  # someone else created it
            VirtualKey.create(path).close()
    deadline = time.monotonic() + CREATE_WAIT
    while True:
        serial = None
        with contextlib.suppress(InvalidInput):  # atomic writes: should not happen; retry
            serial = virtual_serial(name)
        if serial is not None:
            return serial
        if time.monotonic() > deadline:
            raise DeviceError(f"virtual key {name} did not appear in {path.parent}")
        time.sleep(0.05)


class VirtualPool:
    """``--virtual N``: the keys ``prov-0001`` .. ``prov-NNNN`` in the state directory.

    Missing keys are created; each key "arrives" once, in order. Several stations sharing
    one state directory and one inventory see the same pool, so they compete for the
    same keys -- exactly what the inventory's claims must settle.
    """

    def __init__(self, count: int, prefix: str = VIRTUAL_PREFIX) -> None:
        if count < 1:
            raise InvalidInput("--virtual needs a positive number of keys")
        self.count = count
        self.prefix = prefix

    def arrivals(self) -> Iterator[Device]:
        for i in range(1, self.count + 1):
            name = pool_name(i, self.prefix)
            yield Device(ensure_virtual(name), f"emu:{name}")

    def present(self, record: Record) -> Device | None:
        return present(record)


class UsbKeys:
    """Real YubiKeys as they are plugged in, found by serial (yubikit's USB discovery).

    Each serial arrives once; keys already plugged in when the run starts arrive first. A
    key that shows no serial number arrives too (``serial`` None, once per plug), so the
    station can say it cannot take it. ``count`` ends the run after that many keys with a
    serial; ``idle_timeout`` after that many seconds without a new key (None waits
    forever; Ctrl-C stops).
    """

    def __init__(self, count: int | None = None, *, idle_timeout: float | None = None,
                 poll: float = 0.5,
                 announce: Callable[[str], None] | None = None) -> None:
        self.count = count
        self.idle_timeout = idle_timeout
        self.poll = poll
        self.announce = announce

    def arrivals(self) -> Iterator[Device]:
        seen: set[object] = set()  # serials, or discovery's fingerprint of a key without one
        taken = 0
        last_new = time.monotonic()
        if self.announce:
            self.announce("insert the first key...")
        while self.count is None or taken < self.count:
            fresh = [(ident, d) for ident, d in list_usb_keys() if ident not in seen]
            for ident, device in fresh:
                seen.add(ident)
                last_new = time.monotonic()
                taken += device.serial is not None
                yield device
                if self.announce:
                    self.announce("remove it and insert the next key...")
            if self.idle_timeout is not None and time.monotonic() - last_new > self.idle_timeout:
                return
            time.sleep(self.poll)

    def present(self, record: Record) -> Device | None:
        return present(record)


class RecordedKeys:
    """For ``resume``: no new arrivals; finds each recorded key where its record says."""

    def arrivals(self) -> Iterator[Device]:
        return iter(())

    def present(self, record: Record) -> Device | None:
        return present(record)


def list_usb_keys() -> list[tuple[object, Device]]:
    """The YubiKeys plugged in now, each with what identifies it between two looks (its
    serial, or discovery's fingerprint for a key that shows none); empty if none or no USB
    access."""
    try:
        from ykman.device import list_all_devices
        from yubikit.core import USB_INTERFACE
        from yubikit.support import get_name
    except ImportError:  # pragma: no cover - extras missing
        raise DeviceError("real keys need yubikey-manager: pip install 'hwtoken[pcsc]'") from None
    # ykman logs a traceback for each transport it cannot list (no pcscd, no USB access);
    # with no logging set up, Python would print them to stderr on every poll. A
    # NullHandler keeps them out of the station's terminal; configured logging still
    # receives them.
    for name in ("ykman", "yubikit"):
        lg = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in lg.handlers):
            lg.addHandler(logging.NullHandler())
    try:
        found = list_all_devices()
    except Exception as exc:  # discovery problems are reported, not fatal
        raise DeviceError(f"cannot list USB keys: {exc}") from None
    out: dict[object, Device] = {}
    for dev, info in found:
        interfaces = None
        if dev.pid is not None:
            interfaces = frozenset(i.name.lower() for i in USB_INTERFACE
                                   if dev.pid.usb_interfaces & i)
        try:
            model = get_name(info, dev.pid.yubikey_type if dev.pid is not None else None)
        except Exception:  # noqa: BLE001 - a name is a courtesy
            model = "YubiKey"
        serial = info.serial or None
        ident: object = serial if serial is not None else ("fingerprint", dev.fingerprint)
        out[ident] = Device(serial, f"usb:{serial}" if serial else _path_of(dev), model=model,
                            interfaces=interfaces)
    return sorted(out.items(), key=lambda item: (item[1].serial is None, item[1].serial or 0))


def _path_of(dev: object) -> str:
    """Where discovery found a key without a serial: its device path (ykman's fingerprint
    of a HID device, ``/dev/hidraw3``), or ``usb``."""
    fingerprint = getattr(dev, "fingerprint", None)
    return fingerprint if isinstance(fingerprint, str) and fingerprint.startswith("/") \
        else "usb"


def list_usb_serials() -> list[int]:
    """Serials of the YubiKeys plugged in now (empty if none or no USB access)."""
    return [d.serial for _, d in list_usb_keys() if d.serial is not None]


def present(record: Record) -> Device | None:
    """The key of ``record`` if it is present now (virtual: its state file exists)."""
    spec = record.device
    if spec.startswith("emu:"):
        try:
            serial = virtual_serial(spec[4:])
        except InvalidInput:
            return None
        return Device(record.serial, spec) if serial == record.serial else None
    try:
        keys = list_usb_keys()
    except DeviceError:
        return None
    return next((d for _, d in keys if d.serial == record.serial), None)
