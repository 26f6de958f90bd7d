"""Keys plugged in and pulled out while programs run: the uevents udev monitors and libusb
see, the errors a program holding the key gets, and nothing left behind."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time

import pytest
from umockdev_helpers import run

from hwtoken.emulator import ApproveAfterDelay, VirtualKey
from hwtoken.emulator.transports import umockdev
from hwtoken.emulator.transports.umockdev import preload


@pytest.fixture
def two_keys(tmp_path):
    keys = [VirtualKey.create(tmp_path / f"{n}.key") for n in ("a", "b")]
    yield keys
    for k in keys:
        k.close()


def _wait_for(pred, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_udev_monitor_sees_plug_and_unplug(two_keys):
    with umockdev.Testbed() as tb:
        tb.plug(two_keys[0])
        mon = tb.popen(["udevadm", "monitor", "--udev", "--subsystem-match=usb",
                        "--subsystem-match=hidraw"], stdout=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(mon.stdout.readline, "")),
                                  daemon=True)
        reader.start()
        try:
            _wait_for(lambda: any("monitor will print" in x for x in lines), "udevadm")
            # its monitor socket, bound where umockdev delivers uevents
            _wait_for(lambda: any(tb.root.glob("event*")), "udevadm's monitor socket")
            second = tb.plug(two_keys[1])
            _wait_for(lambda: sum("hidraw" in x and " add " in x for x in lines) >= 2,
                      "add events")
            tb.unplug(second)
            _wait_for(lambda: any(" remove " in x and x.rstrip().endswith("/1-2 (usb)")
                                  for x in lines), "remove event")
        finally:
            mon.terminate()
            mon.wait(10)
    events = [x.split()[2:4] for x in lines if x.startswith("UDEV")]
    assert ["add", "/devices/pci0000:00/0000:00:14.0/usb1/1-2"] in events
    assert events.index(["remove", "/devices/pci0000:00/0000:00:14.0/usb1/1-2"]) == \
        len(events) - 1  # the device goes last, after its interfaces and hidraw nodes


LIBUSB_WATCHER = (
    "import sys, usb.core\n"
    "for line in sys.stdin:\n"  # one look at the bus per line the test sends
    "    found = sorted(usb.util.get_string(d, d.iSerialNumber)\n"
    "                   for d in usb.core.find(find_all=True, idVendor=0x1050))\n"
    "    print(' '.join(found) or '-', flush=True)\n"
)


def test_a_running_libusb_program_follows_plugs(two_keys):
    """libusb learns of devices from its udev monitor (hot-plug thread), not by
    re-reading sysfs: a program that started before the plug sees it only through the
    testbed's uevents."""
    a, b = two_keys
    with umockdev.Testbed() as tb:
        tb.plug(a)
        prog = tb.popen([sys.executable, "-c", "import usb.util\n" + LIBUSB_WATCHER],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

        def look() -> str:
            prog.stdin.write("\n")
            prog.stdin.flush()
            return prog.stdout.readline().strip()

        try:
            assert look() == str(a.serial)
            pb = tb.plug(b)
            _wait_for(lambda: look() == " ".join(sorted([str(a.serial), str(b.serial)])),
                      "libusb to list the second key")
            tb.unplug(pb)
            _wait_for(lambda: look() == str(a.serial), "libusb to drop the second key")
        finally:
            prog.stdin.close()
            prog.wait(30)


class AskedThenNobodyTouches(ApproveAfterDelay):
    """Nobody touches the key within the test; ``asked`` is set once it waits for a touch."""

    def __init__(self) -> None:
        super().__init__(60)
        self.asked = threading.Event()

    def decide(self, reason, cancel, keepalive):
        self.asked.set()
        return super().decide(reason, cancel, keepalive)


def test_unplug_during_a_python_yubico_request_is_an_error_not_a_hang(tmp_path):
    key = VirtualKey.create(tmp_path / "k.key")
    with key, umockdev.Testbed() as tb:
        plugged = tb.plug(key)
        secret = os.urandom(20)
        tb.run([sys.executable, "-m", "hwtoken", "yubikey", "chalresp", "program", "2",
                "--touch", "--secret", "-"], input=secret.hex() + "\n", text=True,
               check=True, capture_output=True, timeout=60)
        key.presence = presence = AskedThenNobodyTouches()
        calc = tb.popen([sys.executable, "-m", "hwtoken", "yubikey", "chalresp", "calc", "2",
                         "00112233"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True)
        assert presence.asked.wait(30), "the request never reached the key's touch"
        tb.unplug(plugged)
        out, err = calc.communicate(timeout=60)  # an answer, not a hang (bounded here)
        assert calc.returncode in (1, 2), (out, err)
        assert err.count("error:") == 1 and "Traceback" not in err
    with VirtualKey.load(tmp_path / "k.key") as again:  # whole, and unlocked
        assert again.otp.describe()["slots"]["2"]["mode"] == "chalresp-hmac"


def test_unplug_during_a_libfido2_request_is_an_error_not_a_hang(tmp_path):
    import base64
    import hashlib

    presence = AskedThenNobodyTouches()
    key = VirtualKey.create(tmp_path / "k.key", presence=presence)
    request = tmp_path / "cred.in"
    request.write_text("\n".join([
        base64.b64encode(hashlib.sha256(b"c").digest()).decode(), "example.com", "u",
        base64.b64encode(b"uid").decode()]) + "\n")
    with key, umockdev.Testbed() as tb:
        plugged = tb.plug(key)
        path = plugged.fido_hidraw
        cred = tb.popen(["fido2-cred", "-M", "-i", str(request), path],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert presence.asked.wait(30), "fido2-cred's request never reached the touch"
        tb.unplug(plugged)
        out, err = cred.communicate(timeout=60)
        assert cred.returncode != 0
        assert "FIDO_ERR" in err
    with VirtualKey.load(tmp_path / "k.key") as again:
        assert again.serial == key.serial


def _snapshot(tb: umockdev.Testbed) -> tuple[set[str], int, int]:
    files = {str(p.relative_to(tb.root)) for p in tb.root.rglob("*")}
    return files, threading.active_count(), len(os.listdir("/proc/self/fd"))


def test_twenty_plug_cycles_leave_nothing_behind(tmp_path, plugged_key):
    key = VirtualKey.create(tmp_path / "cycled.key")
    with key:
        tb = plugged_key.testbed
        before = _snapshot(tb)
        for _ in range(20):
            p = tb.plug(key)
            assert run(plugged_key, ["fido2-token", "-L"]).stdout.count("vendor=0x1050") == 2
            tb.unplug(p)
        # a pulled key's node sockets answer late opens for a grace period, then close
        grace = preload.RETIRE_GRACE + 25

        def all_gone() -> bool:
            now = _snapshot(tb)
            return now[0] == before[0] and now[1] <= before[1] and now[2] <= before[2]

        with contextlib.suppress(AssertionError):
            _wait_for(all_gone, "the sockets, threads and files to go", timeout=grace)
        after = _snapshot(tb)
    assert after[0] == before[0], after[0] ^ before[0]
    assert after[1] <= before[1]
    assert after[2] <= before[2]
