"""pcscd with Debian's own CCID driver (libccid) reaches the virtual key's CCID interface
through libudev, libusb and usbfs, as it reaches a real YubiKey 5 -- no vpcd, no root-only
kernel module; the key is plugged into a umockdev testbed and pcscd runs inside it.

One testbed and one pcscd serve the whole module (programs are started per test). PC/SC
clients (pcsc_scan, opensc-tool, ykman, hwtoken) only need pcscd's socket; the few that
also look at USB (``ykman list``) get the testbed's environment too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyotp
import pytest
from umockdev_helpers import tool

from hwtoken.emulator import VirtualKey
from hwtoken.emulator.iso7816 import YUBIKEY_USB_ATR
from hwtoken.emulator.pcscd import YUBIKEY_5_READER, UsbPcscd
from hwtoken.emulator.presence import ApproveAfterDelay
from hwtoken.emulator.transports import umockdev

pytestmark = pytest.mark.system

READER = f"{YUBIKEY_5_READER} 00 00"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


class Bench:
    """The module's testbed, its first key and the pcscd that runs inside it."""

    def __init__(self, testbed: umockdev.Testbed, key: VirtualKey, pcscd: UsbPcscd) -> None:
        self.testbed, self.key, self.pcscd = testbed, key, pcscd

    def run(self, argv, *, usb=False, input=None, check=True, timeout=60, env=None):
        """Run a PC/SC client of the module's pcscd (with the keys' USB nodes: ``usb``)."""
        full = self.pcscd.client_env(self.testbed.env() if usb else None)
        full.pop("HWTOKEN_OATH_PASSWORD", None)
        full.update(env or {})
        proc = subprocess.run([tool(argv[0]), *argv[1:]], env=full, input=input,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} exited {proc.returncode}\nstdout: {proc.stdout}\n"
                                 f"stderr: {proc.stderr}\npcscd: {self.pcscd.log_tail()}")
        return proc


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("ccid-pcscd")
    key = VirtualKey.create(root / "first.key", serial=31415926)
    testbed = umockdev.Testbed(tmpdir=root)
    pcscd = UsbPcscd(testbed)
    try:
        testbed.plug(key)
        pcscd.start()
        pcscd.wait_for_readers(lambda names: READER in names)
        yield Bench(testbed, key, pcscd)
    finally:
        pcscd.stop()
        testbed.close()
        key.close()


def test_pcsc_tools_list_the_key_as_a_yubikey_5_reader(bench):
    assert bench.pcscd.readers() == [READER]
    listed = bench.run(["opensc-tool", "-l"]).stdout
    assert READER in listed and "Yes" in listed  # a card in the reader
    atr = bench.run(["opensc-tool", "-r", READER, "-a"]).stdout
    assert YUBIKEY_USB_ATR.hex(":") in atr  # a YubiKey's ATR over USB, not over NFC


def test_opensc_names_a_piv_card(bench):
    out = bench.run(["opensc-tool", "-r", READER, "-n"]).stdout
    assert "Personal Identity Verification Card" in out


def test_ykman_info_over_ccid_shows_the_three_interfaces(bench):
    out = bench.run(["ykman", "--reader", YUBIKEY_5_READER, "info"]).stdout
    assert f"Serial number: {bench.key.serial}" in out
    assert "Firmware version: 5.7.4" in out
    assert "Enabled USB interfaces: OTP, FIDO, CCID" in out
    assert "PIV" in out and "OATH" in out


def test_ykman_list_sees_one_key_over_usb_and_pcsc(bench):
    out = bench.run(["ykman", "list"], usb=True).stdout.strip().splitlines()
    assert len(out) == 1, out  # the HID interfaces and the CCID reader are one YubiKey
    assert "[OTP+FIDO+CCID]" in out[0] and f"Serial: {bench.key.serial}" in out[0]
    info = bench.run(["ykman", "info"], usb=True).stdout  # no --reader: the one key
    assert "Enabled USB interfaces: OTP, FIDO, CCID" in info
    assert f"Serial number: {bench.key.serial}" in info


def test_ykman_oath_accounts_add_list_code_equal_pyotp(bench):
    reader = ["ykman", "--reader", YUBIKEY_5_READER, "oath", "accounts"]
    bench.run([*reader, "add", "--force", "Example:ccid-ykman", SECRET])
    assert "Example:ccid-ykman" in bench.run([*reader, "list"]).stdout
    for _ in range(3):  # a code read across a 30 s boundary is read again
        before = pyotp.TOTP(SECRET).now()
        out = bench.run([*reader, "code", "--single", "Example:ccid-ykman"]).stdout.strip()
        if before == pyotp.TOTP(SECRET).now():
            break
    assert out == before
    bench.run([*reader, "delete", "--force", "Example:ccid-ykman"])


def test_hwtoken_yubikey_oath_without_a_device_uses_the_reader(bench):
    def oath(*args, **kw):
        return bench.run(["hwtoken", "yubikey", "oath", *args], **kw)

    oath("add", "Acme:ccid-hwtoken", "--secret", "-", input=SECRET)
    oath("add", "ccid-counter", "--hotp", "--secret", SECRET)
    names = [a["display"] for a in json.loads(oath("list", "--json").stdout)["accounts"]]
    assert {"Acme:ccid-hwtoken", "ccid-counter"} <= set(names)
    for _ in range(3):
        before = pyotp.TOTP(SECRET).now()
        out = oath("code", "Acme:ccid-hwtoken").stdout.strip()
        if before == pyotp.TOTP(SECRET).now():
            break
    assert out == before
    assert [oath("code", "ccid-counter").stdout.strip() for _ in range(2)] == [
        pyotp.HOTP(SECRET).at(0), pyotp.HOTP(SECRET).at(1)]
    for name in ("Acme:ccid-hwtoken", "ccid-counter"):
        oath("delete", name, "--force")


def test_a_touch_longer_than_libccids_timeout_is_covered_by_time_extensions(bench):
    # libccid waits about 1.5 s for an answer (from the ATR's BWI); the key asks for more
    # time while the touch is pending, as a YubiKey does, so ykman gets its code
    reader = ["ykman", "--reader", YUBIKEY_5_READER, "oath", "accounts"]
    bench.run([*reader, "add", "--force", "--touch", "ccid-touch", SECRET])
    old, bench.key.presence = bench.key.presence, ApproveAfterDelay(3.0)
    try:
        for _ in range(3):
            before = pyotp.TOTP(SECRET).now()
            out = bench.run([*reader, "code", "--single", "ccid-touch"]).stdout.strip()
            if before == pyotp.TOTP(SECRET).now():
                break
    finally:
        bench.key.presence = old
    assert out == before
    bench.run([*reader, "delete", "--force", "ccid-touch"])


def test_hot_plug_unplug_and_replug_while_pcscd_runs(bench, tmp_path):
    second_reader = f"{YUBIKEY_5_READER} 01 00"
    with VirtualKey.create(tmp_path / "second.key", serial=27182818) as second:
        plugged = bench.testbed.plug(second)  # pcscd started before this key existed
        bench.pcscd.wait_for_readers(lambda names: second_reader in names)
        out = bench.run(["ykman", "--reader", second_reader, "info"]).stdout
        assert f"Serial number: {second.serial}" in out
        bench.testbed.unplug(plugged)
        assert bench.pcscd.wait_for_readers(lambda names: second_reader not in names) == [
            READER]
        assert bench.pcscd.running  # the unplug took the reader away, not pcscd
        plugged = bench.testbed.plug(second)
        bench.pcscd.wait_for_readers(lambda names: second_reader in names)
        out = bench.run(["opensc-tool", "-r", second_reader, "-n"]).stdout
        assert "Personal Identity Verification Card" in out
        bench.testbed.unplug(plugged)
        bench.pcscd.wait_for_readers(lambda names: names == [READER])
    # the first key still answers through the same pcscd
    assert f"Serial number: {bench.key.serial}" in bench.run(
        ["ykman", "--reader", READER, "info"]).stdout


def test_unplugging_the_key_a_client_holds_ends_its_session(bench):
    # pyscard in a child process holds the card while the key is pulled: its next
    # transmit fails (the reader is gone), then the replugged key answers again
    script = (
        "import sys, time\n"
        "from smartcard.System import readers\n"
        f"r = [x for x in readers() if str(x) == {READER!r}][0]\n"
        "c = r.createConnection(); c.connect()\n"
        "print(bytes(c.transmit(list(bytes.fromhex('00a4040008a000000527471117')))[0]),"
        " flush=True)\n"
        "sys.stdin.readline()\n"
        "try:\n"
        "    c.transmit(list(bytes.fromhex('00a4040008a000000527471117')))\n"
        "    print('answered')\n"
        "except Exception as exc:\n"
        "    print('failed', type(exc).__name__)\n")
    child = subprocess.Popen([sys.executable, "-c", script], env=bench.pcscd.client_env(),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "b'5.7.4'"
        [plugged] = [p for p in bench.testbed.plugged if p.key is bench.key]
        bench.testbed.unplug(plugged)
        bench.pcscd.wait_for_readers(lambda names: names == [])
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().startswith("failed")
    finally:
        child.kill()
        child.wait(10)
        if not any(p.key is bench.key for p in bench.testbed.plugged):
            bench.testbed.plug(bench.key)
        bench.pcscd.wait_for_readers(lambda names: READER in names)
    assert "Personal Identity Verification Card" in bench.run(
        ["opensc-tool", "-r", READER, "-n"]).stdout
    assert os.path.exists(bench.key.path)
