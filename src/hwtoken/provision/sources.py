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

    Each serial arrives once; keys already plugged in when the run starts arrive first.
    ``count`` ends the run after that many keys; ``idle_timeout`` after that many seconds
    without a new key (None waits forever; Ctrl-C stops).
    """

    def __init__(self, count: int | None = None, *, idle_timeout: float | None = None,
                 poll: float = 0.5,
                 announce: Callable[[str], None] | None = None) -> None:
        self.count = count
        self.idle_timeout = idle_timeout
        self.poll = poll
        self.announce = announce

    def arrivals(self) -> Iterator[Device]:
        seen: set[int] = set()
        last_new = time.monotonic()
        if self.announce:
            self.announce("insert the first key...")
        while self.count is None or len(seen) < self.count:
            fresh = [s for s in list_usb_serials() if s not in seen]
            for serial in fresh:
                seen.add(serial)
                last_new = time.monotonic()
                yield Device(serial, f"usb:{serial}")
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


def list_usb_serials() -> list[int]:
    """Serials of the YubiKeys plugged in now (empty if none or no USB access)."""
    try:
        from ykman.device import list_all_devices
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
        return sorted({info.serial for _, info in list_all_devices() if info.serial})
    except Exception as exc:  # discovery problems are reported, not fatal
        raise DeviceError(f"cannot list USB keys: {exc}") from None


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
        serials = list_usb_serials()
    except DeviceError:
        return None
    return Device(record.serial, f"usb:{record.serial}") if record.serial in serials else None
