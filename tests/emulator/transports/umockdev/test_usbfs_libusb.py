"""usbfs under the testbed, through libusb as admins' tools use it: pyusb, python-yubico
(``hwtoken yubikey`` with no --device, exactly the real-key path), and Yubico's own C tools
(ykinfo, ykchalresp, ykpersonalize from yubikey-personalization, built on libusb)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyotp
import pytest
from umockdev_helpers import run

from hwtoken.emulator import VirtualKey
from hwtoken.emulator.applets.otp.hid import press
from hwtoken.emulator.transports.umockdev import testbed


def py(plugged, script: str, **kwargs):
    return run(plugged, ["python", "-c", script], **kwargs)


def test_pyusb_finds_the_key_with_its_descriptors_and_strings(plugged_key):
    out = py(plugged_key, (
        "import usb.core, usb.util\n"
        "d = usb.core.find(idVendor=0x1050)\n"
        "print(hex(d.idProduct), d.bus, d.address, usb.util.get_string(d, d.iProduct),\n"
        "      usb.util.get_string(d, d.iSerialNumber), d.get_active_configuration()\n"
        "      .bConfigurationValue, [i.bInterfaceClass for i in d.get_active_configuration()])\n"
    )).stdout.split()
    pid = plugged_key.plugged.description.product_id
    assert out[0] == hex(pid) and out[1:3] == ["1", str(plugged_key.plugged.devnum)]
    assert out[3:5] == ["YubiKey", "OTP+FIDO"] or "YubiKey" in " ".join(out)
    assert str(plugged_key.key.serial) in out


def test_detaching_usbhid_takes_the_hidraw_node_away_until_reattached(plugged_key):
    out = py(plugged_key, (
        "import glob, usb.core\n"
        "d = usb.core.find(idVendor=0x1050)\n"
        "print(sorted(glob.glob('/dev/hidraw*')), d.is_kernel_driver_active(0))\n"
        "d.detach_kernel_driver(0)\n"
        "print(sorted(glob.glob('/dev/hidraw*')), d.is_kernel_driver_active(0))\n"
        "d.attach_kernel_driver(0)\n"
        "print(sorted(glob.glob('/dev/hidraw*')), d.is_kernel_driver_active(0))\n"
    )).stdout.splitlines()
    otp, fido = plugged_key.otp_hidraw, plugged_key.hidraw
    assert out[0] == str(sorted([otp, fido])) + " True"
    assert out[1] == str([fido]) + " False"  # usbhid let go of the OTP interface
    assert out[2] == str(sorted([otp, fido])) + " True"


def test_hwtoken_yubikey_admin_flow_with_no_device(plugged_key):
    info = json.loads(run(plugged_key, ["hwtoken", "yubikey", "info", "--json"]).stdout)
    assert info["serial"] == plugged_key.key.serial and info["virtual"] is False
    secret = pyotp.random_base32(32)
    run(plugged_key, ["hwtoken", "yubikey", "hotp", "program", "1", "--secret", "-"],
        input=secret + "\n")
    hmac_key = os.urandom(20)
    run(plugged_key, ["hwtoken", "yubikey", "chalresp", "program", "2", "--secret", "-"],
        input=hmac_key.hex() + "\n")
    challenge = os.urandom(32)
    calc = run(plugged_key, ["hwtoken", "yubikey", "chalresp", "calc", "2", challenge.hex()])
    assert calc.stdout.strip() == hmac.new(hmac_key, challenge, hashlib.sha1).hexdigest()
    # the HOTP slot types the RFC 4226 code when touched: read it as the keyboard it is
    reader = plugged_key.popen([sys.executable, "-c", (
        "import usb.core, usb.util\n"
        "from hwtoken.emulator.applets.otp.keyboard import decode\n"
        "d = usb.core.find(idVendor=0x1050)\n"
        "if d.is_kernel_driver_active(0):\n"
        "    d.detach_kernel_driver(0)\n"
        "print('ready', flush=True)\n"
        "reports = []\n"
        "while not decode(reports).endswith('\\n'):\n"
        "    try:\n"
        "        reports.append(bytes(d.read(0x81, 8, timeout=200)))\n"
        "    except usb.core.USBTimeoutError:\n"
        "        print('timed out', flush=True)\n"
        "usb.util.release_interface(d, 0)\n"
        "d.attach_kernel_driver(0)\n"
        "print(decode(reports).strip())\n")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    assert reader.stdout.readline().strip() == "ready"
    # two 200 ms reads time out first (libusb discards those URBs), then the touch types
    assert [reader.stdout.readline().strip() for _ in range(2)] == ["timed out"] * 2
    press(plugged_key.key, 1)
    typed, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    assert typed.strip().splitlines()[-1] == pyotp.HOTP(secret).at(0)
    run(plugged_key, ["hwtoken", "yubikey", "swap", "--force"])
    calc = run(plugged_key, ["hwtoken", "yubikey", "chalresp", "calc", "1", challenge.hex()])
    assert calc.stdout.strip() == hmac.new(hmac_key, challenge, hashlib.sha1).hexdigest()
    run(plugged_key, ["hwtoken", "yubikey", "delete", "1", "--force"])
    info = json.loads(run(plugged_key, ["hwtoken", "yubikey", "info", "--json"]).stdout)
    assert info["slots"]["1"]["kind"] == "empty" and info["slots"]["2"]["programmed"]
    # python-yubico gave the OTP interface back to usbhid each time it closed the key
    assert plugged_key.otp_hidraw.startswith("/dev/hidraw")


def test_yubico_personalization_tools(plugged_key):
    info = run(plugged_key, ["ykinfo", "-s", "-v"]).stdout
    assert f"serial: {plugged_key.key.serial}" in info and "version: 5.7.4" in info
    secret = os.urandom(20)
    run(plugged_key, ["ykpersonalize", "-2", "-ochal-resp", "-ochal-hmac",
                      "-ohmac-lt64", "-oserial-api-visible", "-y", "-a" + secret.hex()])
    challenge = os.urandom(16)
    out = run(plugged_key, ["ykchalresp", "-2", "-x", challenge.hex()]).stdout.strip()
    assert out == hmac.new(secret, challenge, hashlib.sha1).hexdigest()
    # and python-yubico agrees with what Yubico's tool programmed
    calc = run(plugged_key, ["hwtoken", "yubikey", "chalresp", "calc", "2", challenge.hex()])
    assert calc.stdout.strip() == out


def test_reset_and_connection_info_through_libusb(plugged_key):
    out = py(plugged_key, (
        "import usb.core, usb.util\n"
        "d = usb.core.find(idVendor=0x1050)\n"
        "print(d.speed)\n"  # libusb: from sysfs/CONNINFO: a full-speed device (2)
        "d.reset()\n"  # USBDEVFS_RESET: the key starts over, and still answers
        "print(usb.util.get_string(d, d.iManufacturer))\n"
    )).stdout.split()
    assert out == ["2", "Yubico"]


def test_a_touch_types_on_the_otp_hidraw_node(plugged_key):
    """The OTP interface is a keyboard: a reader of its hidraw node gets the 8-byte input
    reports a touch types (here, an HOTP code)."""
    secret = pyotp.random_base32(32)
    run(plugged_key, ["hwtoken", "yubikey", "hotp", "program", "2", "--secret", "-"],
        input=secret + "\n")
    reader = plugged_key.popen([sys.executable, "-c", (
        "import os, select, sys\n"
        "from hwtoken.emulator.applets.otp.keyboard import decode\n"
        f"fd = os.open({plugged_key.otp_hidraw!r}, os.O_RDONLY)\n"
        "print('ready', flush=True)\n"
        "reports = []\n"
        "while not decode(reports).endswith('\\n'):\n"
        "    if select.select([fd], [], [], 30)[0]:\n"
        "        reports.append(os.read(fd, 64))\n"
        "    else:\n"
        "        sys.exit('nothing typed')\n"
        "print(decode(reports).strip())\n")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    assert reader.stdout.readline().strip() == "ready"
    press(plugged_key.key, 2)
    typed, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    assert typed.strip() == pyotp.HOTP(secret).at(0)


CLAIM_CCID = (
    "import usb.core, usb.util\n"
    "d = usb.core.find(idVendor=0x1050)\n"
    "ccid = [i.bInterfaceNumber for i in d.get_active_configuration()\n"
    "        if i.bInterfaceClass == 0x0B][0]\n"
    "usb.util.claim_interface(d, ccid)\n"
    "print('claimed', ccid)\n"
)


@pytest.mark.parametrize("length", [40, 54, 55, 60, 80])
def test_a_long_temporary_directory_still_lets_libusb_claim_the_interfaces(length):
    """Fixed: a testbed under a directory of 55-60 characters (pytest's basetemp once its
    run counter has six digits) put the usbfs node's socket past what umockdev's preload
    can name; the open fell back to ioctl/_default and libccid's claim failed
    (LIBUSB_ERROR_OTHER). Such a directory is now given up for /tmp."""
    base = Path(tempfile.mkdtemp(prefix="hwt-", dir="/tmp"))
    try:
        long_dir = base / ("d" * (length - len(str(base)) - 1))
        long_dir.mkdir()
        assert len(str(long_dir)) == length
        key = VirtualKey.create(base / "k.key", serial=27182818)
        with testbed.Testbed(tmpdir=long_dir) as bed:
            bed.plug(key)
            proc = bed.run([sys.executable, "-c", CLAIM_CCID], capture_output=True,
                           text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.split() == ["claimed", "2"]
            umockdev_path = f"{bed.root}/ioctl//dev/{bed.plugged[0].tree.usbfs}"
            assert len(umockdev_path) <= testbed.SUN_PATH_MAX
        key.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
