"""Finding and opening FIDO keys: real ones over USB HID and virtual ones (``emu:NAME``).

Real keys are found by fido2's own discovery (``fido2.hid.list_descriptors``); virtual keys
are the state files under :func:`hwtoken.paths.keys_dir`. A virtual key is loaded in this
process when it is free, or reached over USB/IP when ``hwtoken emulate serve`` holds it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from fido2.ctap import CtapDevice

from hwtoken import paths
from hwtoken.errors import DeviceError, HwtokenError

EMU_PREFIX = "emu:"


@dataclass(frozen=True)
class KeyEntry:
    """One FIDO key as listed: ``spec`` is what ``--device`` takes to pick it."""

    spec: str
    kind: str  # "usb" (a real key over HID) or "virtual"
    product: str | None = None
    serial: str | None = None
    path: str | None = None
    status: str = "present"  # virtual keys: "free", "served" or "in use"

    def describe(self) -> str:
        """One line for humans."""
        bits = [self.product or ("virtual key" if self.kind == "virtual" else "FIDO key")]
        if self.serial:
            bits.append(f"serial {self.serial}")
        if self.kind == "virtual":
            bits.append(self.status)
        elif self.path and self.path != self.spec:
            bits.append(self.path)
        return ", ".join(bits)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FidoKey:
    """An open key: ``device`` is a ``fido2`` CtapDevice, usable with Ctap2 and Fido2Client."""

    device: CtapDevice
    entry: KeyEntry
    _replug: Callable[[float, Callable[[], None]], CtapDevice] | None = field(
        default=None, repr=False)

    @property
    def can_replug(self) -> bool:
        """True if :meth:`replug` can open the key's power-up window (reset needs it)."""
        return self._replug is not None

    def replug(self, timeout: float = 60.0,
               removed: Callable[[], None] = lambda: None) -> None:
        """Power-cycle the key (virtual) or wait for the user to re-insert it (USB);
        ``removed`` is called once the key is seen gone (before it is back)."""
        if self._replug is None:
            raise DeviceError(f"{self.entry.spec} cannot be re-plugged from here")
        self.device = self._replug(timeout, removed)


# -- listing --------------------------------------------------------------------------------
def _hid_descriptors() -> list[Any]:
    try:
        from fido2.hid import list_descriptors
    except Exception:  # pragma: no cover - platform without HID support
        return []
    try:
        return list(list_descriptors())
    except OSError:
        return []


def _hid_entry(desc: Any) -> KeyEntry:
    path = desc.path.decode() if isinstance(desc.path, bytes) else str(desc.path)
    return KeyEntry(spec=desc.serial_number or path, kind="usb", product=desc.product_name,
                    serial=desc.serial_number, path=path)


def _virtual_entries() -> list[KeyEntry]:
    from hwtoken.emulator.key import VirtualKey, lock_path
    from hwtoken.fileio import is_locked

    entries = []
    kdir = paths.keys_dir()
    if not kdir.is_dir():
        return []
    for path in sorted(kdir.glob("*.key")):
        name = path.name[: -len(".key")]
        serial: str | None = None
        with contextlib.suppress(Exception):
            serial = str(VirtualKey.peek(path).section("identity")["serial"])
        status = "free"
        if is_locked(lock_path(path)):
            status = "served" if _runtime_of(name) is not None else "in use"
        entries.append(KeyEntry(spec=EMU_PREFIX + name, kind="virtual",
                                product="hwtoken virtual YubiKey 5", serial=serial,
                                path=str(path), status=status))
    return entries


def list_keys() -> list[KeyEntry]:
    """Every FIDO key this process can reach: USB HID keys first, then virtual keys."""
    return [_hid_entry(d) for d in _hid_descriptors()] + _virtual_entries()


# -- opening --------------------------------------------------------------------------------
@contextlib.contextmanager
def open_key(spec: str | None = None) -> Iterator[FidoKey]:
    """Open the key ``spec`` (``emu:NAME``, a HID path or a serial); None picks the only key
    present: a USB key or a virtual key a ``hwtoken emulate serve`` serves (one that is
    only a state file counts only when named).

    Raises :class:`InvalidInput` listing the candidates when several keys are present,
    :class:`DeviceError` when none matches. The key is closed (and a virtual key's state
    saved and unlocked) on exit.
    """
    from hwtoken.devices import parse_spec, pick_one

    if parse_spec(spec).raw is None:  # the one key present: USB keys and served virtual keys
        spec = pick_one([_hid_entry(d).spec for d in _hid_descriptors()], what="FIDO key")
    assert spec is not None
    spec = spec.strip()
    if spec.startswith(EMU_PREFIX):
        with _open_virtual(spec[len(EMU_PREFIX):]) as key:
            yield key
    else:
        with _open_hid(spec) as key:
            yield key


@contextlib.contextmanager
def _open_hid(spec: str) -> Iterator[FidoKey]:
    from fido2.hid import CtapHidDevice, open_connection

    def find() -> Any | None:
        for desc in _hid_descriptors():
            entry = _hid_entry(desc)
            if spec in (entry.path, entry.serial):
                return desc
        return None

    desc = find()
    if desc is None:
        raise DeviceError(f"no FIDO key matches {spec!r}; see `hwtoken fido2 list`")
    try:
        device = CtapHidDevice(desc, open_connection(desc))
    except OSError as exc:
        raise DeviceError(f"cannot open {spec}: {exc.strerror or exc} (are the udev rules "
                          "installed? see `hwtoken doctor`)") from None

    def replug(timeout: float, removed: Callable[[], None]) -> CtapDevice:
        nonlocal device
        device.close()
        deadline = time.monotonic() + timeout
        while find() is not None:  # wait for removal
            if time.monotonic() > deadline:
                raise DeviceError("timed out waiting for the key to be removed")
            time.sleep(0.2)
        removed()
        while (new := find()) is None:  # and for re-insertion
            if time.monotonic() > deadline:
                raise DeviceError("timed out waiting for the key to be inserted again")
            time.sleep(0.2)
        device = CtapHidDevice(new, open_connection(new))
        return device

    key = FidoKey(device, _hid_entry(desc), replug)
    try:
        yield key
    finally:
        with contextlib.suppress(Exception):
            key.device.close()


def _runtime_of(name: str) -> dict[str, Any] | None:
    """The runtime document of a running ``hwtoken emulate serve NAME``, if any."""
    from hwtoken.devices import running_serve

    try:
        return running_serve(name)
    except (HwtokenError, OSError, ValueError):
        return None


@contextlib.contextmanager
def _open_virtual(name: str) -> Iterator[FidoKey]:
    """In this process when the key is free; over USB/IP when a serve holds it."""
    from hwtoken.devices import open_virtual
    from hwtoken.emulator import fido_device

    with open_virtual(name) as handle:
        entry = KeyEntry(spec=EMU_PREFIX + name, kind="virtual",
                         product="hwtoken virtual YubiKey 5", path=str(handle.path))
        vkey = handle.key
        if vkey is not None:
            entry = KeyEntry(**{**entry.to_dict(), "serial": str(vkey.serial),
                                "status": "free"})

            def replug(timeout: float, removed: Callable[[], None]) -> CtapDevice:
                with contextlib.suppress(Exception):
                    key.device.close()
                vkey.power_cycle()
                removed()
                return fido_device(vkey)

            key = FidoKey(fido_device(vkey), entry, replug)
        elif handle.usbip is None and handle.pcsc is not None:
            # a serve with PC/SC only: fido2's CtapPcscDevice through pcscd (the NFC path)
            from hwtoken.devices import pcsc_fido_device

            serial = handle.runtime.get("serial")
            entry = KeyEntry(**{**entry.to_dict(), "status": "served",
                                "serial": str(serial) if serial else None})
            key = FidoKey(pcsc_fido_device(name, handle.pcsc[1]), entry)
        elif handle.usbip is None and handle.runtime.get("local"):
            # held by a testbed: inside it the key is the USB device it is plugged in as
            from hwtoken.devices import local_plug, unreachable_local

            local = local_plug(handle.runtime)
            if local is None or not local.get("fido_hidraw"):
                raise DeviceError(unreachable_local(name, handle.runtime))
            with _open_hid(str(local["fido_hidraw"])) as key:
                yield key
            return
        else:
            if handle.usbip is None:
                raise DeviceError(f"virtual key {name!r} is served without USB/IP or PC/SC; "
                                  f"restart `hwtoken emulate serve {name}`")
            from hwtoken.emulator.transports.usbip_fido import open_usbip_fido

            serial = handle.runtime.get("serial")
            entry = KeyEntry(**{**entry.to_dict(), "status": "served",
                                "serial": str(serial) if serial else None})
            endpoint = handle.usbip

            def reimport(timeout: float, removed: Callable[[], None]) -> CtapDevice:
                # A new USB/IP import is a re-insertion: the serve power-cycles the key.
                with contextlib.suppress(Exception):
                    key.device.close()
                removed()
                return open_usbip_fido(*endpoint)

            key = FidoKey(open_usbip_fido(*endpoint), entry, reimport)
        try:
            yield key
        finally:
            with contextlib.suppress(Exception):
                key.device.close()
