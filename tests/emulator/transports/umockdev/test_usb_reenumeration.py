"""A YubiKey has only the USB interfaces of the applications enabled over USB when it
powers up, and its product ID says which (0x0401-0x0407). `ykman config usb` that changes
them makes the key reboot: it leaves the bus once ykman has its answer and comes back as
the new device; `ykman config mode` takes effect at the next plug. Real ykman, pcscd with
Debian's libccid and python-fido2 see it as they see a real key, in a umockdev testbed."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from umockdev_helpers import tool

from hwtoken.emulator import VirtualKey
from hwtoken.emulator.pcscd import YUBIKEY_5_READER, UsbPcscd
from hwtoken.emulator.transports import umockdev

pytestmark = pytest.mark.system

READER_ALL = f"{YUBIKEY_5_READER} 00 00"  # "Yubico YubiKey OTP+FIDO+CCID 00 00"
READER_CCID = "Yubico YubiKey CCID 00 00"
COUNT_FIDO_DEVICES = ("from fido2.hid import CtapHidDevice; "
                      "print(len(list(CtapHidDevice.list_devices())))")


class Bench:
    """A key in a testbed with a pcscd inside it; hears of the key's reboots."""

    def __init__(self, testbed: umockdev.Testbed, key: VirtualKey, pcscd: UsbPcscd) -> None:
        self.testbed, self.key, self.pcscd = testbed, key, pcscd
        self.plugged = testbed.plugged[0]
        self._rebooted = threading.Event()
        testbed.on_replug.append(self._replugged)

    def _replugged(self, key, plugged) -> None:
        self.plugged = plugged
        self._rebooted.set()

    def ykman(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = self.pcscd.client_env(self.testbed.env())
        log = self.testbed.root / "ykman.log"  # ykman's own account, shown if it fails
        log.unlink(missing_ok=True)
        proc = subprocess.run([tool("ykman"), "-l", "debug", "--log-file", str(log), *args],
                              env=env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, (f"ykman {args}: {proc.stdout}{proc.stderr}\n"
                                      f"its log:\n{log.read_text() if log.exists() else ''}")
        return proc

    def ykman_rebooting(self, *args: str) -> subprocess.CompletedProcess[str]:
        """ykman with a command that reboots the key; returns once it is back."""
        self._rebooted.clear()
        proc = self.ykman(*args)
        assert "The YubiKey will reboot" in proc.stdout
        assert self._rebooted.wait(20), "the key did not come back"
        return proc

    def fido_devices(self) -> int:
        """How many FIDO HID devices python-fido2's Linux backend finds."""
        out = self.testbed.run([sys.executable, "-c", COUNT_FIDO_DEVICES],
                               capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return int(out.stdout)


@pytest.fixture
def bench(tmp_path):
    key = VirtualKey.create(tmp_path / "k.key", serial=31000001)
    testbed = umockdev.Testbed(tmpdir=tmp_path)
    pcscd = UsbPcscd(testbed, workdir=tmp_path / "pcscd")
    try:
        testbed.plug(key)
        pcscd.start()
        pcscd.wait_for_readers(lambda names: READER_ALL in names)
        yield Bench(testbed, key, pcscd)
    finally:
        pcscd.stop()
        testbed.close()
        key.close()


def test_ykman_config_usb_reboots_the_key_into_the_device_its_applications_make(bench):
    model = bench.plugged.usb.model
    assert (model.product_id, model.interfaces) == (0x0407, ("otp", "fido", "ccid"))
    assert bench.plugged.otp_hidraw and bench.plugged.fido_hidraw
    assert bench.fido_devices() == 1

    bench.ykman_rebooting("config", "usb", "--disable", "OTP", "--disable", "U2F",
                          "--disable", "FIDO2", "--force")
    model = bench.plugged.usb.model
    assert (model.product_id, model.product, model.interfaces) == (
        0x0404, "YubiKey CCID", ("ccid",))
    # no HID interface left: neither CTAP2/U2F (FIDO) nor the OTP protocol answer
    assert bench.plugged.hidraw == []
    assert bench.fido_devices() == 0
    assert bench.pcscd.wait_for_readers(lambda names: names == [READER_CCID])
    info = bench.ykman("info").stdout
    assert "Enabled USB interfaces: CCID\n" in info

    bench.ykman_rebooting("config", "usb", "--enable-all", "--force")  # over CCID
    model = bench.plugged.usb.model
    assert (model.product_id, model.interfaces) == (0x0407, ("otp", "fido", "ccid"))
    assert bench.plugged.otp_hidraw and bench.fido_devices() == 1
    assert bench.pcscd.wait_for_readers(lambda names: names == [READER_ALL])


def test_ykman_config_mode_takes_effect_at_the_next_plug(bench):
    done = bench.ykman("config", "mode", "FIDO+CCID", "--force")
    assert "remove and re-insert" in done.stdout
    assert bench.plugged.usb.model.product_id == 0x0407  # no reboot: as it was
    listed = bench.ykman("config", "usb", "--list").stdout
    assert "OTP" not in listed and "FIDO2" in listed and "PIV" in listed
    from hwtoken.emulator.applets.management import ManagementApplet

    assert ManagementApplet(bench.key).state["chalresp_timeout"] == 15  # 0 means 15
    bench.testbed.unplug(bench.plugged)
    bench.plugged = bench.testbed.plug(bench.key)
    model = bench.plugged.usb.model
    assert (model.product_id, model.product, model.interfaces) == (
        0x0406, "YubiKey FIDO+CCID", ("fido", "ccid"))
    assert bench.plugged.otp_hidraw is None and bench.fido_devices() == 1
    assert bench.pcscd.wait_for_readers(lambda names: names == ["Yubico YubiKey FIDO+CCID 00 00"])
    info = bench.ykman("info").stdout
    assert "Enabled USB interfaces: FIDO, CCID" in info
