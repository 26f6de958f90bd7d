"""fido2 over USB/IP: a ``CtapHidConnection`` that imports a served key's FIDO interface.

``open_usbip_fido(host, port, busid)`` returns a ``fido2.hid.CtapHidDevice``, so
``Fido2Client``, ``Ctap2`` and ``Ctap1`` work over the network path exactly as over a
local ``/dev/hidraw``. The USB/IP side is the ``usbip`` package's host API. ``host`` may be
the path of a serve's Unix socket (port unused, :mod:`.usbip_unix`).
"""

from __future__ import annotations

import contextlib
import socket

from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor, parse_report_descriptor
from usbip import USBError
from usbip import host as usbip_host
from usbip.core import DT_ENDPOINT, DT_INTERFACE, iter_descriptors

from hwtoken.emulator.transports.usbip_unix import describe, no_delay, transport_for
from hwtoken.errors import DeviceError

READ_TIMEOUT = 120.0  # seconds without any packet before the connection is given up
FIDO_USAGE_PAGE = 0xF1D0


class UsbipCtapHidConnection(CtapHidConnection):
    """64-byte CTAPHID reports over the interrupt endpoints of an imported USB/IP device."""

    def __init__(self, handle: usbip_host.Handle, interface: int, ep_in: int, ep_out: int,
                 packet_size: int = 64) -> None:
        self.handle = handle
        self.interface = interface
        self.ep_in = ep_in
        self.ep_out = ep_out
        self.packet_size = packet_size

    def write_packet(self, data: bytes) -> None:
        try:
            self.handle.interrupt_out(self.ep_out, bytes(data).ljust(self.packet_size, b"\0"))
        except (OSError, USBError) as exc:
            raise OSError(f"USB/IP write failed: {exc}") from exc

    def read_packet(self) -> bytes:
        try:
            data = self.handle.interrupt_in(self.ep_in, self.packet_size)
        except (OSError, USBError) as exc:
            raise OSError(f"USB/IP read failed: {exc}") from exc
        return bytes(data)

    def close(self) -> None:
        self.handle.close()


def _find_fido_interface(handle: usbip_host.Handle) -> tuple[int, int, int, int, int, bytes]:
    """(interface, ep_in, ep_out, size_in, size_out, report descriptor) of the FIDO HID."""
    cfg_head = handle.control(0x80, 0x06, 0x0200, 0, 9)
    total = int.from_bytes(bytes(cfg_head[2:4]), "little")
    cfg = bytes(handle.control(0x80, 0x06, 0x0200, 0, total))
    current: dict[str, int] | None = None
    candidates: list[dict[str, int]] = []
    for desc in iter_descriptors(cfg, 9):
        if desc[1] == DT_INTERFACE and len(desc) >= 9:
            current = {"iface": desc[2], "class": desc[5]}
            candidates.append(current)
        elif desc[1] == DT_ENDPOINT and current is not None and len(desc) >= 7:
            key = "in" if desc[2] & 0x80 else "out"
            current[key] = desc[2]
    for cand in candidates:
        if cand["class"] != 0x03 or "in" not in cand or "out" not in cand:
            continue
        rd = bytes(handle.control(0x81, 0x06, 0x2200, cand["iface"], 512))
        try:
            size_in, size_out = parse_report_descriptor(rd)
        except ValueError:
            continue
        return cand["iface"], cand["in"], cand["out"], size_in, size_out, rd
    raise DeviceError("the USB/IP device has no FIDO HID interface (usage page 0xF1D0)")


def _string(handle: usbip_host.Handle, index: int) -> str | None:
    if not index:
        return None
    try:
        raw = bytes(handle.control(0x80, 0x06, 0x0300 | index, 0x0409, 255))
    except USBError:
        return None
    return raw[2:raw[0]].decode("utf-16-le", errors="replace") if raw else None


def open_usbip_connection(host: str, port: int, busid: str = "1-1", *,
                          timeout: float = READ_TIMEOUT
                          ) -> tuple[UsbipCtapHidConnection, HidDescriptor]:
    """Import ``busid`` from ``host:port`` and return its FIDO connection and descriptor."""
    try:
        handle = usbip_host.open(busid=busid, transport=transport_for(host, port))
    except (OSError, USBError) as exc:
        raise DeviceError(f"cannot import USB/IP device {describe(host, port, busid)}: "
                          f"{exc}") from None
    try:
        sock = handle.conn.sock
        if isinstance(sock, socket.socket):
            sock.settimeout(timeout)
            no_delay(sock)
        iface, ep_in, ep_out, size_in, size_out, _rd = _find_fido_interface(handle)
        dd = handle.device_descriptor
        descriptor = HidDescriptor(
            path=describe(host, port, busid), vid=dd.idVendor, pid=dd.idProduct,
            report_size_in=size_in, report_size_out=size_out,
            product_name=_string(handle, dd.iProduct),
            serial_number=_string(handle, dd.iSerialNumber),
        )
    except BaseException:
        with contextlib.suppress(Exception):
            handle.close()
        raise
    return UsbipCtapHidConnection(handle, iface, ep_in, ep_out, size_out), descriptor


def open_usbip_fido(host: str, port: int, busid: str = "1-1", *,
                    timeout: float = READ_TIMEOUT) -> CtapHidDevice:
    """A ``fido2.hid.CtapHidDevice`` for the key served at ``host:port`` (``busid``)."""
    conn, descriptor = open_usbip_connection(host, port, busid, timeout=timeout)
    try:
        return CtapHidDevice(descriptor, conn)
    except BaseException:
        conn.close()
        raise
