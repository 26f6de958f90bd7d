"""The sysfs tree of a plugged key, read by udev's own tool as rules and libudev see it."""

from __future__ import annotations

from umockdev_helpers import run


def _node_name(path: str) -> str:
    return path.rsplit("/", 1)[1]


def test_udevadm_sees_hidraw_under_hid_under_usb_interface_under_the_key(plugged_key):
    node = _node_name(plugged_key.hidraw)
    props = run(plugged_key, ["udevadm", "info", "--query=property",
                              f"--path=/sys/class/hidraw/{node}"]).stdout
    assert f"DEVNAME=/dev/{node}" in props and "SUBSYSTEM=hidraw" in props
    walk = run(plugged_key, ["udevadm", "info", "-a", "-p", f"/sys/class/hidraw/{node}"]).stdout
    assert 'SUBSYSTEMS=="hid"' in walk and 'DRIVERS=="hid-generic"' in walk
    assert 'DRIVERS=="usbhid"' in walk and 'ATTRS{bInterfaceClass}=="03"' in walk
    assert 'ATTRS{idVendor}=="1050"' in walk and 'ATTRS{idProduct}=="0407"' in walk
    assert 'ATTRS{manufacturer}=="Yubico"' in walk
    assert f'ATTRS{{serial}}=="{plugged_key.key.serial}"' in walk
    # the rules in udev/70-hwtoken.rules match on these (vendor, hidraw subsystem)


def test_hid_parent_carries_hid_id_name_and_report_descriptor(plugged_key):
    tree = plugged_key.testbed.root / "sys" / "class" / "hidraw"
    hid = (tree / _node_name(plugged_key.hidraw)).resolve().parent.parent
    uevent = (hid / "uevent").read_text()
    assert "HID_ID=0003:00001050:00000407" in uevent
    assert "HID_NAME=Yubico YubiKey OTP+FIDO+CCID" in uevent
    assert (hid / "report_descriptor").read_bytes()[:3] == b"\x06\xd0\xf1"  # FIDO page


def test_usb_device_has_descriptors_and_a_usbfs_node(plugged_key):
    out = run(plugged_key, ["udevadm", "info", "--query=property",
                            "--path=/sys/bus/usb/devices/1-1"]).stdout
    assert "DEVTYPE=usb_device" in out and "PRODUCT=1050/407/574" in out
    assert f"DEVNAME={plugged_key.plugged.usbfs}" in out
    ls = run(plugged_key, ["ls", "-l", plugged_key.plugged.usbfs]).stdout
    assert ls.startswith("c")  # a character device to the program, as usbfs is
    desc = (plugged_key.testbed.root / "sys/bus/usb/devices/1-1/descriptors").read_bytes()
    assert desc[:2] == b"\x12\x01" and desc[8:12] == b"\x50\x10\x07\x04"


def test_the_machines_own_devices_are_hidden(plugged_key):
    listing = run(plugged_key, ["ls", "/dev"]).stdout.split()
    assert set(listing) <= {"bus", "hidraw0", "hidraw1"}
