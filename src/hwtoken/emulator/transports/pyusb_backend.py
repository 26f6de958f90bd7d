"""A pyusb backend (``usb.backend.IBackend``) that reaches USB/IP-served devices.

``usb.core.find(idVendor=0x1050, backend=UsbipBackend(host, port))`` finds a served
virtual key, reads its descriptors and strings, and its control transfers (HID
SET_REPORT/GET_REPORT feature reports on interface 0, the OTP interface) travel over
USB/IP through the ``usbip`` package's host API.

python-yubico's ``find_yubikey()`` calls ``usb.core.find(find_all=True, idVendor=0x1050)``
without a backend. :func:`use_backend` makes pyusb's default discovery return this
backend inside a ``with`` block, so python-yubico runs unmodified::

    with served(key) as srv, use_backend(UsbipBackend(srv.host, srv.port)):
        yk = yubico.find_yubikey()

Each open device handle is one USB/IP import (one session, like a host attaching);
reading descriptors imports briefly and detaches again. A transfer that times out
drops its session (USB/IP cannot take back a submitted transfer here); the next transfer
on the handle imports again.
"""

from __future__ import annotations

import array
import contextlib
import errno
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import usb.backend
import usb.backend.libusb1
import usb.core
from usbip import Stall, USBError
from usbip import host as usbip_host
from usbip.core import DT_CONFIG, DT_ENDPOINT, DT_INTERFACE, iter_descriptors
from usbip.transport import Transport

from hwtoken.emulator.transports.usbip_unix import no_delay, transport_for

DEFAULT_TIMEOUT_MS = 5000
_NO_TIMEOUT_CAP = 120.0  # seconds: a "no timeout" transfer still ends eventually


@dataclass
class _Alt:
    desc: bytes
    extra: bytes = b""
    endpoints: list[tuple[bytes, bytes]] = field(default_factory=list)  # (desc, extra)


@dataclass
class UsbipDeviceId:
    """pyusb's device identification object for one exported device."""

    busid: str
    busnum: int
    devnum: int
    speed: int
    device_descriptor: bytes = b""
    config_descriptors: list[bytes] = field(default_factory=list)

    def __hash__(self) -> int:
        return hash(self.busid)


class _Handle:
    """An open device: its USB/IP connection (re-imported after a timeout)."""

    def __init__(self, backend: UsbipBackend, dev: UsbipDeviceId) -> None:
        self.backend = backend
        self.dev = dev
        self.conn: usbip_host.Connection | None = None
        self.configuration = 0
        self.lock = threading.Lock()

    def connection(self) -> usbip_host.Connection:
        if self.conn is None:
            self.conn = self.backend._import(self.dev.busid)
            # (re)listed on every import: a handle that reconnects after the backend's
            # close() must be closed by the next close() too, or its session lingers
            self.backend._track(self)
        return self.conn

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _speed_constant(wire_speed: int) -> int:
    # kernel usb_device_speed on the wire -> libusb speed codes pyusb reports
    return {1: 1, 2: 2, 3: 3, 5: 4}.get(wire_speed, 0)


def _parse_config(cfg: bytes) -> list[list[_Alt]]:
    """Interfaces of a configuration descriptor: [interface][altsetting] -> _Alt."""
    interfaces: dict[int, list[_Alt]] = {}
    order: list[int] = []
    current: _Alt | None = None
    for desc in iter_descriptors(cfg, 9):
        dtype = desc[1]
        if dtype == DT_INTERFACE and len(desc) >= 9:
            current = _Alt(bytes(desc))
            if desc[2] not in interfaces:
                interfaces[desc[2]] = []
                order.append(desc[2])
            interfaces[desc[2]].append(current)
        elif dtype == DT_ENDPOINT and current is not None and len(desc) >= 7:
            current.endpoints.append((bytes(desc), b""))
        elif current is not None:
            if current.endpoints:
                d, extra = current.endpoints[-1]
                current.endpoints[-1] = (d, extra + bytes(desc))
            else:
                current.extra += bytes(desc)
    return [interfaces[n] for n in order]


class UsbipBackend(usb.backend.IBackend):
    """pyusb backend for the devices a USB/IP server at ``host:port`` exports (``host``
    may be the path of a serve's Unix socket, :mod:`.usbip_unix`).

    ``busid`` restricts it to one exported device. Call :meth:`close` (or use
    :func:`use_backend` / ``with``) to drop any open sessions.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 3240, *,
                 busid: str | None = None) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.busid = busid
        self._handles: set[_Handle] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"UsbipBackend({self.host!r}, {self.port})"

    # -- USB/IP plumbing -----------------------------------------------------------------------
    def _transport(self) -> Transport:
        return transport_for(self.host, self.port)

    def _import(self, busid: str) -> usbip_host.Connection:
        try:
            sock = self._transport().connect()
        except OSError as exc:
            raise usb.core.USBError(f"cannot reach USB/IP server {self.host}:{self.port}: "
                                    f"{exc}", errno=errno.ENODEV) from None
        no_delay(sock)
        conn = usbip_host.Connection(sock)
        try:
            conn.import_device(busid)
        except (OSError, USBError) as exc:
            conn.close()
            raise usb.core.USBError(f"cannot import USB/IP device {busid}: {exc}",
                                    errno=errno.EBUSY) from None
        return conn

    def _load_descriptors(self, dev: UsbipDeviceId) -> None:
        if dev.device_descriptor:
            return
        conn = self._import(dev.busid)
        try:
            conn.sock.settimeout(DEFAULT_TIMEOUT_MS / 1000)
            dd = bytes(conn.control(0x80, 0x06, 0x0100, 0, 18))
            configs = []
            for index in range(dd[17]):
                head = bytes(conn.control(0x80, 0x06, (DT_CONFIG << 8) | index, 0, 9))
                total = int.from_bytes(head[2:4], "little")
                configs.append(bytes(conn.control(0x80, 0x06, (DT_CONFIG << 8) | index, 0,
                                                  total)))
        except (OSError, USBError) as exc:
            raise usb.core.USBError(f"reading descriptors of {dev.busid} failed: {exc}",
                                    errno=errno.EIO) from None
        finally:
            conn.close()
        dev.device_descriptor = dd
        dev.config_descriptors = configs

    def _track(self, handle: _Handle) -> None:
        with self._lock:
            self._handles.add(handle)

    def close(self) -> None:
        """Close every open session (a handle used again afterwards re-imports)."""
        with self._lock:
            handles, self._handles = list(self._handles), set()
        for h in handles:
            h.drop()

    def _finalize_object(self) -> None:
        self.close()

    def __enter__(self) -> UsbipBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- discovery and descriptors --------------------------------------------------------------
    def enumerate_devices(self) -> Iterator[UsbipDeviceId]:
        try:
            exported = usbip_host.list_devices(self._transport())
        except (OSError, USBError):
            return iter(())
        devs = [UsbipDeviceId(info["busid"], info["busnum"], info["devnum"], info["speed"])
                for info in exported if self.busid is None or info["busid"] == self.busid]
        return iter(devs)

    def get_parent(self, dev: UsbipDeviceId) -> None:
        return None

    def get_device_descriptor(self, dev: UsbipDeviceId) -> Any:
        self._load_descriptors(dev)
        d = dev.device_descriptor
        return SimpleNamespace(
            bLength=d[0], bDescriptorType=d[1], bcdUSB=int.from_bytes(d[2:4], "little"),
            bDeviceClass=d[4], bDeviceSubClass=d[5], bDeviceProtocol=d[6],
            bMaxPacketSize0=d[7], idVendor=int.from_bytes(d[8:10], "little"),
            idProduct=int.from_bytes(d[10:12], "little"),
            bcdDevice=int.from_bytes(d[12:14], "little"), iManufacturer=d[14], iProduct=d[15],
            iSerialNumber=d[16], bNumConfigurations=d[17],
            bus=dev.busnum, address=dev.devnum, port_number=None, port_numbers=None,
            speed=_speed_constant(dev.speed),
        )

    def _config(self, dev: UsbipDeviceId, config: int) -> bytes:
        self._load_descriptors(dev)
        if not 0 <= config < len(dev.config_descriptors):
            raise IndexError(f"invalid configuration index {config}")
        return dev.config_descriptors[config]

    def get_configuration_descriptor(self, dev: UsbipDeviceId, config: int) -> Any:
        c = self._config(dev, config)
        first = next((i for i, d in enumerate(iter_descriptors(c, 9))
                      if d[1] == DT_INTERFACE), None)
        extra = b"".join(bytes(d) for d in list(iter_descriptors(c, 9))[:first or 0])
        return SimpleNamespace(
            bLength=c[0], bDescriptorType=c[1], wTotalLength=int.from_bytes(c[2:4], "little"),
            bNumInterfaces=c[4], bConfigurationValue=c[5], iConfiguration=c[6],
            bmAttributes=c[7], bMaxPower=c[8], extra_descriptors=array.array("B", extra),
        )

    def _alt(self, dev: UsbipDeviceId, intf: int, alt: int, config: int) -> _Alt:
        interfaces = _parse_config(self._config(dev, config))
        if not 0 <= intf < len(interfaces):
            raise IndexError(f"invalid interface index {intf}")
        if not 0 <= alt < len(interfaces[intf]):
            raise IndexError(f"invalid alternate setting index {alt}")
        return interfaces[intf][alt]

    def get_interface_descriptor(self, dev: UsbipDeviceId, intf: int, alt: int,
                                 config: int) -> Any:
        a = self._alt(dev, intf, alt, config)
        d = a.desc
        return SimpleNamespace(
            bLength=d[0], bDescriptorType=d[1], bInterfaceNumber=d[2], bAlternateSetting=d[3],
            bNumEndpoints=d[4], bInterfaceClass=d[5], bInterfaceSubClass=d[6],
            bInterfaceProtocol=d[7], iInterface=d[8],
            extra_descriptors=array.array("B", a.extra),
        )

    def get_endpoint_descriptor(self, dev: UsbipDeviceId, ep: int, intf: int, alt: int,
                                config: int) -> Any:
        a = self._alt(dev, intf, alt, config)
        if not 0 <= ep < len(a.endpoints):
            raise IndexError(f"invalid endpoint index {ep}")
        d, extra = a.endpoints[ep]
        return SimpleNamespace(
            bLength=d[0], bDescriptorType=d[1], bEndpointAddress=d[2], bmAttributes=d[3],
            wMaxPacketSize=int.from_bytes(d[4:6], "little"), bInterval=d[6],
            bRefresh=d[7] if len(d) > 7 else 0, bSynchAddress=d[8] if len(d) > 8 else 0,
            extra_descriptors=array.array("B", extra),
        )

    # -- handles ---------------------------------------------------------------------------------
    def open_device(self, dev: UsbipDeviceId) -> _Handle:
        h = _Handle(self, dev)
        h.connection()
        return h

    def close_device(self, dev_handle: _Handle) -> None:
        dev_handle.drop()
        with self._lock:
            self._handles.discard(dev_handle)

    def set_configuration(self, dev_handle: _Handle, config_value: int) -> None:
        self._run(dev_handle, None, lambda c: c.control(0x00, 0x09, config_value, 0, b""))
        dev_handle.configuration = config_value

    def get_configuration(self, dev_handle: _Handle) -> int:
        return self._run(dev_handle, None,
                         lambda c: bytes(c.control(0x80, 0x08, 0, 0, 1))[0])

    def set_interface_altsetting(self, dev_handle: _Handle, intf: int, altsetting: int) -> None:
        self._run(dev_handle, None, lambda c: c.control(0x01, 0x0B, altsetting, intf, b""))

    def claim_interface(self, dev_handle: _Handle, intf: int) -> None:
        return None  # USB/IP imports the whole device: nothing else can hold an interface

    def release_interface(self, dev_handle: _Handle, intf: int) -> None:
        return None

    def is_kernel_driver_active(self, dev_handle: _Handle, intf: int) -> bool:
        return False

    def detach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        return None

    def attach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        return None

    def reset_device(self, dev_handle: _Handle) -> None:
        dev_handle.drop()  # a new import is the USB/IP equivalent of a port reset

    def clear_halt(self, dev_handle: _Handle, ep: int) -> None:
        self._run(dev_handle, None, lambda c: c.control(0x02, 0x01, 0, ep, b""))

    # -- transfers --------------------------------------------------------------------------------
    def _run(self, h: _Handle, timeout_ms: int | None, op: Any) -> Any:
        seconds = (timeout_ms / 1000) if timeout_ms else _NO_TIMEOUT_CAP
        with h.lock:
            conn = h.connection()
            try:
                conn.sock.settimeout(seconds)
                return op(conn)
            except Stall:
                raise usb.core.USBError("Pipe error", errno=errno.EPIPE) from None
            except TimeoutError:
                h.drop()
                raise usb.core.USBTimeoutError("Operation timed out",
                                               errno=errno.ETIMEDOUT) from None
            except (OSError, USBError) as exc:
                h.drop()
                raise usb.core.USBError(f"USB/IP transfer failed: {exc}",
                                        errno=errno.EIO) from None

    def ctrl_transfer(self, dev_handle: _Handle, bmRequestType: int, bRequest: int,
                      wValue: int, wIndex: int, data: array.array, timeout: int) -> int:
        length = len(data) * data.itemsize
        if bmRequestType & 0x80:
            got = bytes(self._run(dev_handle, timeout, lambda c: c.control(
                bmRequestType, bRequest, wValue, wIndex, length)))[:length]
            _fill(data, got)
            return len(got)
        payload = data.tobytes() if length else b""
        return int(self._run(dev_handle, timeout, lambda c: c.control(
            bmRequestType, bRequest, wValue, wIndex, payload)))

    def _write(self, h: _Handle, ep: int, data: array.array, timeout: int, interval: int) -> int:
        payload = data.tobytes()
        return int(self._run(h, timeout, lambda c: c.transfer_out(ep & 0x0F, payload,
                                                                  interval=interval)))

    def _read(self, h: _Handle, ep: int, buff: array.array, timeout: int, interval: int) -> int:
        length = len(buff) * buff.itemsize
        got = bytes(self._run(h, timeout, lambda c: c.transfer_in(ep & 0x0F, length,
                                                                  interval=interval)))[:length]
        _fill(buff, got)
        return len(got)

    def bulk_write(self, dev_handle: _Handle, ep: int, intf: int, data: array.array,
                   timeout: int) -> int:
        return self._write(dev_handle, ep, data, timeout, 0)

    def bulk_read(self, dev_handle: _Handle, ep: int, intf: int, buff: array.array,
                  timeout: int) -> int:
        return self._read(dev_handle, ep, buff, timeout, 0)

    def intr_write(self, dev_handle: _Handle, ep: int, intf: int, data: array.array,
                   timeout: int) -> int:
        return self._write(dev_handle, ep, data, timeout, 1)

    def intr_read(self, dev_handle: _Handle, ep: int, intf: int, buff: array.array,
                  timeout: int) -> int:
        return self._read(dev_handle, ep, buff, timeout, 1)


def _fill(buff: array.array, data: bytes) -> None:
    view = memoryview(buff).cast("B")
    view[: len(data)] = data


_default_lock = threading.Lock()


@contextlib.contextmanager
def use_backend(backend: usb.backend.IBackend) -> Iterator[usb.backend.IBackend]:
    """Make ``backend`` pyusb's default inside the block.

    ``usb.core.find()`` without ``backend=`` asks ``usb.backend.libusb1.get_backend()``
    first; inside the block that returns ``backend``, so code that cannot be given a
    backend (python-yubico's ``find_yubikey()``) finds the USB/IP devices. The patch is
    process-wide while the block runs; blocks nest and are restored in order.
    """
    with _default_lock:
        saved = usb.backend.libusb1.get_backend

        def get_backend(find_library: Any = None) -> usb.backend.IBackend:
            return backend

        usb.backend.libusb1.get_backend = get_backend  # type: ignore[assignment]
    try:
        yield backend
    finally:
        with _default_lock:
            usb.backend.libusb1.get_backend = saved  # type: ignore[assignment]
