"""What a USB host learns from the virtual key's USB device, the way a kernel enumerates it.

The key's one USB device model (:mod:`hwtoken.emulator.usb`, a ``usbip.USBDevice``) answers
URBs. A kernel asks it for its device and configuration descriptors, its strings and, for
each HID interface, the HID report descriptor; then binds usbhid to those interfaces and
makes a hidraw node for each. This module does the asking (control URBs through
``USBDevice.handle_urb``) and parses the answers into :class:`UsbDescription`, from which
:mod:`.sysfs` lays out the tree and :mod:`.hidraw` serves the nodes. Nothing here is
specific to a YubiKey: another device model (another product ID, a CCID interface) is laid
out by the same code.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from usbip import core as usb_core

DT_DEVICE, DT_CONFIG, DT_STRING, DT_INTERFACE, DT_ENDPOINT = 1, 2, 3, 4, 5
DT_HID, DT_REPORT = 0x21, 0x22
USB_CLASS_HID = 0x03
GET_DESCRIPTOR = 0x06
LANGID_EN_US = 0x0409


class ControlError(Exception):
    """The device stalled a control request (the kernel's -EPIPE)."""


def control(device: Any, request_type: int, request: int, value: int, index: int,
            data_or_length: bytes | int) -> bytes:
    """One control transfer on ``device``'s endpoint 0: IN returns the data, OUT sends it."""
    is_in = bool(request_type & 0x80)
    length = int(data_or_length) if is_in else len(bytes(data_or_length))
    setup = struct.pack("<BBHHH", request_type, request, value, index, length)
    urb = usb_core.Urb(direction=usb_core.IN if is_in else usb_core.OUT, ep=0, length=length,
                       setup=setup, buffer=b"" if is_in else bytes(data_or_length))
    result = device.handle_urb(urb)
    if result is None or result.status:
        raise ControlError(f"control request {request:#04x} stalled")
    return bytes(result.buffer[:length]) if is_in else b""


@dataclass
class Endpoint:
    address: int
    attributes: int
    max_packet: int
    interval: int

    @property
    def is_in(self) -> bool:
        return bool(self.address & 0x80)

    @property
    def number(self) -> int:
        return self.address & 0x0F

    @property
    def transfer_type(self) -> int:
        return self.attributes & 0x03


@dataclass
class Interface:
    number: int
    alternate: int
    cls: int
    subclass: int
    protocol: int
    endpoints: list[Endpoint] = field(default_factory=list)
    report_descriptor: bytes = b""  # HID interfaces only

    @property
    def is_hid(self) -> bool:
        return self.cls == USB_CLASS_HID

    def endpoint(self, *, is_in: bool, transfer_type: int = usb_core.INTERRUPT
                 ) -> Endpoint | None:
        for ep in self.endpoints:
            if ep.is_in == is_in and ep.transfer_type == transfer_type:
                return ep
        return None


@dataclass
class UsbDescription:
    """Everything the sysfs tree and the nodes need to know about one USB device."""

    device_descriptor: bytes
    config_descriptor: bytes
    vendor_id: int
    product_id: int
    bcd_device: int
    bcd_usb: int
    device_class: int
    device_subclass: int
    device_protocol: int
    max_packet0: int
    manufacturer: str
    product: str
    serial: str
    config_value: int
    config_attributes: int
    max_power_ma: int
    interfaces: list[Interface]

    @property
    def hid_name(self) -> str:
        """The name the kernel gives the HID devices: manufacturer and product."""
        parts = [p for p in (self.manufacturer, self.product) if p]
        if len(parts) == 2 and parts[1].startswith(parts[0]):
            return parts[1]
        return " ".join(parts)

    @property
    def descriptors(self) -> bytes:
        """The ``descriptors`` sysfs attribute (libusb reads it): device + configuration."""
        return self.device_descriptor + self.config_descriptor


def _string(device: Any, index: int) -> str:
    if not index:
        return ""
    try:
        raw = control(device, 0x80, GET_DESCRIPTOR, (DT_STRING << 8) | index, LANGID_EN_US, 255)
    except ControlError:
        return ""
    if len(raw) < 2:
        return ""
    return raw[2:raw[0]].decode("utf-16-le", "replace")


def parse_config(config: bytes) -> list[Interface]:
    """The interfaces (with endpoints) a configuration descriptor declares."""
    interfaces: list[Interface] = []
    current: Interface | None = None
    for desc in usb_core.iter_descriptors(config, offset=config[0] if config else 0):
        dtype = desc[1]
        if dtype == DT_INTERFACE and len(desc) >= 9:
            current = Interface(number=desc[2], alternate=desc[3], cls=desc[5],
                                subclass=desc[6], protocol=desc[7])
            interfaces.append(current)
        elif dtype == DT_ENDPOINT and len(desc) >= 7 and current is not None:
            addr, attrs, mps, interval = struct.unpack_from("<BBHB", desc, 2)
            current.endpoints.append(Endpoint(addr, attrs, mps, interval))
    return interfaces


def describe(device: Any) -> UsbDescription:
    """Enumerate ``device`` as a kernel would (GET_DESCRIPTOR requests only)."""
    dev = control(device, 0x80, GET_DESCRIPTOR, DT_DEVICE << 8, 0, 18)
    head = control(device, 0x80, GET_DESCRIPTOR, DT_CONFIG << 8, 0, 9)
    total = struct.unpack_from("<H", head, 2)[0]
    config = control(device, 0x80, GET_DESCRIPTOR, DT_CONFIG << 8, 0, total)
    (bcd_usb, dclass, dsub, dproto, mps0, vid, pid, bcd_dev,
     i_man, i_prod, i_ser) = struct.unpack_from("<HBBBBHHHBBB", dev, 2)
    interfaces = parse_config(config)
    for iface in interfaces:
        if iface.is_hid:
            iface.report_descriptor = _report_descriptor(device, iface.number, config)
    return UsbDescription(
        device_descriptor=dev, config_descriptor=config, vendor_id=vid, product_id=pid,
        bcd_device=bcd_dev, bcd_usb=bcd_usb, device_class=dclass, device_subclass=dsub,
        device_protocol=dproto, max_packet0=mps0,
        manufacturer=_string(device, i_man), product=_string(device, i_prod),
        serial=_string(device, i_ser), config_value=config[5],
        config_attributes=config[7], max_power_ma=config[8] * 2, interfaces=interfaces,
    )


def _report_descriptor(device: Any, ifnum: int, config: bytes) -> bytes:
    length = _report_length(config, ifnum) or 4096
    try:
        return control(device, 0x81, GET_DESCRIPTOR, DT_REPORT << 8, ifnum, length)
    except ControlError:
        return b""


def _report_length(config: bytes, ifnum: int) -> int:
    """wDescriptorLength of the report descriptor in interface ``ifnum``'s HID descriptor."""
    current = None
    for desc in usb_core.iter_descriptors(config, offset=config[0] if config else 0):
        if desc[1] == DT_INTERFACE and len(desc) >= 3:
            current = desc[2]
        elif desc[1] == DT_HID and current == ifnum and len(desc) >= 9:
            for i in range(desc[5]):
                off = 6 + 3 * i
                if off + 3 <= len(desc) and desc[off] == DT_REPORT:
                    return int(struct.unpack_from("<H", desc, off + 1)[0])
    return 0


def report_sizes(report_descriptor: bytes) -> dict[str, int]:
    """Largest input, output and feature report (bytes, without a report ID) in a HID
    report descriptor, and whether it uses report IDs; enough for hidraw's buffers."""
    sizes = {"input": 0, "output": 0, "feature": 0}
    bits = {"input": {}, "output": {}, "feature": {}}  # type: dict[str, dict[int, int]]
    report_size = report_count = report_id = 0
    uses_ids = False
    stack: list[tuple[int, int, int]] = []
    i = 0
    rd = report_descriptor
    while i < len(rd):
        prefix = rd[i]
        if prefix == 0xFE:  # long item
            if i + 1 >= len(rd):
                break
            i += 3 + rd[i + 1]
            continue
        size = (0, 1, 2, 4)[prefix & 0x03]
        value = int.from_bytes(rd[i + 1:i + 1 + size], "little")
        tag_type = prefix & 0xFC
        i += 1 + size
        if tag_type == 0x74:
            report_size = value
        elif tag_type == 0x94:
            report_count = value
        elif tag_type == 0x84:
            report_id, uses_ids = value, True
        elif tag_type == 0xA4:
            stack.append((report_size, report_count, report_id))
        elif tag_type == 0xB4 and stack:
            report_size, report_count, report_id = stack.pop()
        elif tag_type in (0x80, 0x90, 0xB0):
            kind = {0x80: "input", 0x90: "output", 0xB0: "feature"}[tag_type]
            bits[kind][report_id] = bits[kind].get(report_id, 0) + report_size * report_count
    for kind, per_id in bits.items():
        sizes[kind] = max(((b + 7) // 8 for b in per_id.values()), default=0)
    sizes["report_ids"] = int(uses_ids)
    return sizes


def usage_page(report_descriptor: bytes) -> int:
    """The first Usage Page of a report descriptor (0xF1D0 for FIDO, 0x01 for a keyboard)."""
    i = 0
    rd = report_descriptor
    while i < len(rd):
        prefix = rd[i]
        size = (0, 1, 2, 4)[prefix & 0x03]
        if prefix & 0xFC == 0x04:
            return int.from_bytes(rd[i + 1:i + 1 + size], "little")
        i += 1 + size
    return 0
