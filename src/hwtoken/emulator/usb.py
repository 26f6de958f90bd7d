"""The virtual key as a USB device: a YubiKey 5 composite with the OTP and FIDO interfaces.

Descriptors follow a real YubiKey 5 (firmware 5.x) as ``lsusb -v`` shows it, restricted to
the interfaces served here (no CCID interface: smart-card traffic goes over PC/SC/vpcd):

* device: vendor 0x1050 (Yubico), product 0x0403 (``YubiKey OTP+FIDO``, the PID a YubiKey
  5 reports when exactly its OTP and FIDO USB interfaces are enabled; OTP+FIDO+CCID would
  be 0x0407), bcdDevice = firmware version (5.7.1 -> 0x0571), strings "Yubico",
  "YubiKey OTP+FIDO" and the serial number (as with the serial-usb-visible flag set);
* interface 0, the OTP interface: HID boot keyboard, interrupt IN 0x81 (8 bytes, 10 ms).
  Keyboard IN reports carry typed codes; 8-byte FEATURE reports over control
  SET_REPORT/GET_REPORT carry the YubiKey configuration protocol;
* interface 1, the FIDO interface: HID usage page 0xF1D0 usage 0x01, interrupt OUT 0x04
  and IN 0x84 (64 bytes, 2 ms), CTAPHID.

Bytes are handed to the protocol engines unchanged: FIDO reports to
``hwtoken.emulator.fido.ctaphid.CtapHidEngine`` and OTP feature/keyboard reports to
``hwtoken.emulator.otp``'s HID engine. This module only builds the device with the
``usbip`` package and pumps bytes; serving it on a socket is :mod:`hwtoken.emulator.serve`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any, Protocol

from usbip import core as usb_core
from usbip.classes.device import hid
from usbip.device import USBDevice

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.key import VirtualKey

log = logging.getLogger(__name__)

YUBICO_VID = 0x1050
PID_OTP_FIDO = 0x0403  # YubiKey 4/5 with the OTP and FIDO interfaces (yubikit PID.YK4_OTP_FIDO)
PRODUCT_NAME = "YubiKey OTP+FIDO"
MANUFACTURER = "Yubico"

OTP_INTERFACE = 0
FIDO_INTERFACE = 1
OTP_EP_IN = 0x81
FIDO_EP_OUT = 0x04
FIDO_EP_IN = 0x84
FIDO_REPORT_SIZE = 64
FEATURE_REPORT_SIZE = 8
KEYBOARD_REPORT_SIZE = 8

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


class FidoEngine(Protocol):
    """What the FIDO interface needs (A's ``CtapHidEngine``)."""

    def write(self, report: bytes) -> None: ...
    def read(self, timeout: float | None = None) -> bytes | None: ...


class OtpEngine(Protocol):
    """What the OTP interface needs (D's HID engine in ``hwtoken.emulator.otp``)."""

    def set_feature(self, data: bytes) -> None: ...
    def get_feature(self) -> bytes: ...
    def read_keyboard(self, timeout: float | None = None) -> bytes | None: ...


def bcd_version(version: tuple[int, int, int]) -> int:
    """bcdDevice for a firmware version, as a YubiKey reports it: 5.7.1 -> 0x0571."""
    major, minor, patch = version
    return ((major & 0xFF) << 8) | ((minor & 0x0F) << 4) | (patch & 0x0F)


def make_fido_engine(key: VirtualKey) -> FidoEngine:
    """A new CTAPHID engine for ``key`` (one per USB session)."""
    from hwtoken.emulator.fido.ctaphid import CtapHidEngine

    return CtapHidEngine(key)


def make_otp_engine(key: VirtualKey) -> OtpEngine | None:
    """The OTP HID engine for ``key``, or None when the OTP applet cannot be loaded."""
    try:
        from hwtoken.emulator import otp as otp_pkg
    except ImportError:  # pragma: no cover - the OTP applet is part of the package
        log.warning("OTP applet unavailable: the OTP interface answers with empty reports")
        return None
    cls = getattr(otp_pkg, "OtpHidEngine", None)
    if cls is None:
        try:
            from hwtoken.emulator.otp.hid import OtpHidEngine as cls  # type: ignore[no-redef]
        except ImportError:
            log.warning("no OtpHidEngine found: the OTP interface answers with empty reports")
            return None
    return cls(key)


class _HwtokenUsbDevice(USBDevice):
    """USBDevice with a YubiKey's configuration attributes (bus powered, remote wakeup,
    30 mA)."""

    def config_bytes(self) -> bytes:
        body = b"".join(group._render() for group in self._groups)
        cfg = usb_core.ConfigurationDescriptor(
            wTotalLength=9 + len(body), bNumInterfaces=self.num_interfaces,
            bmAttributes=0xA0, bMaxPower=15,
        )
        return cfg.pack() + body


class YubiKeyUsb:
    """The composite USB device of one virtual key, wired to its protocol engines.

    ``device`` is the ``usbip.USBDevice`` to serve; :meth:`start` starts the threads
    that move engine output (CTAPHID responses, typed keystrokes) to the IN endpoints,
    :meth:`stop` ends them. Engines are created by ``fido_engine``/``otp_engine``
    factories (defaults: the real ones) so a transport test can plug in its own.
    """

    def __init__(self, key: VirtualKey, *, fido_engine: FidoEngine | None = None,
                 otp_engine: OtpEngine | None = None, with_otp_engine: bool = True) -> None:
        self.key = key
        self._fresh_fido = fido_engine is None
        self.fido = fido_engine if fido_engine is not None else make_fido_engine(key)
        self._swap_lock = threading.Lock()
        if otp_engine is None and with_otp_engine:
            otp_engine = make_otp_engine(key)
        self.otp = otp_engine
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._feature_lock = threading.Lock()
        self.device = self._build()

    # -- descriptors -----------------------------------------------------------------------
    def _build(self) -> USBDevice:
        dev = _HwtokenUsbDevice(
            YUBICO_VID, PID_OTP_FIDO, manufacturer=MANUFACTURER, product=PRODUCT_NAME,
            serial=str(self.key.serial), bcdDevice=bcd_version(self.key.version),
        )
        dev.bcdUSB = 0x0200
        self.otp_iface = hid.HID(
            OTP_REPORT_DESCRIPTOR, subclass=hid.SUBCLASS_BOOT, protocol=hid.PROTOCOL_KEYBOARD,
            in_ep=OTP_EP_IN, in_mps=KEYBOARD_REPORT_SIZE, in_interval=10,
            get_report=self._get_report, set_report=self._set_report,
        )
        self.fido_iface = hid.HID(
            FIDO_REPORT_DESCRIPTOR, in_ep=FIDO_EP_IN, in_mps=FIDO_REPORT_SIZE, in_interval=2,
            out_ep=FIDO_EP_OUT, out_mps=FIDO_REPORT_SIZE, out_interval=2,
            on_output=self._fido_output,
        )
        dev.add(self.otp_iface)
        dev.add(self.fido_iface)
        dev.add_reset_hook(self._on_bus_reset)
        return dev

    def _on_bus_reset(self) -> None:
        """A host (re)attached: start its FIDO session with a fresh CTAPHID engine.

        Reports still queued for a host that went away mid-transfer would otherwise reach
        the new host and break its channel (a real key sees a bus reset). The endpoint is
        flushed again under the pump's lock so no stale report slips in between.
        """
        if not self._fresh_fido:
            return
        with self._swap_lock:
            old, self.fido = self.fido, make_fido_engine(self.key)
            self.fido_iface.in_ep.reset()
        close = getattr(old, "close", None)
        if close is not None:
            threading.Thread(target=close, daemon=True, name="hwtoken-usb-close").start()

    # -- OTP interface: feature reports over EP0 ---------------------------------------------
    def _get_report(self, rtype: int, rid: int, length: int) -> bytes:
        if rtype == hid.REPORT_FEATURE:
            if self.otp is None:
                return bytes(FEATURE_REPORT_SIZE)
            with self._feature_lock:
                return bytes(self.otp.get_feature())[:FEATURE_REPORT_SIZE]
        if rtype == hid.REPORT_INPUT:
            return bytes(KEYBOARD_REPORT_SIZE)
        raise usb_core.Stall

    def _set_report(self, rtype: int, rid: int, payload: bytes) -> None:
        if rtype == hid.REPORT_FEATURE:
            if len(payload) != FEATURE_REPORT_SIZE:
                raise usb_core.Stall
            if self.otp is not None:
                with self._feature_lock:
                    self.otp.set_feature(bytes(payload))
            return
        if rtype == hid.REPORT_OUTPUT:  # keyboard LEDs: accepted, ignored
            return
        raise usb_core.Stall

    # -- FIDO interface ---------------------------------------------------------------------
    def _fido_output(self, report: bytes) -> None:
        if len(report) != FIDO_REPORT_SIZE:
            log.debug("dropping a %d-byte FIDO output report", len(report))
            return
        self.fido.write(bytes(report))

    # -- pumps ---------------------------------------------------------------------------------
    def _pump_fido(self) -> None:
        while not self._stop.is_set():
            engine = self.fido
            try:
                data = engine.read(PUMP_POLL)
            except Exception:
                log.exception("FIDO engine failed; the FIDO interface stops answering")
                return
            if data:
                with self._swap_lock:
                    if engine is self.fido:  # not a report of a host that went away
                        self.fido_iface.send_report(bytes(data))

    def _pump_keyboard(self) -> None:
        assert self.otp is not None
        while not self._stop.is_set():
            try:
                data = self.otp.read_keyboard(PUMP_POLL)
            except Exception:
                log.exception("OTP engine failed; the keyboard stops typing")
                return
            if data:
                self.otp_iface.send_report(bytes(data))

    def start(self) -> None:
        """Start moving engine output to the IN endpoints."""
        if self._threads:
            return
        self._stop.clear()
        pumps: list[Any] = [self._pump_fido]
        if self.otp is not None and hasattr(self.otp, "read_keyboard"):
            pumps.append(self._pump_keyboard)
        for pump in pumps:
            t = threading.Thread(target=pump, daemon=True, name=f"hwtoken-usb{pump.__name__}")
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Stop the pumps and close the engines (idempotent)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self._threads = []
        for engine in (self.fido, self.otp):
            close = getattr(engine, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
