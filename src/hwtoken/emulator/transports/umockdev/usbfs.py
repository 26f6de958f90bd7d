"""``/dev/bus/usb/BBB/DDD`` for a plugged key: Linux usbfs (``drivers/usb/core/devio.c``)
in user space, for libusb and everything built on it (pyusb, python-yubico, libykpers).

Each open file gets its own USB session of the key's device model (like the hidraw nodes)
and speaks the usbfs ioctls of ``linux/usbdevice_fs.h``:

* URBs: ``SUBMITURB`` (control, interrupt, bulk), ``REAPURB``/``REAPURBNDELAY`` (the
  answer is written into the program's URB and buffer at reap time, as the kernel does),
  ``DISCARDURB`` (the URB completes with -ENOENT and must still be reaped); synchronous
  ``CONTROL`` and ``BULK``;
* interfaces and drivers: ``CLAIMINTERFACE``/``RELEASEINTERFACE``, ``GETDRIVER``
  ("usbhid" while the kernel's HID driver owns an interface, "usbfs" once claimed),
  ``IOCTL(DISCONNECT/CONNECT)`` and ``DISCONNECT_CLAIM`` — detaching usbhid removes that
  interface's hidraw node, attaching it makes it again (:class:`Drivers`);
* the rest libusb asks: ``GET_CAPABILITIES``, ``SETCONFIGURATION`` (EBUSY while any
  interface is claimed), ``SETINTERFACE``, ``CLEAR_HALT``, ``RESETEP``, ``RESET``,
  ``CONNECTINFO``/``CONNINFO_EX``/``GET_SPEED`` (a full-speed device), ``DROP_PRIVILEGES``.

libusb waits for completions with ``poll(POLLOUT)``; the open file's pty is writable exactly
while a completed URB waits to be reaped (``tcflow`` stops and starts its output). After
an unplug every call fails with ENODEV and the pty is hung up (POLLERR|POLLHUP), which is
how libusb learns a device is gone.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import struct
import termios
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from usbip import core as usb_core

from hwtoken.emulator.transports.umockdev.node import DeviceNode, NodeOpen
from hwtoken.emulator.transports.umockdev.preload import MAX_TRANSFER, UNHANDLED, Connection
from hwtoken.emulator.transports.umockdev.ptyqueue import Pty

log = logging.getLogger(__name__)

_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
_PTR = struct.calcsize("P")


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("U") << 8) | nr


# linux/usbdevice_fs.h
_URB = struct.Struct("@BBiIPiiiiiIP")  # struct usbdevfs_urb (without iso descriptors)
_F_STATUS, _F_ACTUAL, _F_ERRORS = 2, 6, 9  # type endpoint status flags buffer buffer_length
# actual_length start_frame number_of_packets error_count signr usercontext
_CTRL = struct.Struct("@BBHHHIP")  # struct usbdevfs_ctrltransfer
_BULK = struct.Struct("@IIIP")  # struct usbdevfs_bulktransfer
_IOCTL = struct.Struct("@iiP")  # struct usbdevfs_ioctl
USBDEVFS_CONTROL = _ioc(_IOC_READ | _IOC_WRITE, 0, _CTRL.size)
USBDEVFS_BULK = _ioc(_IOC_READ | _IOC_WRITE, 2, _BULK.size)
USBDEVFS_RESETEP = _ioc(_IOC_READ, 3, 4)
USBDEVFS_SETINTERFACE = _ioc(_IOC_READ, 4, 8)
USBDEVFS_SETCONFIGURATION = _ioc(_IOC_READ, 5, 4)
USBDEVFS_GETDRIVER = _ioc(_IOC_WRITE, 8, 4 + 256)
USBDEVFS_SUBMITURB = _ioc(_IOC_READ, 10, _URB.size)
USBDEVFS_DISCARDURB = _ioc(_IOC_NONE, 11, 0)
USBDEVFS_REAPURB = _ioc(_IOC_WRITE, 12, _PTR)
USBDEVFS_REAPURBNDELAY = _ioc(_IOC_WRITE, 13, _PTR)
USBDEVFS_DISCSIGNAL = _ioc(_IOC_READ, 14, struct.calcsize("@IP"))
USBDEVFS_CLAIMINTERFACE = _ioc(_IOC_READ, 15, 4)
USBDEVFS_RELEASEINTERFACE = _ioc(_IOC_READ, 16, 4)
USBDEVFS_CONNECTINFO = _ioc(_IOC_WRITE, 17, 8)
USBDEVFS_IOCTL = _ioc(_IOC_READ | _IOC_WRITE, 18, _IOCTL.size)
USBDEVFS_RESET = _ioc(_IOC_NONE, 20, 0)
USBDEVFS_CLEAR_HALT = _ioc(_IOC_READ, 21, 4)
USBDEVFS_DISCONNECT = _ioc(_IOC_NONE, 22, 0)
USBDEVFS_CONNECT = _ioc(_IOC_NONE, 23, 0)
USBDEVFS_GET_CAPABILITIES = _ioc(_IOC_READ, 26, 4)
USBDEVFS_DISCONNECT_CLAIM = _ioc(_IOC_READ, 27, 4 + 4 + 256)
USBDEVFS_DROP_PRIVILEGES = _ioc(_IOC_WRITE, 30, 4)
USBDEVFS_GET_SPEED = _ioc(_IOC_NONE, 31, 0)
USBDEVFS_CONNINFO_EX_NR = 32

URB_TYPE_ISO, URB_TYPE_INTERRUPT, URB_TYPE_CONTROL, URB_TYPE_BULK = 0, 1, 2, 3
DISCONNECT_CLAIM_IF_DRIVER, DISCONNECT_CLAIM_EXCEPT_DRIVER = 0x01, 0x02
CAP_ZERO_PACKET, CAP_BULK_CONTINUATION, CAP_NO_PACKET_SIZE_LIM = 0x01, 0x02, 0x04
CAP_REAP_AFTER_DISCONNECT, CAP_DROP_PRIVILEGES = 0x10, 0x40
CAPABILITIES = (CAP_ZERO_PACKET | CAP_BULK_CONTINUATION | CAP_NO_PACKET_SIZE_LIM
                | CAP_DROP_PRIVILEGES)
USB_SPEED_FULL = 2
SETUP_SIZE = 8
DRIVER_USBFS = "usbfs"
_TRANSFER = {URB_TYPE_INTERRUPT: usb_core.INTERRUPT, URB_TYPE_BULK: usb_core.BULK}


class Drivers:
    """Which kernel driver owns each interface of one plugged key, shared by its nodes.

    ``bind``/``unbind`` are the testbed's: they make or remove the interface's hidraw
    node (and announce it) the way binding usbhid does.
    """

    def __init__(self, bound: dict[int, str | None],
                 bind: Callable[[int], None], unbind: Callable[[int], None]) -> None:
        self.bound = dict(bound)  # interface -> "usbhid", "usbfs" or None
        self.claims: dict[int, object] = {}  # interface -> the open file that claimed it
        self._bind, self._unbind = bind, unbind
        self.lock = threading.RLock()
        self.gone = False  # the key was pulled out: no driver binds or lets go any more

    def unplug(self) -> None:
        """The device is gone (set without the lock: an unplug must never wait on it)."""
        self.gone = True

    def driver(self, ifnum: int) -> str | None:
        with self.lock:
            return DRIVER_USBFS if ifnum in self.claims else self.bound.get(ifnum)

    def detach(self, ifnum: int) -> int:
        """USBDEVFS_DISCONNECT: 0, or an errno."""
        with self.lock:
            if self.gone:
                return errno.ENODEV
            if ifnum not in self.bound:
                return errno.EINVAL
            if ifnum in self.claims or self.bound[ifnum] is None:
                return errno.ENODATA
            self.bound[ifnum] = None
            self._unbind(ifnum)
            return 0

    def attach(self, ifnum: int) -> int:
        """USBDEVFS_CONNECT: rebind the interface's kernel driver (usbhid); a negative
        errno, or what the kernel's ``device_attach`` returns (1: a driver bound)."""
        with self.lock:
            if self.gone:
                return -errno.ENODEV  # a kernel cannot bind a driver to a gone device
            if ifnum not in self.bound:
                return -errno.EINVAL
            if ifnum in self.claims:
                return -errno.EBUSY
            if self.bound[ifnum] is None:
                self.bound[ifnum] = "usbhid"
                self._bind(ifnum)
            return 1

    def claim(self, ifnum: int, owner: object) -> int:
        with self.lock:
            if ifnum not in self.bound:
                return errno.ENOENT
            holder = self.claims.get(ifnum)
            if holder is owner:
                return 0
            if holder is not None or self.bound[ifnum] is not None:
                return errno.EBUSY
            self.claims[ifnum] = owner
            return 0

    def release(self, ifnum: int, owner: object) -> int:
        with self.lock:
            if self.claims.get(ifnum) is not owner:
                return errno.EINVAL
            del self.claims[ifnum]
            return 0

    def release_all(self, owner: object) -> None:
        with self.lock:
            for ifnum in [i for i, o in self.claims.items() if o is owner]:
                del self.claims[ifnum]

    def any_claimed(self) -> bool:
        with self.lock:
            return bool(self.claims) or any(d is not None for d in self.bound.values())


@dataclass
class _Submitted:
    """A URB the program submitted: where it lives in the program, and what it asked."""

    user_urb: int
    fields: list[Any]  # the unpacked usbdevfs_urb
    seqnum: int
    is_in: bool
    data_addr: int  # where IN data goes (after the setup packet for control)
    status: int = 0
    data: bytes = b""
    actual: int = 0


class UsbfsNode(DeviceNode["UsbfsOpen"]):
    """The device side of one ``/dev/bus/usb/BBB/DDD``."""

    def __init__(self, usb: Any, description: Any, drivers: Drivers, devnum: int, bus: int,
                 pool: Any) -> None:
        super().__init__(pool)
        self.usb = usb
        self.description = description
        self.drivers = drivers
        self.devnum = devnum
        self.bus = bus

    def make_open(self, conn: Connection, pty: Any) -> UsbfsOpen:
        return UsbfsOpen(self, conn, pty)

    def unreaped(self) -> bool:
        """A program has a completed URB (an answer) it has not reaped yet."""
        with self._lock:
            opens = list(self._opens)
        return any(f.unreaped for f in opens)


class UsbfsOpen(NodeOpen):
    """One open file of a usbfs node: its own USB session, URBs and pty."""

    def __init__(self, node: UsbfsNode, conn: Connection, pty: Pty) -> None:
        super().__init__(conn)
        self.node = node
        self.pty = pty
        self._cond = threading.Condition()
        self._pending: dict[int, _Submitted] = {}  # seqnum -> parked URB
        self._done: deque[_Submitted] = deque()
        self._seq = 0
        self._gone = False
        self._closed = False
        termios.tcflow(pty.slave, termios.TCOOFF)  # nothing to reap: not writable
        self.session = node.usb.open_session()
        self.device = self.session.device

    # -- readiness -------------------------------------------------------------------------
    @property
    def unreaped(self) -> bool:
        with self._cond:
            return bool(self._done)

    def _ready(self) -> None:
        """Call with the lock held: POLLOUT while a URB waits to be reaped."""
        with contextlib.suppress(OSError, termios.error):
            termios.tcflow(self.pty.slave, termios.TCOON if self._done else termios.TCOOFF)

    def _complete(self, item: _Submitted) -> None:
        with self._cond:
            self._pending.pop(item.seqnum, None)
            if self._closed:
                return
            self._done.append(item)
            self._ready()
            self._cond.notify_all()

    # -- file operations ---------------------------------------------------------------------
    def read(self, addr: int, count: int) -> None:
        # reading a usbfs node gives its descriptors (libusb uses sysfs; tools like lsusb
        # read the node)
        if self._gone:
            self.conn.fail(errno.ENODEV)
            return
        data = self.node.description.descriptors[:max(0, count)]
        self.conn.write_mem_and_done(addr, data, len(data))

    def write(self, addr: int, count: int) -> None:
        self.conn.fail(errno.EINVAL)

    def ioctl(self, request: int, arg: int) -> None:
        if request in (0x5421, 0x5452, 0x5451, 0x5450):  # FIONBIO, FIOASYNC, FIOCLEX, FIONCLEX
            self.conn.done(UNHANDLED)
            return
        if self._gone and request != USBDEVFS_RELEASEINTERFACE:
            self.conn.fail(errno.ENODEV)
            return
        handler = self._HANDLERS.get(request)
        if handler is None and (request >> 8) & 0xFF == ord("U") \
                and request & 0xFF == USBDEVFS_CONNINFO_EX_NR:
            handler = UsbfsOpen._conninfo_ex
        if handler is None:
            self.conn.fail(errno.ENOTTY)
            return
        handler(self, request, arg)

    # -- interfaces and drivers ------------------------------------------------------------------
    def _int_arg(self, arg: int) -> int:
        return int(struct.unpack("I", self.conn.read_mem(arg, 4))[0])

    def _claim(self, request: int, arg: int) -> None:
        err = self.node.drivers.claim(self._int_arg(arg), self)
        self.conn.done(0) if not err else self.conn.fail(err)

    def _release(self, request: int, arg: int) -> None:
        err = self.node.drivers.release(self._int_arg(arg), self)
        self.conn.done(0) if not err else self.conn.fail(err)

    def _getdriver(self, request: int, arg: int) -> None:
        driver = self.node.drivers.driver(self._int_arg(arg))
        if driver is None:
            self.conn.fail(errno.ENODATA)
            return
        self.conn.write_mem_and_done(arg + 4, driver.encode() + b"\0", 0)

    def _usbdevfs_ioctl(self, request: int, arg: int) -> None:
        ifnum, code, _data = _IOCTL.unpack(self.conn.read_mem(arg, _IOCTL.size))
        code &= 0xFFFFFFFF
        if code == USBDEVFS_DISCONNECT:
            err = self.node.drivers.detach(ifnum)
            self.conn.done(0) if not err else self.conn.fail(err)
        elif code == USBDEVFS_CONNECT:
            res = self.node.drivers.attach(ifnum)
            self.conn.done(res) if res >= 0 else self.conn.fail(-res)
        else:
            self.conn.fail(errno.ENOTTY)

    def _disconnect_claim(self, request: int, arg: int) -> None:
        raw = self.conn.read_mem(arg, 4 + 4 + 256)
        ifnum, flags = struct.unpack_from("II", raw)
        name = raw[8:].split(b"\0", 1)[0].decode(errors="replace")
        drivers = self.node.drivers
        with drivers.lock:
            current = drivers.driver(ifnum)
            skip = ((flags & DISCONNECT_CLAIM_IF_DRIVER and current != name)
                    or (flags & DISCONNECT_CLAIM_EXCEPT_DRIVER and current == name))
            if current not in (None, DRIVER_USBFS) and not skip:
                drivers.detach(ifnum)
            err = drivers.claim(ifnum, self)
        self.conn.done(0) if not err else self.conn.fail(err)

    def _setconfiguration(self, request: int, arg: int) -> None:
        value = self._int_arg(arg)
        if self.node.drivers.any_claimed():
            self.conn.fail(errno.EBUSY)  # devio.c: an interface is claimed
            return
        if value not in (self.node.description.config_value, 0xFFFFFFFF):
            self.conn.fail(errno.EINVAL)
            return
        self._control_now(0x00, 0x09, value & 0xFF, 0, b"")
        self.conn.done(0)

    def _setinterface(self, request: int, arg: int) -> None:
        ifnum, alt = struct.unpack("II", self.conn.read_mem(arg, 8))
        if self.node.drivers.claims.get(ifnum) is not self or alt != 0:
            self.conn.fail(errno.EINVAL)
        else:
            self.conn.done(0)

    def _ok_with_int(self, request: int, arg: int) -> None:
        self._int_arg(arg)
        self.conn.done(0)

    def _reset(self, request: int, arg: int) -> None:
        self._control_now(0x00, 0x09, self.node.description.config_value, 0, b"")
        self.conn.done(0)

    def _connectinfo(self, request: int, arg: int) -> None:
        self.conn.write_mem_and_done(arg, struct.pack("IB3x", self.node.devnum, 0), 0)

    def _conninfo_ex(self, request: int, arg: int) -> None:
        size = (request >> 16) & 0x3FFF
        info = struct.pack("IIIIB7s", 20, self.node.bus, self.node.devnum, USB_SPEED_FULL,
                           1, bytes([1]) + bytes(6))[:size]
        self.conn.write_mem_and_done(arg, info, 0)

    def _get_speed(self, request: int, arg: int) -> None:
        self.conn.done(USB_SPEED_FULL)

    def _capabilities(self, request: int, arg: int) -> None:
        self.conn.write_mem_and_done(arg, struct.pack("I", CAPABILITIES), 0)

    # -- URBs --------------------------------------------------------------------------------
    def _control_now(self, request_type: int, request: int, value: int, index: int,
                     data: bytes | int) -> Any:
        is_in = bool(request_type & 0x80)
        length = int(data) if is_in else len(bytes(data))
        urb = usb_core.Urb(direction=usb_core.IN if is_in else usb_core.OUT, ep=0,
                           length=length,
                           setup=struct.pack("<BBHHH", request_type, request, value, index,
                                             length),
                           buffer=b"" if is_in else bytes(data))
        return self.device.handle_urb(urb)

    def _ifnum_of_endpoint(self, address: int) -> int | None:
        for iface in self.node.description.interfaces:
            if any(ep.address == address for ep in iface.endpoints):
                return iface.number
        return None

    def _check_claimed(self, ifnum: int | None) -> int:
        """devio.c ``checkintf``: use needs a claim; an unclaimed free interface is
        claimed on first use, one owned by a kernel driver is EBUSY... reported as -ENOENT
        by the kernel for endpoints of no interface."""
        if ifnum is None:
            return errno.ENOENT
        return self.node.drivers.claim(ifnum, self)

    def _submit(self, request: int, arg: int) -> None:
        fields = list(_URB.unpack(self.conn.read_mem(arg, _URB.size)))
        utype, endpoint, _status, _flags, buf, buflen = fields[:6]
        if buflen < 0 or buflen > MAX_TRANSFER:
            self.conn.fail(errno.EINVAL)
            return
        with self._cond:
            self._seq += 1
            seq = self._seq
        if utype == URB_TYPE_CONTROL:
            if buflen < SETUP_SIZE:
                self.conn.fail(errno.EINVAL)
                return
            setup = self.conn.read_mem(buf, SETUP_SIZE)
            rtype, req, value, index, wlength = struct.unpack("<BBHHH", setup)
            if SETUP_SIZE + wlength > buflen:
                self.conn.fail(errno.EINVAL)
                return
            recipient = rtype & 0x1F
            if recipient == 1:  # interface: must be ours (devio.c check_ctrlrecip)
                err = self._check_claimed(index & 0xFF)
                if err:
                    self.conn.fail(err)
                    return
            is_in = bool(rtype & 0x80)
            out = b"" if is_in else self.conn.read_mem(buf + SETUP_SIZE, wlength)
            self.conn.done(0)  # submitted; the program reaps the answer
            item = _Submitted(arg, fields, seq, is_in, buf + SETUP_SIZE)
            urb = usb_core.Urb(direction=usb_core.IN if is_in else usb_core.OUT, ep=0,
                               length=wlength, setup=setup, buffer=out, seqnum=seq)
            result = self.device.handle_urb(urb)
            item.status = result.status if result is not None else -errno.EPIPE
            item.data = bytes(result.buffer[:wlength]) if is_in and result is not None \
                else b""
            item.actual = len(item.data) if is_in else (wlength if not item.status else 0)
            self._complete(item)
            return
        if utype not in _TRANSFER:
            self.conn.fail(errno.EINVAL)  # iso: the key has no isochronous endpoints
            return
        ifnum = self._ifnum_of_endpoint(endpoint)
        err = self._check_claimed(ifnum)
        if err:
            self.conn.fail(err)
            return
        is_in = bool(endpoint & 0x80)
        out = b"" if is_in else self.conn.read_mem(buf, buflen)
        item = _Submitted(arg, fields, seq, is_in, buf)
        with self._cond:
            self._pending[seq] = item
        self.conn.done(0)
        urb = usb_core.Urb(direction=usb_core.IN if is_in else usb_core.OUT,
                           ep=endpoint & 0x0F, length=buflen, buffer=out, seqnum=seq)

        def respond(done: Any) -> None:
            self._finish(item, done)

        result = self.device.handle_urb(urb, respond=respond if is_in else None)
        if result is not None:
            self._finish(item, result)

    def _finish(self, item: _Submitted, urb: Any) -> None:
        item.status = int(urb.status)
        if item.is_in:
            item.data = bytes(urb.buffer[:urb.actual])
            item.actual = len(item.data)
        else:
            item.actual = int(urb.actual) if not urb.status else 0
        self._complete(item)

    def _reap(self, request: int, arg: int) -> None:
        block = request == USBDEVFS_REAPURB
        with self._cond:
            while not self._done:
                if self._gone:
                    break
                if not block:
                    break
                self._cond.wait(0.5)
            item = self._done.popleft() if self._done else None
            self._ready()
        if item is None:
            self.conn.fail(errno.ENODEV if self._gone else errno.EAGAIN)
            return
        fields = list(item.fields)
        fields[_F_STATUS] = item.status
        fields[_F_ACTUAL] = item.actual
        fields[_F_ERRORS] = 0
        writes = [(item.user_urb, _URB.pack(*fields)),
                  (arg, struct.pack("P", item.user_urb))]
        if item.is_in and item.data:
            writes.insert(0, (item.data_addr, item.data))
        self.conn.write_mems_and_done(writes, 0)

    def _discard(self, request: int, arg: int) -> None:
        with self._cond:
            item = next((i for i in self._pending.values() if i.user_urb == arg), None)
        if item is None:
            self.conn.fail(errno.EINVAL)
            return
        self.device.cancel_urb(item.seqnum)
        item.status, item.data, item.actual = -errno.ENOENT, b"", 0
        self._complete(item)
        self.conn.done(0)

    def _control_sync(self, request: int, arg: int) -> None:
        rtype, req, value, index, length, _timeout, data_ptr = _CTRL.unpack(
            self.conn.read_mem(arg, _CTRL.size))
        if rtype & 0x1F == 1:
            err = self._check_claimed(index & 0xFF)
            if err:
                self.conn.fail(err)
                return
        is_in = bool(rtype & 0x80)
        data = length if is_in else self.conn.read_mem(data_ptr, length)
        result = self._control_now(rtype, req, value, index, data)
        if result is None or result.status:
            self.conn.fail(errno.EPIPE)
            return
        if is_in:
            got = bytes(result.buffer[:length])
            self.conn.write_mem_and_done(data_ptr, got, len(got))
        else:
            self.conn.done(length)

    def _bulk_sync(self, request: int, arg: int) -> None:
        ep, length, timeout_ms, data_ptr = _BULK.unpack(self.conn.read_mem(arg, _BULK.size))
        err = self._check_claimed(self._ifnum_of_endpoint(ep & 0xFF))
        if err:
            self.conn.fail(err)
            return
        is_in = bool(ep & 0x80)
        out = b"" if is_in else self.conn.read_mem(data_ptr, length)
        done = threading.Event()
        box: list[Any] = []

        def respond(urb: Any) -> None:
            box.append(urb)
            done.set()

        with self._cond:
            self._seq += 1
            seq = self._seq
        urb = usb_core.Urb(direction=usb_core.IN if is_in else usb_core.OUT, ep=ep & 0x0F,
                           length=length, buffer=out, seqnum=seq)
        result = self.device.handle_urb(urb, respond=respond if is_in else None)
        if result is None:
            if not done.wait(timeout_ms / 1000 if timeout_ms else None):
                self.device.cancel_urb(seq)
                self.conn.fail(errno.ETIMEDOUT)
                return
            result = box[0]
        if result.status:
            self.conn.fail(errno.EPIPE)
        elif is_in:
            got = bytes(result.buffer[:result.actual])
            self.conn.write_mem_and_done(data_ptr, got, len(got))
        else:
            self.conn.done(length)

    _HANDLERS: dict[int, Callable[[UsbfsOpen, int, int], None]] = {}

    # -- lifecycle --------------------------------------------------------------------------
    def gone(self) -> None:
        """The device was unplugged: pending URBs end, every call fails with ENODEV, and a
        poll() sees POLLERR|POLLHUP (the pty is hung up)."""
        with self._cond:
            self._gone = True
            pending, self._pending = list(self._pending.values()), {}
            self._done.clear()
            self._cond.notify_all()
        for item in pending:
            with contextlib.suppress(Exception):
                self.device.cancel_urb(item.seqnum)
        self.pty.hang_up()  # poll() reports POLLERR|POLLHUP

    def closed(self) -> None:
        with self._cond:
            self._closed = True
            pending, self._pending = list(self._pending.values()), {}
            self._done.clear()
        for item in pending:
            with contextlib.suppress(Exception):
                self.device.cancel_urb(item.seqnum)
        self.node.drivers.release_all(self)
        self.node.forget(self)
        try:
            self.node.usb.close_session(self.session)
        finally:
            self.pty.close()
            self.node.pool.release(self.pty)


UsbfsOpen._HANDLERS = {
    USBDEVFS_CLAIMINTERFACE: UsbfsOpen._claim,
    USBDEVFS_RELEASEINTERFACE: UsbfsOpen._release,
    USBDEVFS_GETDRIVER: UsbfsOpen._getdriver,
    USBDEVFS_IOCTL: UsbfsOpen._usbdevfs_ioctl,
    USBDEVFS_DISCONNECT_CLAIM: UsbfsOpen._disconnect_claim,
    USBDEVFS_SETCONFIGURATION: UsbfsOpen._setconfiguration,
    USBDEVFS_SETINTERFACE: UsbfsOpen._setinterface,
    USBDEVFS_CLEAR_HALT: UsbfsOpen._ok_with_int,
    USBDEVFS_RESETEP: UsbfsOpen._ok_with_int,
    USBDEVFS_DROP_PRIVILEGES: UsbfsOpen._ok_with_int,
    USBDEVFS_RESET: UsbfsOpen._reset,
    USBDEVFS_CONNECTINFO: UsbfsOpen._connectinfo,
    USBDEVFS_GET_SPEED: UsbfsOpen._get_speed,
    USBDEVFS_GET_CAPABILITIES: UsbfsOpen._capabilities,
    USBDEVFS_SUBMITURB: UsbfsOpen._submit,
    USBDEVFS_REAPURB: UsbfsOpen._reap,
    USBDEVFS_REAPURBNDELAY: UsbfsOpen._reap,
    USBDEVFS_DISCARDURB: UsbfsOpen._discard,
    USBDEVFS_CONTROL: UsbfsOpen._control_sync,
    USBDEVFS_BULK: UsbfsOpen._bulk_sync,
}
