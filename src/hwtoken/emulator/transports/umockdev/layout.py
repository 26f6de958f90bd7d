"""The sysfs tree a plugged USB key has on Linux, from its enumerated descriptors.

For a YubiKey 5 on port 1 of bus 1 (``lsusb -t``, ``udevadm info -a``), the kernel makes::

    /sys/devices/pci0000:00/0000:00:14.0/usb1                      root hub (usb_device)
      1-1                                                          the key (usb_device)
        1-1:1.0                                                    OTP interface, usbhid
          0003:1050:0407.0001                                      hid device
            hidraw/hidraw0                                         /dev/hidraw0
        1-1:1.1                                                    FIDO interface, usbhid
          0003:1050:0407.0002/hidraw/hidraw1                       /dev/hidraw1
    /dev/bus/usb/001/002                                           usbfs node (libusb)

with the attributes and ``uevent`` properties that libudev, libusb, libfido2, hidapi and
python-fido2 read (``idVendor``, ``descriptors``, ``HID_ID``, ``HID_NAME``,
``report_descriptor``, ``DEVNAME``, ``dev`` ...). :func:`usb_device_tree` builds those
records from a :class:`~.enumeration.UsbDescription`; :mod:`.sysfs` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwtoken.emulator.transports.umockdev.enumeration import Interface, UsbDescription
from hwtoken.emulator.transports.umockdev.sysfs import Device

PCI_HOST = "/sys/devices/pci0000:00"
PCI_XHCI = f"{PCI_HOST}/0000:00:14.0"
PCI_SLOT = "0000:00:14.0"
USB_MAJOR = 189
HIDRAW_MAJOR = 242
BUS = 1
LINUX_HUB_VID, LINUX_HUB_PID = 0x1D6B, 0x0002
SPEED_FULL = "12"


def usb_minor(bus: int, devnum: int) -> int:
    """The char-device minor of ``/dev/bus/usb/BBB/DDD`` (drivers/usb/core/file.c)."""
    return (bus - 1) * 128 + (devnum - 1)


def usbfs_node(bus: int, devnum: int) -> str:
    return f"bus/usb/{bus:03d}/{devnum:03d}"


def _bcd(v: int) -> str:
    return f"{v >> 8:x}.{v & 0xFF:02x}"


def _hex4(v: int) -> str:
    return f"{v:04x}"


def root_hub() -> list[Device]:
    """The xHCI controller and the Linux root hub of bus 1 (what libusb lists first)."""
    dev = _hub_descriptors()
    return [
        Device(PCI_XHCI, "pci", driver="xhci_hcd",
               properties={"PCI_CLASS": "C0330", "PCI_ID": "8086:A36D",
                           "PCI_SLOT_NAME": PCI_SLOT,
                           "MODALIAS": "pci:v00008086d0000A36Dsv00000000sd00000000bc0Csc03i30"},
               attributes={"vendor": "0x8086", "device": "0xa36d", "class": "0x0c0330"}),
        Device(f"{PCI_XHCI}/usb{BUS}", "usb", driver="usb",
               devnode=usbfs_node(BUS, 1), majmin=f"{USB_MAJOR}:{usb_minor(BUS, 1)}",
               properties={"DEVTYPE": "usb_device", "PRODUCT": "1d6b/2/606", "TYPE": "9/0/1",
                           "BUSNUM": f"{BUS:03d}", "DEVNUM": "001"},
               attributes={
                   "idVendor": _hex4(LINUX_HUB_VID), "idProduct": _hex4(LINUX_HUB_PID),
                   "bcdDevice": "0606", "manufacturer": "Linux 6.6.0 xhci-hcd",
                   "product": "xHCI Host Controller", "serial": PCI_SLOT,
                   "busnum": str(BUS), "devnum": "1", "devpath": "0", "speed": "480",
                   "version": " 2.00", "bDeviceClass": "09", "bDeviceSubClass": "00",
                   "bDeviceProtocol": "01", "bMaxPacketSize0": "64",
                   "bNumConfigurations": "1", "bConfigurationValue": "1",
                   "bNumInterfaces": " 1", "bmAttributes": "e0", "bMaxPower": "0mA",
                   "maxchild": "12", "removable": "unknown", "authorized": "1",
                   "descriptors": dev,
               }),
    ]


def _hub_descriptors() -> bytes:
    """Device and configuration descriptors of a USB 2.0 root hub (1d6b:0002)."""
    device = bytes([18, 1, 0x00, 0x02, 9, 0, 1, 64, 0x6B, 0x1D, 0x02, 0x00, 0x06, 0x06,
                    3, 2, 1, 1])
    config = bytes([9, 2, 25, 0, 1, 1, 0, 0xE0, 0,
                    9, 4, 0, 0, 1, 9, 0, 0, 0,
                    7, 5, 0x81, 3, 4, 0, 12])
    return device + config


@dataclass
class HidNode:
    """A hidraw node of the tree, and which interface it belongs to."""

    interface: int
    hidraw: str  # "hidraw0"
    hid_syspath: str
    name: str
    phys: str
    uniq: str


@dataclass
class UsbTree:
    """The records of one plugged USB device (without the HID drivers' devices)."""

    syspath: str
    devices: list[Device]
    usbfs: str  # "bus/usb/001/002"
    interfaces: dict[int, str]  # interface number -> its syspath


def usb_device_tree(desc: UsbDescription, *, port: int, devnum: int) -> UsbTree:
    """The key on ``port`` of bus 1 with address ``devnum``: the usb_device and its
    interfaces (HID interfaces as bound to usbhid; :func:`hid_tree` adds what usbhid
    makes)."""
    name = f"{BUS}-{port}"
    syspath = f"{PCI_XHCI}/usb{BUS}/{name}"
    vid, pid, bcd = desc.vendor_id, desc.product_id, desc.bcd_device
    product = f"{vid:x}/{pid:x}/{bcd:x}"
    dtype = f"{desc.device_class}/{desc.device_subclass}/{desc.device_protocol}"
    usbfs = usbfs_node(BUS, devnum)
    attrs: dict[str, str | bytes] = {
        "idVendor": _hex4(vid), "idProduct": _hex4(pid), "bcdDevice": _hex4(bcd),
        "manufacturer": desc.manufacturer, "product": desc.product,
        "busnum": str(BUS), "devnum": str(devnum), "devpath": str(port),
        "speed": SPEED_FULL, "version": f"{_bcd(desc.bcd_usb):>5}",
        "bDeviceClass": f"{desc.device_class:02x}",
        "bDeviceSubClass": f"{desc.device_subclass:02x}",
        "bDeviceProtocol": f"{desc.device_protocol:02x}",
        "bMaxPacketSize0": str(desc.max_packet0), "bNumConfigurations": "1",
        "bConfigurationValue": str(desc.config_value),
        "bNumInterfaces": f"{len({i.number for i in desc.interfaces}):>2}",
        "bmAttributes": f"{desc.config_attributes:x}", "bMaxPower": f"{desc.max_power_ma}mA",
        "maxchild": "0", "removable": "removable", "authorized": "1",
        "avoid_reset_port": "0", "quirks": "0x0", "ltm_capable": "no",
        "rx_lanes": "1", "tx_lanes": "1", "configuration": "",
        "descriptors": desc.descriptors,
    }
    if desc.serial:
        attrs["serial"] = desc.serial
    devices = [Device(syspath, "usb", driver="usb", devnode=usbfs,
                      majmin=f"{USB_MAJOR}:{usb_minor(BUS, devnum)}",
                      properties={"DEVTYPE": "usb_device", "PRODUCT": product, "TYPE": dtype,
                                  "BUSNUM": f"{BUS:03d}", "DEVNUM": f"{devnum:03d}"},
                      attributes=attrs)]
    interfaces: dict[int, str] = {}
    for iface in desc.interfaces:
        if iface.alternate:
            continue
        ipath = f"{syspath}/{name}:{desc.config_value}.{iface.number}"
        interfaces[iface.number] = ipath
        devices.append(interface_device(desc, iface, ipath, bound=iface.is_hid))
    return UsbTree(syspath, devices, usbfs, interfaces)


def interface_device(desc: UsbDescription, iface: Interface, ipath: str, *, bound: bool
                     ) -> Device:
    """A usb_interface record, with usbhid as its driver when ``bound``."""
    vid, pid, bcd = desc.vendor_id, desc.product_id, desc.bcd_device
    modalias = (f"usb:v{vid:04X}p{pid:04X}d{bcd:04X}dc{desc.device_class:02X}"
                f"dsc{desc.device_subclass:02X}dp{desc.device_protocol:02X}"
                f"ic{iface.cls:02X}isc{iface.subclass:02X}ip{iface.protocol:02X}"
                f"in{iface.number:02X}")
    return Device(
        ipath, "usb", driver="usbhid" if bound else None,
        properties={"DEVTYPE": "usb_interface", "PRODUCT": f"{vid:x}/{pid:x}/{bcd:x}",
                    "TYPE": f"{desc.device_class}/{desc.device_subclass}/"
                            f"{desc.device_protocol}",
                    "INTERFACE": f"{iface.cls}/{iface.subclass}/{iface.protocol}",
                    "MODALIAS": modalias},
        attributes={"bInterfaceNumber": f"{iface.number:02x}",
                    "bAlternateSetting": f"{iface.alternate:2d}",
                    "bInterfaceClass": f"{iface.cls:02x}",
                    "bInterfaceSubClass": f"{iface.subclass:02x}",
                    "bInterfaceProtocol": f"{iface.protocol:02x}",
                    "bNumEndpoints": f"{len(iface.endpoints):02x}",
                    "supports_autosuspend": "1", "authorized": "1",
                    "modalias": modalias})


def hid_tree(desc: UsbDescription, iface: Interface, ipath: str, *, port: int, seq: int,
             minor: int) -> tuple[list[Device], HidNode]:
    """What usbhid makes for a HID interface: the hid device ``0003:VID:PID.SEQ`` and its
    hidraw child ``hidrawMINOR``."""
    vid, pid = desc.vendor_id, desc.product_id
    hname = f"{0x0003:04X}:{vid:04X}:{pid:04X}.{seq:04X}"
    hpath = f"{ipath}/{hname}"
    phys = f"usb-{PCI_SLOT}-{port}/input{iface.number}"
    hid = Device(
        hpath, "hid", driver="hid-generic",
        properties={"HID_ID": f"0003:{vid:08X}:{pid:08X}", "HID_NAME": desc.hid_name,
                    "HID_PHYS": phys, "HID_UNIQ": desc.serial,
                    "MODALIAS": f"hid:b0003g0001v{vid:08X}p{pid:08X}"},
        attributes={"report_descriptor": iface.report_descriptor, "country": "00"})
    node = f"hidraw{minor}"
    raw = Device(f"{hpath}/hidraw/{node}", "hidraw", devnode=node,
                 majmin=f"{HIDRAW_MAJOR}:{minor}")
    return [hid, raw], HidNode(iface.number, node, hpath, desc.hid_name, phys, desc.serial)
