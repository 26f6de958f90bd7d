"""The served key as USB sees it: descriptors through pyusb, `usbip list -r`, python-yubico."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import usb.backend.libusb1
import usb.core
import usb.util
from fido2.hid.base import parse_report_descriptor
from hypothesis import given, settings
from hypothesis import strategies as st
from usbip.classes.host.hid import parse_report_descriptor as parse_hid_items

from hwtoken.emulator import usb as vusb
from hwtoken.emulator.ccid import class_descriptor
from hwtoken.emulator.iso7816 import YUBIKEY_USB_ATR
from hwtoken.emulator.transports.pyusb_backend import UsbipBackend, use_backend


@pytest.fixture
def backend(usbip_server):
    b = UsbipBackend(usbip_server.host, usbip_server.port)
    yield b
    b.close()


def test_pyusb_enumerates_and_reads_descriptors(backend):
    dev = usb.core.find(idVendor=0x1050, backend=backend)
    assert dev is not None
    try:
        assert (dev.idVendor, dev.idProduct) == (0x1050, 0x0407)
        assert dev.bcdDevice == 0x0574  # firmware 5.7.4
        assert dev.manufacturer == "Yubico"
        assert dev.product == "YubiKey OTP+FIDO+CCID"
        assert dev.serial_number == "12345678"
        cfg = dev[0]
        assert cfg.bNumInterfaces == 3
        assert cfg.wTotalLength == 150  # as a real YubiKey 5's
        otp, fido, ccid = cfg[(0, 0)], cfg[(1, 0)], cfg[(2, 0)]
        assert (otp.bInterfaceClass, otp.bInterfaceSubClass, otp.bInterfaceProtocol) == (3, 1, 1)
        assert [(e.bEndpointAddress, e.wMaxPacketSize) for e in otp] == [(0x81, 8)]
        assert (fido.bInterfaceClass, fido.bInterfaceSubClass) == (3, 0)
        eps = {e.bEndpointAddress: e for e in fido}
        assert set(eps) == {0x84, 0x04}
        assert all(usb.util.endpoint_type(e.bmAttributes) == usb.util.ENDPOINT_TYPE_INTR
                   and e.wMaxPacketSize == 64 for e in eps.values())
        # the HID class descriptor rides in the interface's extra descriptors
        assert bytes(fido.extra_descriptors)[1] == 0x21
        assert (ccid.bInterfaceClass, ccid.bInterfaceSubClass) == (0x0B, 0)
        assert bytes(ccid.extra_descriptors) == class_descriptor()
        assert [(e.bEndpointAddress, usb.util.endpoint_type(e.bmAttributes), e.wMaxPacketSize)
                for e in ccid] == [(0x02, usb.util.ENDPOINT_TYPE_BULK, 64),
                                   (0x82, usb.util.ENDPOINT_TYPE_BULK, 64),
                                   (0x83, usb.util.ENDPOINT_TYPE_INTR, 8)]
    finally:
        usb.util.dispose_resources(dev)


def test_ccid_messages_over_usbip_reach_the_card_os(backend):
    """PC_to_RDR messages on bulk OUT 0x02, answers on bulk IN 0x82, the slot change on
    interrupt IN 0x83: what libccid does on a host that attached the key (vhci-hcd)."""
    dev = usb.core.find(idVendor=0x1050, backend=backend)
    try:
        dev.set_configuration()  # a bus reset for the model: the notification is queued again
        assert bytes(dev.read(0x83, 8, timeout=2000)) == bytes([0x50, 0x03])  # card present
        dev.write(0x02, bytes([0x62, 0, 0, 0, 0, 0, 7, 0, 0, 0]), timeout=2000)  # IccPowerOn
        answer = bytes(dev.read(0x82, 3072, timeout=2000))
        assert answer[0] == 0x80 and answer[6] == 7 and answer[7] == 0  # DataBlock, bSeq
        assert answer[10:] == YUBIKEY_USB_ATR
        select = bytes.fromhex("00a4040008a000000527471117")  # the management applet
        dev.write(0x02, struct.pack("<BIBBBBB", 0x6F, len(select), 0, 8, 0, 0, 0) + select,
                  timeout=2000)
        answer = bytes(dev.read(0x82, 3072, timeout=2000))
        assert answer[6] == 8 and answer[10:] == b"5.7.4\x90\x00"
    finally:
        usb.util.dispose_resources(dev)


def test_report_descriptors_are_a_yubikeys(backend):
    dev = usb.core.find(idVendor=0x1050, backend=backend)
    try:
        fido_rd = bytes(dev.ctrl_transfer(0x81, 0x06, 0x2200, 1, 256))
        otp_rd = bytes(dev.ctrl_transfer(0x81, 0x06, 0x2200, 0, 256))
    finally:
        usb.util.dispose_resources(dev)
    assert fido_rd == vusb.FIDO_REPORT_DESCRIPTOR
    assert fido_rd[:3] == bytes([0x06, 0xD0, 0xF1])  # usage page 0xF1D0
    assert parse_report_descriptor(fido_rd) == (64, 64)  # how fido2 recognises a FIDO key
    assert len(otp_rd) == 71
    reports, numbered = parse_hid_items(otp_rd)
    assert not numbered
    assert reports[(3, 0)].size == 8  # the configuration protocol's feature report
    assert reports[(1, 0)].size == 8  # boot keyboard input report


def test_feature_reports_reach_the_otp_engine(backend):
    dev = usb.core.find(idVendor=0x1050, backend=backend)
    try:
        status = bytes(dev.ctrl_transfer(0xA1, 0x01, 0x0300, 0, 8))
        assert status[1:4] == bytes([5, 7, 4])  # status report: firmware version
        assert dev.ctrl_transfer(0x21, 0x09, 0x0300, 0, bytes(7) + b"\x8f") == 8
        with pytest.raises(usb.core.USBError):  # a feature report is 8 bytes, no more
            dev.ctrl_transfer(0x21, 0x09, 0x0300, 0, bytes(9))
    finally:
        usb.util.dispose_resources(dev)


def test_python_yubico_finds_the_key_through_the_default_backend(usbip_server):
    import yubico

    original = usb.backend.libusb1.get_backend
    with UsbipBackend(usbip_server.host, usbip_server.port) as b, use_backend(b):
        yk = yubico.find_yubikey()
        assert yk.version() == "5.7.4"
        del yk
    assert usb.backend.libusb1.get_backend is original


def test_backend_lists_nothing_when_the_server_is_gone(usbip_key):
    from hwtoken.emulator.serve import served

    with served(usbip_key) as srv:
        host, port = srv.host, srv.port
    assert usb.core.find(idVendor=0x1050, backend=UsbipBackend(host, port)) is None


@pytest.mark.system
def test_debian_usbip_tool_lists_the_key(usbip_server):
    tool = shutil.which("usbip") or "/usr/sbin/usbip"
    assert Path(tool).exists(), "the usbip tool is installed by make test"
    out = subprocess.run([tool, "--tcp-port", str(usbip_server.port), "list", "-r", "127.0.0.1"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "1050:0407" in text
    assert "1-1" in text
    assert "(03/01/01)" in text  # boot keyboard: the OTP interface
    assert "(03/00/00)" in text  # FIDO HID
    assert "(0b/00/00)" in text  # Chip/SmartCard: CCID


VHCI = Path("/sys/devices/platform/vhci_hcd.0")


@pytest.mark.system
@pytest.mark.skipif(not VHCI.exists(), reason="usbip attach needs the vhci-hcd kernel module "
                    "(modprobe vhci-hcd); /sys/devices/platform/vhci_hcd.0 is absent here")
def test_usbip_attach_makes_a_real_usb_device(usbip_server):  # pragma: no cover - needs vhci
    tool = shutil.which("usbip") or "/usr/sbin/usbip"
    out = subprocess.run([tool, "--tcp-port", str(usbip_server.port), "attach", "-r",
                          "127.0.0.1", "-b", "1-1"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    try:
        import time

        deadline = time.monotonic() + 10
        found = False
        while time.monotonic() < deadline and not found:
            found = any("1050" in (p / "idVendor").read_text()
                        for p in Path("/sys/bus/usb/devices").glob("*")
                        if (p / "idVendor").exists())
            time.sleep(0.2)
        assert found
    finally:
        import re

        ports = subprocess.run([tool, "port"], capture_output=True, text=True, timeout=20)
        ours = f"127.0.0.1:{usbip_server.port}/1-1"
        for block in re.split(r"(?=Port \d+:)", ports.stdout):
            m = re.match(r"Port (\d+):", block)
            if m and ours in block:  # only the port we attached
                subprocess.run([tool, "detach", "-p", m.group(1)], capture_output=True,
                               timeout=20)


def test_touch_types_the_hotp_code_on_the_keyboard_endpoint(usbip_server, usbip_key):
    """python-yubico programs HOTP over USB/IP; a touch types it as boot-keyboard reports."""
    import base64

    import pyotp
    import yubico

    from hwtoken.emulator.applets.otp.hid import press
    from hwtoken.emulator.applets.otp.keyboard import decode

    secret = bytes(range(20))
    with UsbipBackend(usbip_server.host, usbip_server.port) as b, use_backend(b):
        yk = yubico.find_yubikey()
        cfg = yk.init_config()
        cfg.mode_oath_hotp(b"h:" + secret.hex().encode(), digits=6)
        yk.write_config(cfg, slot=1)
        del yk
    with UsbipBackend(usbip_server.host, usbip_server.port) as b:
        dev = usb.core.find(idVendor=0x1050, backend=b)
        dev.set_configuration(1)
        try:
            typed = press(usbip_key, 1)
            reports = []
            while len(decode(reports)) < len(typed):
                reports.append(bytes(dev.read(0x81, 8, timeout=5000)))
        finally:
            usb.util.dispose_resources(dev)
    expected = pyotp.HOTP(base64.b32encode(secret).decode()).at(0)
    assert typed.strip() == expected
    assert decode(reports).strip() == expected


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_config_parser_takes_any_bytes(blob):
    from hwtoken.emulator.transports.pyusb_backend import _parse_config

    for alts in _parse_config(blob):
        for alt in alts:
            assert len(alt.desc) >= 9 and alt.desc[1] == 4
            assert all(len(d) >= 7 and d[1] == 5 for d, _extra in alt.endpoints)


def test_config_parser_on_the_served_configuration(usbip_key):
    from hwtoken.emulator.transports.pyusb_backend import _parse_config
    from hwtoken.emulator.usb import YubiKeyUsb

    cfg = YubiKeyUsb(usbip_key, with_otp_engine=False).device.config_bytes()
    (otp,), (fido,), (ccid,) = _parse_config(cfg)
    assert otp.extra[1] == 0x21 and len(otp.endpoints) == 1
    assert [d[2] for d, _ in fido.endpoints] == [0x84, 0x04]
    assert ccid.extra == class_descriptor()
    assert [d[2] for d, _ in ccid.endpoints] == [0x02, 0x82, 0x83]


def test_backend_close_also_closes_handles_that_reconnected(usbip_server):
    """A handle used after close() imports again; the next close() must end that session."""
    import time

    def sessions_end() -> bool:
        deadline = time.monotonic() + 5
        while usbip_server.usb.session_count and time.monotonic() < deadline:
            time.sleep(0.01)
        return usbip_server.usb.session_count == 0

    backend = UsbipBackend(usbip_server.host, usbip_server.port)
    dev = usb.core.find(idVendor=0x1050, backend=backend)
    try:
        assert bytes(dev.ctrl_transfer(0xA1, 0x01, 0x0300, 0, 8))[1:4] == bytes([5, 7, 4])
        assert usbip_server.usb.session_count == 1
        backend.close()
        assert sessions_end()
        # the same pyusb device keeps working: its handle imports again
        assert bytes(dev.ctrl_transfer(0xA1, 0x01, 0x0300, 0, 8))[1:4] == bytes([5, 7, 4])
        assert usbip_server.usb.session_count == 1
        backend.close()  # ...and this close reaches the re-imported session
        assert sessions_end()
    finally:
        usb.util.dispose_resources(dev)
        backend.close()


def test_a_reboot_that_changes_the_interfaces_re_enumerates_over_usbip(usbip_server, backend):
    """WRITE CONFIG with the reboot flag (here yubikit's DeviceConfig sent with the YubiKey
    vendor command over CTAPHID) disabling OTP: the server drops its hosts once the key has
    answered, and the device found after has the FIDO and CCID interfaces only, as
    product 0x0406."""
    import time

    from yubikit.core import TRANSPORT
    from yubikit.management import CAPABILITY, DeviceConfig

    from hwtoken.emulator.transports.usbip_fido import open_usbip_fido

    fido = open_usbip_fido(*usbip_server.address)
    try:
        config = DeviceConfig({TRANSPORT.USB: CAPABILITY.U2F | CAPABILITY.FIDO2
                               | CAPABILITY.OATH | CAPABILITY.PIV})
        fido.call(0x43, config.get_bytes(reboot=True))  # yubikit's CTAP_WRITE_CONFIG
    finally:
        fido.close()
    deadline = time.monotonic() + 20
    found = classes = None
    while True:  # until the key is back as the new device (or the deadline)
        dev = None
        try:  # the key may go while being found or read (the server closes the import,
            dev = usb.core.find(idVendor=0x1050, backend=backend)  # no string descriptors)
            if dev is not None:
                found = (dev.idProduct, dev.product, dev[0].bNumInterfaces)
                if found[0] != 0x0407:
                    classes = (dev[0][(0, 0)].bInterfaceClass, dev[0][(1, 0)].bInterfaceClass)
        except (usb.core.USBError, ValueError):
            pass  # it is rebooting
        finally:
            if dev is not None:
                usb.util.dispose_resources(dev)
        if classes is not None or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert found == (0x0406, "YubiKey FIDO+CCID", 2)
    assert classes == (3, 0x0B)  # FIDO HID, CCID
