"""The virtual key as a USB device: the one USB model every USB transport carries.

Which USB device a key is -- product ID, product string, interfaces -- follows its profile
and is decided here only (:data:`USB_MODELS`, :func:`usb_model`); USB/IP, local device
nodes and the fido2 HID adapter all take it from here. Descriptors follow the real devices
as ``lsusb -v`` shows them:

* device: vendor 0x1050 (Yubico); product 0x0407 (``YubiKey OTP+FIDO+CCID``, a YubiKey 5
  with its OTP, FIDO and CCID USB interfaces enabled) for ``yubikey-5`` and ``latest``,
  0x0120 (Security Key by Yubico) for ``security-key`` and ``u2f-only``, 0x0402
  (``YubiKey FIDO``, the FIDO interface alone) for ``yubikey-bio``. A YubiKey has
  only the interfaces of the applications enabled over USB when it powers up
  (:func:`key_usb_model`), and the product ID and name say which: 0x0401 ``YubiKey OTP``
  to 0x0407, as yubikit's ``PID`` lists them; a change re-enumerates it at its next
  power-up (the reboot ``ykman config usb`` asks for, or a re-plug); bcdDevice =
  firmware version (5.7.1 -> 0x0571); strings "Yubico", the product and the serial number
  (as with serial-usb-visible set); configuration 150 bytes long for the three interfaces;
* the OTP interface (YubiKey models): HID boot keyboard, interrupt IN 0x81 (8 bytes,
  10 ms). Keyboard IN reports carry typed codes; 8-byte FEATURE reports over control
  SET_REPORT/GET_REPORT carry the YubiKey configuration protocol;
* the FIDO interface: HID usage page 0xF1D0 usage 0x01, interrupt OUT 0x04 and IN 0x84
  (64 bytes, 2 ms), CTAPHID;
* the CCID interface (YubiKey models): class 0x0B with a YubiKey 5's CCID class
  descriptor (:func:`hwtoken.emulator.ccid.class_descriptor`: T=1, short and extended
  APDU-level exchange, 3072-byte messages), bulk OUT 0x02 and IN 0x82 (64 bytes) and
  interrupt IN 0x83 (8 bytes) for NotifySlotChange. Interfaces are numbered in that
  order from 0.

Bytes are handed to the protocol engines unchanged: FIDO reports to
``hwtoken.emulator.applets.fido.ctaphid.CtapHidEngine``, OTP feature/keyboard reports to
``hwtoken.emulator.applets.otp``'s HID engine, CCID messages to
:class:`hwtoken.emulator.ccid.CcidSlot`
over a card OS of the USB transport (management, OTP, OATH, PIV, OpenPGP; FIDO is HID-only over
USB). This module only builds the device with the ``usbip`` package and pumps bytes;
serving it on a socket is :mod:`hwtoken.emulator.serve`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

# The usbip package is imported where the device is built, so the USB model table above
# it (which the fido2 HID adapter reads) needs only this module, not the usbip extra.

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.key import VirtualKey

log = logging.getLogger(__name__)

YUBICO_VID = 0x1050
PID_OTP_FIDO = 0x0403  # YubiKey 4/5 with the OTP and FIDO interfaces (yubikit PID.YK4_OTP_FIDO)
PID_OTP_FIDO_CCID = 0x0407  # ... and the CCID interface (yubikit PID.YK4_OTP_FIDO_CCID)
PID_SKY_FIDO = 0x0120  # Security Key by Yubico, FIDO only (yubikit PID.SKY_FIDO)
PID_FIDO = 0x0402  # a YubiKey with only the FIDO interface (yubikit PID.YK4_FIDO), as a Bio
PRODUCT_NAME = "YubiKey OTP+FIDO+CCID"
MANUFACTURER = "Yubico"

OTP_INTERFACE = 0  # (YubiKey models; a FIDO-only key's FIDO interface is number 0)
FIDO_INTERFACE = 1
CCID_INTERFACE = 2

# Management capability bits behind each USB interface (yubikit's CAPABILITY.usb_interfaces)
_CAP_OTP, _CAP_U2F, _CAP_FIDO2 = 0x01, 0x02, 0x200
_CAPS_OF_INTERFACE = {"otp": _CAP_OTP, "fido": _CAP_U2F | _CAP_FIDO2,
                      "ccid": 0x08 | 0x10 | 0x20 | 0x100}  # OpenPGP, PIV, OATH, HSM Auth
#: a YubiKey 4/5 by the interfaces it has (yubikit PID.YK4_*): product ID and name
_YUBIKEY_PIDS: dict[tuple[str, ...], tuple[int, str]] = {
    ("otp",): (0x0401, "YubiKey OTP"),
    ("fido",): (0x0402, "YubiKey FIDO"),
    ("otp", "fido"): (PID_OTP_FIDO, "YubiKey OTP+FIDO"),
    ("ccid",): (0x0404, "YubiKey CCID"),
    ("otp", "ccid"): (0x0405, "YubiKey OTP+CCID"),
    ("fido", "ccid"): (0x0406, "YubiKey FIDO+CCID"),
    ("otp", "fido", "ccid"): (PID_OTP_FIDO_CCID, PRODUCT_NAME),
}


@dataclass(frozen=True)
class UsbModel:
    """What a host's USB stack sees of one key model."""

    vendor_id: int
    product_id: int
    product: str
    interfaces: tuple[str, ...]  #: "otp", "fido", "ccid", numbered from 0 in this order

    def interface_number(self, name: str) -> int:
        return self.interfaces.index(name)


_YUBIKEY_5 = UsbModel(YUBICO_VID, PID_OTP_FIDO_CCID, PRODUCT_NAME, ("otp", "fido", "ccid"))

#: the USB face of each profile (:mod:`hwtoken.emulator.profiles`)
USB_MODELS: dict[str, UsbModel] = {
    "yubikey-5": _YUBIKEY_5,
    "latest": _YUBIKEY_5,
    "security-key": UsbModel(YUBICO_VID, PID_SKY_FIDO, "Security Key NFC by Yubico",
                             ("fido",)),
    "u2f-only": UsbModel(YUBICO_VID, PID_SKY_FIDO, "Security Key by Yubico", ("fido",)),
    "yubikey-bio": UsbModel(YUBICO_VID, PID_FIDO, "YubiKey FIDO", ("fido",)),
}


def usb_model(profile: str) -> UsbModel:
    """The USB model of the profile named ``profile``."""
    try:
        return USB_MODELS[profile]
    except KeyError:
        raise ValueError(f"no USB model for key profile {profile!r}") from None


def key_usb_model(key: VirtualKey) -> UsbModel:
    """The USB device ``key`` is when it powers up: its profile's, with only the
    interfaces of the applications enabled over USB (a YubiKey 4/5; a Security Key keeps
    its one FIDO interface), and the product ID and name of that set."""
    full = usb_model(key.profile.name)
    yubikey = full.product_id in {pid for pid, _ in _YUBIKEY_PIDS.values()}
    if not yubikey or not key.profile.has("management"):
        return full
    from hwtoken.emulator.applets.management import ManagementApplet

    enabled = ManagementApplet(key).enabled("usb")
    present = tuple(i for i in full.interfaces if enabled & _CAPS_OF_INTERFACE[i])
    if not present:  # (a key keeps one application on; never without an interface)
        return full
    product_id, product = _YUBIKEY_PIDS[present]
    return UsbModel(full.vendor_id, product_id, product, present)
OTP_EP_IN = 0x81
FIDO_EP_OUT = 0x04
FIDO_EP_IN = 0x84
FIDO_REPORT_SIZE = 64
FEATURE_REPORT_SIZE = 8
KEYBOARD_REPORT_SIZE = 8
CCID_EP_OUT = 0x02
CCID_EP_IN = 0x82
CCID_EP_NOTIFY = 0x83
CCID_PACKET_SIZE = 64
CCID_NOTIFY_SIZE = 8
CCID_NOTIFY_INTERVAL = 32
#: A key that reboots (``ykman config usb`` changed its USB interfaces) leaves the bus once
#: its host has taken the answer -- waited for up to REBOOT_ANSWER_WAIT seconds, looked at
#: every ANSWER_POLL -- and REBOOT_GRACE later (:meth:`YubiKeyUsb.wait_answered`). The wait
#: only ends early for a host that never takes its answer; a loaded machine's pcscd can take
#: seconds to, and a key that left first made ykman fail its `config usb`.
REBOOT_ANSWER_WAIT = 10.0
ANSWER_POLL = 0.01
REBOOT_GRACE = 0.05
#: how long a CCID command may run before the key asks the host for more time, and how
#: often it asks again (libccid waits about 1.5 s for a YubiKey's answer, from its ATR):
#: a quarter of a second, so that an emulator starved of CPU for a second on a loaded
#: machine still asks in time
CCID_TIME_EXTENSION_AFTER = 0.25

# fmt: off
# The OTP interface's report descriptor (71 bytes): a boot keyboard (modifiers, reserved
# byte, 5 LEDs + padding, 6 key codes) plus one vendor 8-byte FEATURE report that carries
# the YubiKey configuration protocol.
OTP_REPORT_DESCRIPTOR = bytes([
    0x05, 0x01, 0x09, 0x06, 0xA1, 0x01,              # Generic Desktop, Keyboard, Application
    0x05, 0x07, 0x19, 0xE0, 0x29, 0xE7,              # Keyboard page, Left Ctrl .. Right GUI
    0x15, 0x00, 0x25, 0x01, 0x75, 0x01, 0x95, 0x08,
    0x81, 0x02,                                      # Input: 8 modifier bits
    0x95, 0x01, 0x75, 0x08, 0x81, 0x01,              # Input: reserved byte (constant)
    0x95, 0x05, 0x75, 0x01, 0x05, 0x08, 0x19, 0x01, 0x29, 0x05,
    0x91, 0x02,                                      # Output: 5 LEDs
    0x95, 0x01, 0x75, 0x03, 0x91, 0x01,              # Output: 3 bits padding
    0x95, 0x06, 0x75, 0x08, 0x15, 0x00, 0x25, 0xFF,
    0x05, 0x07, 0x19, 0x00, 0x29, 0xFF, 0x81, 0x00,  # Input: 6 key codes (array)
    0x09, 0x03, 0x75, 0x08, 0x95, 0x08, 0xB1, 0x02,  # Feature: 8 bytes (configuration)
    0xC0,                                            # End Collection
])

# The FIDO interface's report descriptor (34 bytes, CTAP 2.1 section 11.2.8.1).
FIDO_REPORT_DESCRIPTOR = bytes([
    0x06, 0xD0, 0xF1,        # Usage Page (FIDO Alliance)
    0x09, 0x01,              # Usage (CTAPHID)
    0xA1, 0x01,              # Collection (Application)
    0x09, 0x20, 0x15, 0x00, 0x26, 0xFF, 0x00, 0x75, 0x08, 0x95, 0x40,
    0x81, 0x02,              #   Input: 64 bytes
    0x09, 0x21, 0x15, 0x00, 0x26, 0xFF, 0x00, 0x75, 0x08, 0x95, 0x40,
    0x91, 0x02,              #   Output: 64 bytes
    0xC0,                    # End Collection
])
# fmt: on

PUMP_POLL = 0.05  # seconds a pump waits on an engine before re-checking for stop
CONTROL_MAX_TRANSFER = 0xFFFF  # a control transfer's data: its setup packet's 16-bit wLength


def out_transfer_limits(model: UsbModel) -> dict[int, int]:
    """The most bytes one OUT transfer may carry, by endpoint number, for ``model``.

    What the protocols on those endpoints can use: a whole CTAPHID message (7609 bytes, one
    initialisation and 128 continuation reports) on the FIDO endpoint, a whole CCID message
    (the class descriptor's dwMaxCCIDMessageLength) on bulk OUT. A USB/IP peer announcing
    more is not a host but an attempt to fill the server's memory.
    """
    from hwtoken.emulator.applets.fido.ctaphid import CONT_DATA, INIT_DATA, MAX_MESSAGE

    reports = 1 + -(-(MAX_MESSAGE - INIT_DATA) // CONT_DATA)
    limits = {0: CONTROL_MAX_TRANSFER, FIDO_EP_OUT & 0x0F: reports * FIDO_REPORT_SIZE}
    if "ccid" in model.interfaces:
        from hwtoken.emulator.ccid import MAX_CCID_MESSAGE_LENGTH

        limits[CCID_EP_OUT & 0x0F] = MAX_CCID_MESSAGE_LENGTH
    return limits


class FidoEngine(Protocol):
    """What the FIDO interface needs (``CtapHidEngine``)."""

    def write(self, report: bytes) -> None: ...
    def read(self, timeout: float | None = None) -> bytes | None: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class OtpEngine(Protocol):
    """What the OTP interface needs (D's HID engine in ``hwtoken.emulator.applets.otp``)."""

    def set_feature(self, data: bytes) -> None: ...
    def get_feature(self) -> bytes: ...
    def read_keyboard(self, timeout: float | None = None) -> bytes | None: ...


def bcd_version(version: tuple[int, int, int]) -> int:
    """bcdDevice for a firmware version, as a YubiKey reports it: 5.7.1 -> 0x0571."""
    major, minor, patch = version
    return ((major & 0xFF) << 8) | ((minor & 0x0F) << 4) | (patch & 0x0F)


def make_fido_engine(key: VirtualKey) -> FidoEngine:
    """A new CTAPHID engine for ``key`` (one per USB session)."""
    from hwtoken.emulator.applets.fido.ctaphid import CtapHidEngine

    return CtapHidEngine(key)


def make_otp_engine(key: VirtualKey) -> OtpEngine:
    """The OTP HID engine for ``key`` (shared by every USB session)."""
    from hwtoken.emulator.applets.otp.hid import OtpHidEngine

    return OtpHidEngine(key)


@functools.cache
def _device_class() -> type:
    from usbip import core as usb_core
    from usbip.device import USBDevice

    class _HwtokenUsbDevice(USBDevice):  # type: ignore[misc]
        """USBDevice with a YubiKey's configuration attributes (bus powered, remote
        wakeup, 30 mA)."""

        def config_bytes(self) -> bytes:
            body = b"".join(group._render() for group in self._groups)
            cfg = usb_core.ConfigurationDescriptor(
                wTotalLength=9 + len(body), bNumInterfaces=self.num_interfaces,
                bmAttributes=0xA0, bMaxPower=15,
            )
            return cfg.pack() + body

    return _HwtokenUsbDevice


@functools.cache
def _ccid_interface_class() -> type:
    from usbip.device import In, Out
    from usbip.function import Interface

    from hwtoken.emulator.ccid import USB_CLASS_CSCID, class_descriptor

    class _CcidInterface(Interface):  # type: ignore[misc]
        """The CCID interface: bulk OUT and IN for messages, interrupt IN for slot changes
        (declared, and so listed, in that order)."""

        bInterfaceClass = USB_CLASS_CSCID
        bulk_out = Out(CCID_EP_OUT, "bulk", CCID_PACKET_SIZE)
        bulk_in = In(CCID_EP_IN, "bulk", CCID_PACKET_SIZE)
        notify = In(CCID_EP_NOTIFY, "interrupt", CCID_NOTIFY_SIZE, CCID_NOTIFY_INTERVAL)

        def __init__(self, port: CcidPort) -> None:
            super().__init__()
            self.port = port

        def extra_descriptors(self) -> bytes:
            return class_descriptor()

        def on_out(self, ep: Any, data: bytes) -> None:
            self.port.on_out(bytes(data))

        def on_reset(self) -> None:
            self.port.on_reset()

    return _CcidInterface


_RESET = object()  # a queued bus reset (the slot powers its card off)


class CcidPort:
    """The CCID interface of one USB session, pumping bytes to and from its slot.

    Bulk-OUT transfers are joined into messages (:class:`~hwtoken.emulator.ccid.MessageAssembler`)
    and handed to the session's :class:`~hwtoken.emulator.ccid.CcidSlot` -- whose card is a
    card OS of the USB transport -- on a worker thread, under the key's lock; the answers go
    to bulk IN in order. The OUT transfer itself returns at once, as on a real device (a
    usbfs SUBMITURB must not wait for the card). While a command runs longer than
    :data:`CCID_TIME_EXTENSION_AFTER`, a second thread sends time extensions, as a YubiKey
    does during a long command, so that the host (libccid: about 1.5 s) keeps waiting. A
    message that arrives while another is worked on is answered "slot busy". The interrupt
    endpoint holds a card-present NotifySlotChange from the start (and after a bus reset).
    """

    def __init__(self, key: VirtualKey) -> None:
        from hwtoken.emulator.ccid import MessageAssembler

        self.key = key
        self.assembler = MessageAssembler(CCID_PACKET_SIZE)
        self.iface = _ccid_interface_class()(self)
        self._slot: Any = None
        self._cond = threading.Condition()
        self._queue: list[Any] = []  # messages (bytes) and _RESET, in order
        self._job = 0  # number of the message being worked on (0: none)
        self._current: Any = None
        self._current_generation = 0
        self._since = 0.0
        self._generation = 0  # bumped by a bus reset: answers of before are dropped
        self._stop = False
        self._threads: list[threading.Thread] = []
        self.time_extensions = 0  #: how many were sent (for tests and diagnostics)
        self.notify_present()

    @property
    def slot(self) -> Any:
        """The slot (made on first use: its card OS costs nothing until then)."""
        with self._cond:
            if self._slot is None:
                from hwtoken.emulator.ccid import CcidSlot
                from hwtoken.emulator.iso7816 import CardOS

                self._slot = CcidSlot(CardOS(self.key, transport="usb"))
            return self._slot

    def notify_present(self) -> None:
        """Queue the card-present NotifySlotChange on the interrupt endpoint."""
        from hwtoken.emulator.ccid import slot_change

        self.iface.notify.write(slot_change())

    # -- from the host ------------------------------------------------------------------------
    def on_out(self, data: bytes) -> None:
        messages = self.assembler.feed(data)
        if not messages:
            return
        slot = self.slot
        with self._cond:
            if self._stop:
                return
            for message in messages:
                if self._busy():
                    self.iface.bulk_in.write(slot.busy(message))
                else:
                    self._queue.append(message)
            self._start_threads()
            self._cond.notify_all()

    @property
    def answering(self) -> bool:
        """A message is being worked on or waits (its answer is not out yet)."""
        with self._cond:
            return (self._current is not None and self._current is not _RESET) or any(
                item is not _RESET for item in self._queue)

    def _busy(self) -> bool:
        """Call with the lock held: a message of the host's (since its last reset) is
        being worked on or waits. A command cut off by a reset is no longer the host's:
        what it sends next waits for it (and the reset) instead of being refused."""
        working = (self._current is not None and self._current is not _RESET
                   and self._current_generation == self._generation)
        return working or any(item is not _RESET for item in self._queue)

    def on_reset(self) -> None:
        """The host reset the device: drop what was pending, power the card off."""
        with self._cond:
            self._generation += 1
            self._queue.clear()
            self.assembler.reset()
            if self._slot is not None and not self._stop:
                self._queue.append(_RESET)
                self._start_threads()
                self._cond.notify_all()
        self.notify_present()

    # -- threads ------------------------------------------------------------------------------
    def _start_threads(self) -> None:
        """Call with the lock held."""
        if self._threads:
            return
        for target, name in ((self._work, "hwtoken-usb-ccid"),
                             (self._extend, "hwtoken-usb-ccid-wtx")):
            thread = threading.Thread(target=target, daemon=True, name=name)
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        slot = self.slot
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                item = self._queue.pop(0)
                generation = self._current_generation = self._generation
                self._job += 1
                self._current, self._since = item, time.monotonic()
                self._cond.notify_all()
            out: bytes | None = None
            try:
                with self.key.lock:
                    if item is _RESET:
                        slot.reset()
                    else:
                        out = slot.handle(item)
            except Exception:  # CcidSlot.handle never raises; a reset hook might
                log.exception("CCID slot failed")
            with self._cond:
                self._current = None
                if out is not None and generation == self._generation and not self._stop:
                    self.iface.bulk_in.write(out)
                self._cond.notify_all()

    def _extending(self, job: int) -> bool:
        """Call with the lock held: command ``job`` still runs, for the host that sent it
        (not cut off by a bus reset)."""
        return (self._job == job and self._current is not None
                and self._current_generation == self._generation)

    def _extend(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (self._current is None or self._current is _RESET):
                    self._cond.wait()
                if self._stop:
                    return
                job, item = self._job, self._current
                due = self._since + CCID_TIME_EXTENSION_AFTER
                while not self._stop and self._extending(job):
                    left = due - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._stop:
                    return
                if self._extending(job):
                    self.iface.bulk_in.write(self.slot.time_extension(item))
                    self.time_extensions += 1
                    self._since = time.monotonic()
                    continue
                while not self._stop and self._job == job and self._current is not None:
                    self._cond.wait()  # cut off by a reset: no extensions until it ends

    def stop(self) -> None:
        """End the threads (a command still running finishes; its answer is dropped)."""
        with self._cond:
            self._stop = True
            self._queue.clear()
            threads, self._threads = self._threads, []
            self._cond.notify_all()
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2)


class YubiKeyUsb:
    """The USB face of one virtual key, shared by every host session.

    Each USB/IP import gets its own :class:`UsbSession` (:meth:`open_session`): its own
    ``usbip.USBDevice`` with its own endpoints and CTAPHID engine, the way every process
    that opens a key's hidraw node gets its own handle and its own CTAPHID channel. What
    is one per key is shared: the OTP engine behind the feature reports, and the keyboard,
    whose reports go to every attached session (hidraw, too, gives input reports to every
    reader). ``device`` is a template used to answer device lists.
    """

    def __init__(self, key: VirtualKey, *, fido_engine_factory: Any = None,
                 otp_engine: OtpEngine | None = None, with_otp_engine: bool = True) -> None:
        self.key = key
        self.model = key_usb_model(key)
        self.fido_engine_factory = fido_engine_factory or make_fido_engine
        if "otp" not in usb_model(key.profile.name).interfaces:  # (enabled again: it is back)
            otp_engine, with_otp_engine = None, False
        if otp_engine is None and with_otp_engine:
            otp_engine = make_otp_engine(key)
        self.otp = otp_engine
        self.busid = "1-1"
        self._feature_lock = threading.Lock()
        self._sessions: list[UsbSession] = []
        self._sessions_cond = threading.Condition()
        self._stop = threading.Event()
        self._keyboard: threading.Thread | None = None
        self.device = UsbSession(self).device

    def reconfigure(self) -> bool:
        """Power-up: take the interfaces the key's USB-enabled applications call for now
        (sessions opened from here on get them); True if they changed."""
        model = key_usb_model(self.key)
        if model == self.model:
            return False
        log.info("virtual key %s is now %04x %s", self.key.serial, model.product_id,
                 model.product)
        self.model = model
        self.device = UsbSession(self).device
        return True

    # -- sessions ----------------------------------------------------------------------------
    def open_session(self) -> UsbSession:
        """A new host session: its own device and CTAPHID engine, started."""
        session = UsbSession(self)
        session.start()
        with self._sessions_cond:
            self._sessions.append(session)
            self._sessions_cond.notify_all()
        return session

    def close_session(self, session: UsbSession) -> None:
        with self._sessions_cond:
            if session in self._sessions:
                self._sessions.remove(session)
        session.stop()

    @property
    def session_count(self) -> int:
        with self._sessions_cond:
            return len(self._sessions)

    def wait_answered(self, also: Callable[[], bool] | None = None) -> None:
        """Wait (at most :data:`REBOOT_ANSWER_WAIT`) until the request that is being
        handled has been answered and its host has the answer (and ``also()`` is false),
        then :data:`REBOOT_GRACE`: when a rebooting key leaves the bus."""
        with self.key.lock:
            pass  # the request that asked for the reboot has been answered
        deadline = time.monotonic() + REBOOT_ANSWER_WAIT
        while (self.answering() or (also is not None and also())) \
                and time.monotonic() < deadline:
            time.sleep(ANSWER_POLL)
        time.sleep(REBOOT_GRACE)

    def answering(self) -> bool:
        """The key still works on a request, or an answer waits for its host: a CCID
        message, a CTAPHID request, an OTP command whose outcome the host has not read."""
        with self._sessions_cond:
            sessions = list(self._sessions)
        engines: list[Any] = [self.otp]
        for session in sessions:
            engines += [session.ccid, session.fido]
        return any(bool(getattr(e, "answering", False)) for e in engines if e is not None)

    # -- OTP interface: feature reports over EP0 (shared) --------------------------------------
    def get_report(self, rtype: int, rid: int, length: int) -> bytes:
        from usbip import core as usb_core
        from usbip.classes.device import hid

        if rtype == hid.REPORT_FEATURE:
            if self.otp is None:
                return bytes(FEATURE_REPORT_SIZE)
            with self.key.lock, self._feature_lock:
                return bytes(self.otp.get_feature())[:FEATURE_REPORT_SIZE]
        if rtype == hid.REPORT_INPUT:
            return bytes(KEYBOARD_REPORT_SIZE)
        raise usb_core.Stall

    def set_report(self, rtype: int, rid: int, payload: bytes) -> None:
        from usbip import core as usb_core
        from usbip.classes.device import hid

        if rtype == hid.REPORT_FEATURE:
            if len(payload) != FEATURE_REPORT_SIZE:
                raise usb_core.Stall
            if self.otp is not None:
                # key.lock: the OTP applet may change and save the key's state here, and
                # PC/SC (vpcd) must not do so at the same time
                with self.key.lock, self._feature_lock:
                    self.otp.set_feature(bytes(payload))
            return
        if rtype == hid.REPORT_OUTPUT:  # keyboard LEDs: accepted, ignored
            return
        raise usb_core.Stall

    # -- keyboard: typed reports go to every attached host -----------------------------------
    def _pump_keyboard(self) -> None:
        assert self.otp is not None
        while not self._stop.is_set():
            with self._sessions_cond:  # keep keystrokes queued while no host is attached
                if not self._sessions:
                    self._sessions_cond.wait(PUMP_POLL)
                    continue
            try:
                data = self.otp.read_keyboard(PUMP_POLL)
            except Exception:
                log.exception("OTP engine failed; the keyboard stops typing")
                return
            if data:
                with self._sessions_cond:
                    sessions = list(self._sessions)
                for session in sessions:
                    session.otp_iface.send_report(bytes(data))

    def start(self) -> None:
        """Start the shared keyboard pump (sessions start their own FIDO pumps)."""
        self._stop.clear()
        if self._keyboard is None and self.otp is not None and hasattr(self.otp,
                                                                         "read_keyboard"):
            self._keyboard = threading.Thread(target=self._pump_keyboard, daemon=True,
                                              name="hwtoken-usb-keyboard")
            self._keyboard.start()

    def stop(self) -> None:
        """Stop every session and the keyboard pump (idempotent)."""
        self._stop.set()
        with self._sessions_cond:
            sessions, self._sessions = list(self._sessions), []
            self._sessions_cond.notify_all()
        for session in sessions:
            session.stop()
        if self._keyboard is not None:
            self._keyboard.join(timeout=2)
            self._keyboard = None


class UsbSession:
    """One host's composite device: OTP keyboard + FIDO HID (+ CCID), its own CTAPHID
    engine and CCID slot."""

    def __init__(self, owner: YubiKeyUsb) -> None:
        self.owner = owner
        self.key = owner.key
        self.fido: FidoEngine | None = None
        self.ccid: CcidPort | None = None
        self._swap_lock = threading.Lock()  # held while moving reports to the IN endpoint
        self._stop = threading.Event()
        self._pump: threading.Thread | None = None
        self.device = self._build()

    def _build(self) -> Any:
        from usbip.classes.device import hid

        model = self.owner.model
        dev = _device_class()(
            model.vendor_id, model.product_id, manufacturer=MANUFACTURER,
            product=model.product, serial=str(self.key.serial),
            bcdDevice=bcd_version(self.key.version),
        )
        dev.bcdUSB = 0x0200
        self.otp_iface: Any = None
        if "otp" in model.interfaces:
            self.otp_iface = hid.HID(
                OTP_REPORT_DESCRIPTOR, subclass=hid.SUBCLASS_BOOT,
                protocol=hid.PROTOCOL_KEYBOARD, in_ep=OTP_EP_IN, in_mps=KEYBOARD_REPORT_SIZE,
                in_interval=10, get_report=self.owner.get_report,
                set_report=self.owner.set_report,
            )
        self.fido_iface = hid.HID(
            FIDO_REPORT_DESCRIPTOR, in_ep=FIDO_EP_IN, in_mps=FIDO_REPORT_SIZE, in_interval=2,
            out_ep=FIDO_EP_OUT, out_mps=FIDO_REPORT_SIZE, out_interval=2,
            on_output=self._fido_output,
        )
        if "ccid" in model.interfaces:
            self.ccid = CcidPort(self.key)
        for name in model.interfaces:
            if name == "otp":
                dev.add(self.otp_iface)
            elif name == "fido":
                dev.add(self.fido_iface)
            else:
                assert self.ccid is not None
                dev.add(self.ccid.iface)
        dev.add_reset_hook(self._on_bus_reset)
        dev.set_busid(self.owner.busid)
        dev.busnum, dev.devnum = 1, 2
        return dev

    def _on_bus_reset(self) -> None:
        """The host (re)configured the device: start over with a fresh CTAPHID engine.

        Reports queued for an earlier configuration must not reach the host and break its
        channel. The endpoint is flushed again under the pump's lock so no stale report
        slips in between.
        """
        if self.fido is None:
            return
        with self._swap_lock:
            old, self.fido = self.fido, self.owner.fido_engine_factory(self.key)
            self.fido_iface.in_ep.reset()
        _close_later(old)

    def _fido_output(self, report: bytes) -> None:
        engine = self.fido
        if engine is None:
            return
        if len(report) != FIDO_REPORT_SIZE:
            log.debug("dropping a %d-byte FIDO output report", len(report))
            return
        engine.write(bytes(report))

    def _pump_fido(self) -> None:
        while not self._stop.is_set():
            engine = self.fido
            if engine is None:
                return
            try:
                ready = engine.wait(PUMP_POLL)
            except Exception:
                log.exception("FIDO engine failed; the FIDO interface stops answering")
                return
            if ready:
                self.flush_fido()

    def flush_fido(self) -> None:
        """Move every IN report the engine has ready to the endpoint, now, in order.

        The pump does this when reports appear; a transport may call it right after an
        OUT report, when a request the key answered at once has its response ready, to
        save the pump's thread switch (both hold the same lock, so order is kept).
        """
        with self._swap_lock:
            engine = self.fido
            if engine is None:
                return
            while True:
                try:
                    data = engine.read(0)
                except Exception:
                    log.exception("FIDO engine failed")
                    return
                if not data:
                    return
                self.fido_iface.send_report(bytes(data))

    def start(self) -> None:
        """Create the CTAPHID engine and start moving its reports to the IN endpoint."""
        if self._pump is not None:
            return
        self.fido = self.owner.fido_engine_factory(self.key)
        self._pump = threading.Thread(target=self._pump_fido, daemon=True,
                                      name="hwtoken-usb-fido")
        self._pump.start()

    def stop(self) -> None:
        """Stop the pumps and close the engine (idempotent)."""
        self._stop.set()
        if self.ccid is not None:
            self.ccid.stop()
        if self._pump is not None and self._pump is not threading.current_thread():
            self._pump.join(timeout=2)
        self._pump = None
        engine, self.fido = self.fido, None
        if engine is not None:
            _close_later(engine)


def _close_later(engine: Any) -> None:
    """Close an engine without waiting for a request it may still be running."""
    close = getattr(engine, "close", None)
    if close is not None:
        threading.Thread(target=_quiet, args=(close,), daemon=True,
                         name="hwtoken-usb-close").start()


def _quiet(fn: Any) -> None:
    with contextlib.suppress(Exception):
        fn()
