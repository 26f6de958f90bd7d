"""``hwtoken fido2`` with no --device: python-fido2's Linux backend on keys plugged in and
pulled out through the umockdev testbed, the path a real key takes (including the
re-plug a factory reset asks for, and picking one of two keys)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from hwtoken.emulator import VirtualKey
from hwtoken.emulator.transports import umockdev

HWTOKEN = [sys.executable, "-m", "hwtoken"]
PIN, NEW_PIN = "135790", "246813"


def hw(tb, *args, env=None, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 120)
    return tb.run([*HWTOKEN, *args], env={**os.environ, **(env or {})}, **kw)


@pytest.fixture
def keys(tmp_path):
    # random AAGUIDs: two keys of one model share its AAGUID, and the tests below tell the
    # keys apart by what getInfo says
    made = [VirtualKey.create(tmp_path / f"{n}.key", aaguid="random") for n in ("a", "b")]
    yield made
    for k in made:
        k.close()


def test_register_authenticate_pin_creds_and_reset_without_device(keys, tmp_path):
    key = keys[0]
    with umockdev.Testbed() as tb:
        tb.plug(key)
        ok = hw(tb, "fido2", "pin", "set", env={"HWTOKEN_NEW_PIN": PIN})
        assert ok.returncode == 0, ok.stderr
        cred = tmp_path / "cred.json"
        reg = hw(tb, "fido2", "register", "--rp", "example.com", "--user", "alice",
                 "--resident", "--out", str(cred), "--json", env={"HWTOKEN_PIN": PIN})
        assert reg.returncode == 0, reg.stderr
        auth = hw(tb, "fido2", "authenticate", "--rp", "example.com", "--cred", str(cred),
                  "--json", env={"HWTOKEN_PIN": PIN})
        assert auth.returncode == 0 and json.loads(auth.stdout)["verified"] is True
        changed = hw(tb, "fido2", "pin", "change",
                     env={"HWTOKEN_PIN": PIN, "HWTOKEN_NEW_PIN": NEW_PIN})
        assert changed.returncode == 0, changed.stderr
        wrong = hw(tb, "fido2", "pin", "verify", env={"HWTOKEN_PIN": PIN})
        assert wrong.returncode == 1
        creds = hw(tb, "fido2", "creds", "list", "--json", env={"HWTOKEN_PIN": NEW_PIN})
        assert creds.returncode == 0, creds.stderr
        assert "example.com" in creds.stdout

        # reset: the key allows it only right after being plugged in, so the command asks
        # for a re-plug; the person here pulls the key and puts it back
        proc = tb.popen([*HWTOKEN, "fido2", "reset", "--force"], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
        said: list[str] = []
        reader = threading.Thread(target=lambda: said.extend(iter(proc.stderr.readline, "")),
                                  daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while not any("Remove the key" in s for s in said):
            assert proc.poll() is None and time.monotonic() < deadline, said
            time.sleep(0.05)
        tb.unplug(tb.plugged[0])
        while not any(s.startswith("Removed: ") for s in said):  # it saw the key go
            assert proc.poll() is None and time.monotonic() < deadline, said
            time.sleep(0.05)
        tb.plug(key)
        out, _ = proc.communicate(timeout=60)
        reader.join(10)
        assert proc.returncode == 0, (out, said)
        after = hw(tb, "fido2", "pin", "retries", "--json")
        assert json.loads(after.stdout)["pin_set"] is False


def test_two_keys_choose_one_by_path_or_serial(keys):
    with umockdev.Testbed() as tb:
        a, b = (tb.plug(k) for k in keys)
        both = hw(tb, "fido2", "info")
        assert both.returncode == 2
        assert both.stderr.count("error:") == 1 and "choose one with --device" in both.stderr
        by_path = hw(tb, "fido2", "--device", b.fido_hidraw, "info", "--json")
        assert by_path.returncode == 0, by_path.stderr
        assert json.loads(by_path.stdout)["aaguid"] == str(__import__("uuid").UUID(
            bytes=keys[1].aaguid))
        by_serial = hw(tb, "fido2", "info", "--json", "--device", str(keys[0].serial))
        assert by_serial.returncode == 0, by_serial.stderr
        assert json.loads(by_serial.stdout)["aaguid"] == str(__import__("uuid").UUID(
            bytes=keys[0].aaguid))
        assert a.fido_hidraw != b.fido_hidraw
