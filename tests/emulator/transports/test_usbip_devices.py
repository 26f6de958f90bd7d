"""hwtoken.devices: --device specs and reaching a virtual key with no serve running."""

from __future__ import annotations

import pytest
import usb.core

from hwtoken import devices
from hwtoken.emulator import VirtualKey
from hwtoken.errors import DeviceBusy, DeviceError, InvalidInput


@pytest.fixture
def key_name():
    VirtualKey.create(devices.key_path_for("k1", must_exist=False), serial=31337).close()
    return "k1"


def test_parse_spec():
    assert devices.parse_spec(None).raw is None
    v = devices.parse_spec("emu:foo")
    assert v.is_virtual and v.name == "foo" and v.key_path.name == "foo.key"
    s = devices.parse_spec("12345678")
    assert not s.is_virtual and s.serial == 12345678
    p = devices.parse_spec("/dev/hidraw3")
    assert p.path == "/dev/hidraw3" and not p.is_virtual
    with pytest.raises(InvalidInput):
        devices.parse_spec("emu:../x")
    with pytest.raises(InvalidInput):
        devices.parse_spec("12").key_path


def test_missing_key_is_a_clear_error():
    with pytest.raises(InvalidInput, match="emulate create nope"), devices.open_virtual("nope"):
        pass


def test_open_virtual_loads_and_locks(key_name):
    with devices.open_virtual(key_name) as handle:
        assert handle.key is not None and handle.key.serial == 31337 and not handle.served
        with pytest.raises(DeviceBusy), devices.open_virtual(key_name):
            pass
    with devices.open_virtual(key_name) as again:  # released after the block
        assert again.key is not None


def test_fido_device_in_process(key_name):
    with devices.fido_device_for(key_name) as dev:
        assert dev.ping(b"in-process") == b"in-process"
        assert not dev.descriptor.path.startswith("usbip")


def test_usbip_endpoint_serves_temporarily(key_name):
    from hwtoken.emulator.transports.usbip_fido import open_usbip_fido

    with devices.usbip_endpoint_for(key_name) as (host, port, busid):
        assert host == "127.0.0.1"
        dev = open_usbip_fido(host, port, busid)
        assert dev.descriptor.serial_number == "31337"
        dev.close()
    with pytest.raises(DeviceError, match="Connection refused"):  # gone after the block
        open_usbip_fido(host, port, busid)


def test_pyusb_backend_for_makes_python_yubico_work(key_name):
    import yubico

    with devices.pyusb_backend_for(key_name):
        found = usb.core.find(idVendor=0x1050)  # pyusb's default discovery
        assert found is not None and found.serial_number == "31337"
        usb.util.dispose_resources(found)
        yk = yubico.find_yubikey()
        assert yk.version_num() == (5, 7, 4)
        del yk
