"""``/dev/hidrawN`` for one HID interface of the virtual key: Linux usbhid + hidraw in user space.

What the kernel does between a USB HID interface and a hidraw file, done here on the key's
USB device model (:mod:`hwtoken.emulator.usb`), for every program that opens the node
under umockdev:

* each open gets its own USB session of the model (its own CTAPHID engine), the way every
  opener of a real hidraw node gets every input report and keeps its own CTAPHID channel;
* an interrupt IN URB is kept outstanding on the interface's IN endpoint (usbhid's
  ``hid_irq_in``); every report it returns goes into the open file's
  :class:`~.ptyqueue.PtyReportQueue`, from which ``read()`` takes one report per call;
* ``write()`` (report ID byte first, 0 when the device numbers none) becomes an interrupt
  OUT URB, or a SET_REPORT(Output) control request where the interface has no OUT
  endpoint (``usbhid_output_report`` / ``usbhid_set_raw_report``);
* the ``HIDIOC*`` ioctls of ``linux/hidraw.h`` answer from the enumerated descriptors
  (``HIDIOCGRDESC``, ``HIDIOCGRAWINFO``, ``HIDIOCGRAWNAME`` ...) or become GET_REPORT /
  SET_REPORT control requests (``HIDIOCGFEATURE`` ...), with the kernel's report-ID rules;
* other ioctls fail with ENOTTY (so ``isatty()`` is false, as on hidraw), except the
  generic file ones (``FIONBIO``...), which the program performs on the real file.
"""

from __future__ import annotations

import errno
import logging
import struct
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from usbip import core as usb_core

from hwtoken.emulator.transports.umockdev import enumeration
from hwtoken.emulator.transports.umockdev.node import DeviceNode, NodeOpen
from hwtoken.emulator.transports.umockdev.preload import UNHANDLED, Connection
from hwtoken.emulator.transports.umockdev.ptyqueue import PtyPool, PtyReportQueue, Watcher

log = logging.getLogger(__name__)

# linux/hidraw.h (type 'H')
_IOC_WRITE, _IOC_READ = 1, 2
HID_MAX_DESCRIPTOR_SIZE = 4096
HID_MAX_BUFFER_SIZE = 16384
BUS_USB = 0x03
HIDIOCGRDESCSIZE = 0x01
HIDIOCGRDESC = 0x02
HIDIOCGRAWINFO = 0x03
HIDIOCGRAWNAME = 0x04
HIDIOCGRAWPHYS = 0x05
HIDIOCSFEATURE = 0x06
HIDIOCGFEATURE = 0x07
HIDIOCGRAWUNIQ = 0x08
HIDIOCSINPUT = 0x09
HIDIOCGINPUT = 0x0A
HIDIOCSOUTPUT = 0x0B
HIDIOCGOUTPUT = 0x0C
# generic file ioctls the program must perform on the real file (fs/ioctl.c)
FIOCLEX, FIONCLEX, FIONBIO, FIOASYNC = 0x5451, 0x5450, 0x5421, 0x5452
_FILE_IOCTLS = {FIOCLEX, FIONCLEX, FIONBIO, FIOASYNC}

HID_REQ_GET_REPORT, HID_REQ_SET_REPORT = 0x01, 0x09
HID_INPUT_REPORT, HID_OUTPUT_REPORT, HID_FEATURE_REPORT = 1, 2, 3
_GET_SET = {
    HIDIOCSFEATURE: (HID_REQ_SET_REPORT, HID_FEATURE_REPORT),
    HIDIOCGFEATURE: (HID_REQ_GET_REPORT, HID_FEATURE_REPORT),
    HIDIOCSINPUT: (HID_REQ_SET_REPORT, HID_INPUT_REPORT),
    HIDIOCGINPUT: (HID_REQ_GET_REPORT, HID_INPUT_REPORT),
    HIDIOCSOUTPUT: (HID_REQ_SET_REPORT, HID_OUTPUT_REPORT),
    HIDIOCGOUTPUT: (HID_REQ_GET_REPORT, HID_OUTPUT_REPORT),
}
READ_MODES = ("auto", "emulated", "pty")


def ioc(direction: int, nr: int, size: int) -> int:
    """An ioctl request number of type 'H' (asm-generic _IOC)."""
    return (direction << 30) | (size << 16) | (ord("H") << 8) | nr


class UsbSessions(Protocol):
    """What a hidraw node needs from the key's USB device model."""

    def open_session(self) -> Any: ...
    def close_session(self, session: Any) -> None: ...


@dataclass
class HidDevice:
    """One HID interface of a plugged key as the kernel's hid core sees it."""

    interface: enumeration.Interface
    description: enumeration.UsbDescription
    name: str  # HID_NAME
    phys: str  # HID_PHYS
    uniq: str  # HID_UNIQ

    @property
    def report_descriptor(self) -> bytes:
        return self.interface.report_descriptor

    @property
    def sizes(self) -> dict[str, int]:
        return enumeration.report_sizes(self.report_descriptor)


class HidrawNode(DeviceNode["HidrawOpen"]):
    """The device side of one ``/dev/hidrawN``: what every open of it is served by."""

    def __init__(self, hid: HidDevice, usb: UsbSessions, pool: PtyPool, watcher: Watcher,
                 *, reads: str = "auto") -> None:
        if reads not in READ_MODES:
            raise ValueError(f"reads must be one of {READ_MODES}")
        super().__init__(pool)
        self.hid = hid
        self.usb = usb
        self.watcher = watcher
        self.reads = reads

    def make_open(self, conn: Connection, pty: Any) -> HidrawOpen:
        return HidrawOpen(self, conn, PtyReportQueue(pty, self.watcher))


class HidrawOpen(NodeOpen):
    """One open file of a hidraw node: its own USB session, reports and pty."""

    def __init__(self, node: HidrawNode, conn: Connection, queue: PtyReportQueue) -> None:
        super().__init__(conn)
        self.node = node
        self.hid = node.hid
        self.iface = node.hid.interface
        self.queue = queue
        self._gone = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self.session = node.usb.open_session()
        self.device = self.session.device
        self._in = self.iface.endpoint(is_in=True)
        self._out = self.iface.endpoint(is_in=False)
        self._seq = 0
        if self._in is not None:
            self._submit_in()

    # -- usbhid's interrupt IN URB --------------------------------------------------------
    def _submit_in(self) -> None:
        assert self._in is not None
        while True:
            with self._lock:
                if self._closed or self._gone.is_set():
                    return
                self._seq += 1
                urb = usb_core.Urb(direction=usb_core.IN, ep=self._in.number,
                                   length=self._in.max_packet, seqnum=self._seq)
            done = self.device.handle_urb(urb, respond=self._in_done)
            if done is None:
                return  # parked until the device has a report
            if not self._deliver(done):
                return

    def _in_done(self, urb: Any) -> None:
        if self._deliver(urb):
            self._submit_in()

    def _deliver(self, urb: Any) -> bool:
        if urb.status or self._closed:
            return False
        data = bytes(urb.buffer[:urb.actual])
        if data:  # with numbered reports the ID is the data's first byte, as on hidraw
            self.queue.put(data)
        return True

    # -- file operations --------------------------------------------------------------------
    def read(self, addr: int, count: int) -> None:
        if self._gone.is_set():
            self.conn.fail(errno.ENODEV)
            return
        report = None if self.node.reads == "pty" else self.queue.take()
        if report is None:
            if self.node.reads == "emulated":
                self._read_in_call()
            else:
                self.conn.done(UNHANDLED)  # the program reads its pty itself, unlocked
            return
        data = report[:max(0, count)]
        self.conn.write_mem_and_done(addr, data, len(data))

    def _read_in_call(self) -> None:
        """``--reads emulated`` with nothing queued: the program reads its pty while its
        call stays open (so umockdev's lock on the file stays held): a blocking file waits
        for the next report's copy, a non-blocking one gets EAGAIN."""
        self.queue.begin_run()
        res = -1
        try:
            res, err = self.conn.run()
        finally:
            self.queue.end_run(res)
        if self._gone.is_set():
            self.conn.fail(errno.ENODEV)
        elif res < 0:
            self.conn.fail(err or errno.EIO)
        else:
            self.conn.done(res)

    def write(self, addr: int, count: int) -> None:
        if self._gone.is_set():
            self.conn.fail(errno.ENODEV)
            return
        if count > HID_MAX_BUFFER_SIZE or count < 2:  # hidraw_send_report's limits
            self.conn.fail(errno.EINVAL)
            return
        # the program's write returns at once (one exchange): like a USB interrupt OUT
        # transfer, the report is taken and delivered to the device after it
        buf = self.conn.read_mem_and_done(addr, count, count)
        payload = buf[1:] if buf[0] == 0 else buf
        try:
            if self._out is not None:
                urb = usb_core.Urb(direction=usb_core.OUT, ep=self._out.number,
                                   length=len(payload), buffer=payload)
                result = self.device.handle_urb(urb)
                if result is None or result.status:
                    log.debug("the device stalled an output report on %s", self.iface.number)
                    return
                flush = getattr(self.session, "flush_fido", None)
                if flush is not None:  # an answer the key made at once is queued before the
                    flush()            # program's next read asks for it
            else:
                enumeration.control(self.device, 0x21, HID_REQ_SET_REPORT,
                                    (HID_OUTPUT_REPORT << 8) | buf[0], self.iface.number,
                                    payload)
        except enumeration.ControlError:
            log.debug("the device stalled an output report on %s", self.iface.number)

    def ioctl(self, request: int, arg: int) -> None:
        if request in _FILE_IOCTLS:
            self.conn.done(UNHANDLED)
            return
        if self._gone.is_set():
            self.conn.fail(errno.ENODEV)
            return
        if (request >> 8) & 0xFF != ord("H"):
            self.conn.fail(errno.ENOTTY)
            return
        nr, size = request & 0xFF, (request >> 16) & 0x3FFF
        direction = request >> 30
        rd = self.hid.report_descriptor
        if nr == HIDIOCGRDESCSIZE and size == 4:
            self.conn.write_mem_and_done(arg, struct.pack("i", len(rd)), 0)
        elif nr == HIDIOCGRDESC and size == 4 + HID_MAX_DESCRIPTOR_SIZE:
            (want,) = struct.unpack("I", self.conn.read_mem(arg, 4))
            if want > HID_MAX_DESCRIPTOR_SIZE - 1:
                self.conn.fail(errno.EINVAL)
                return
            self.conn.write_mem_and_done(arg + 4, rd[:want], 0)
        elif nr == HIDIOCGRAWINFO and size == 8:
            d = self.hid.description
            self.conn.write_mem_and_done(arg, struct.pack("Ihh", BUS_USB, _s16(d.vendor_id),
                                                          _s16(d.product_id)), 0)
        elif nr in (HIDIOCGRAWNAME, HIDIOCGRAWPHYS, HIDIOCGRAWUNIQ) and direction == _IOC_READ:
            text = {HIDIOCGRAWNAME: self.hid.name, HIDIOCGRAWPHYS: self.hid.phys,
                    HIDIOCGRAWUNIQ: self.hid.uniq}[nr].encode() + b"\0"
            out = text[:size]
            self.conn.write_mem_and_done(arg, out, len(out))
        elif nr in _GET_SET and direction == _IOC_READ | _IOC_WRITE:
            self._report_ioctl(nr, arg, size)
        else:
            self.conn.fail(errno.EINVAL)

    def _report_ioctl(self, nr: int, arg: int, size: int) -> None:
        """HIDIOC[SG]{FEATURE,INPUT,OUTPUT}(len): buf[0] is the report number; a device
        without report IDs takes 0 there and the kernel skips it (``usbhid_*_raw_report``)."""
        if size < 2:  # hidraw_{send,get}_report's limit (14 bits of size: never above 16384)
            self.conn.fail(errno.EINVAL)
            return
        request, rtype = _GET_SET[nr]
        buf = self.conn.read_mem(arg, size if request == HID_REQ_SET_REPORT else 1)
        rid = buf[0]
        skipped = 1 if rid == 0 else 0
        value = (rtype << 8) | rid
        try:
            if request == HID_REQ_SET_REPORT:
                payload = buf[skipped:]
                enumeration.control(self.device, 0x21, HID_REQ_SET_REPORT, value,
                                    self.iface.number, payload)
                self.conn.done(len(payload) + skipped)
                return
            data = enumeration.control(self.device, 0xA1, HID_REQ_GET_REPORT, value,
                                       self.iface.number, size - skipped)
        except enumeration.ControlError:
            self.conn.fail(errno.EPIPE)
            return
        self.conn.write_mem_and_done(arg + skipped, data, len(data) + skipped)

    # -- lifecycle --------------------------------------------------------------------------
    def gone(self) -> None:
        """The device was unplugged: wake a poll() and fail every later call."""
        self._gone.set()
        self.queue.hang_up()  # a waiting poll() returns; the next read() fails with ENODEV

    def closed(self) -> None:
        with self._lock:
            self._closed = True
        self.node.forget(self)
        try:
            self.node.usb.close_session(self.session)
        finally:
            self.queue.close()
            self.node.pool.release(self.queue.pty)


def _s16(value: int) -> int:
    return value - 0x10000 if value & 0x8000 else value


__all__ = ["HidDevice", "HidrawNode", "HidrawOpen", "READ_MODES", "ioc"]
