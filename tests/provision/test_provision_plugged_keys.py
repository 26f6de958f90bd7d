"""``hwtoken provision run`` with no --virtual: the code path an admin runs on real keys
(ykman's discovery, python-yubico over libusb), driven against virtual keys plugged in and
pulled out through the umockdev testbed the way a person at the station would."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import pty
import re
import subprocess
import sys
import threading
import time
import traceback
import tty

import pyotp
import pytest

from hwtoken.emulator import VirtualKey
from hwtoken.emulator.applets.otp.applet import CommandRejected
from hwtoken.emulator.applets.otp.hid import press
from hwtoken.emulator.transports import umockdev

pytestmark = pytest.mark.slow  # whole stations at work, ~40 s: `make test-slow` (and CI)

HWTOKEN = [sys.executable, "-m", "hwtoken"]
PASSPHRASE = "correct horse battery staple"


class Station:
    """A provisioning station: one testbed, the run in it, the lines it prints, and the
    operator at its terminal (stdin is a pty: when the station asks for a touch to check
    an HOTP slot, the operator touches the key in the port and the key types its code,
    which a terminal receives as keystrokes)."""

    def __init__(self, tb: umockdev.Testbed, url: str) -> None:
        self.tb = tb
        self.url = url
        self.env = {**os.environ, "HWTOKEN_INVENTORY_PASSPHRASE": PASSPHRASE}
        self.lines: list[dict] = []
        self.prompts: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.pcscd = None  # with the OATH applet: the pcscd in the testbed
        self._terminal: int | None = None
        self.stderr = ""  # all the station printed on stderr, for a failure's message

    def start(self, *args: str, command: str = "run") -> None:
        master, slave = pty.openpty()
        tty.setraw(slave)
        self._terminal = master
        self.lines = []
        self.proc = self.tb.popen([*HWTOKEN, "provision", command, "-i", self.url, *args,
                                   "--json"], stdin=slave, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=self.env)
        os.close(slave)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._operator, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        pending = ""
        for line in self.proc.stdout:  # one JSON document per key (the summary may span
            pending += line             # several lines)
            try:
                self.lines.append(json.loads(pending))
            except ValueError:
                continue
            pending = ""

    def _operator(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        buf = ""
        while True:
            chunk = self.proc.stderr.read(1)
            if not chunk:
                return
            buf += chunk
            self.stderr += chunk
            match = re.search(r"touch the key \(slot (\d)\)[^\n]*: ", buf)
            if match:
                self.prompts.append(match.group(0))
                buf = ""
                key = self.tb.plugged[-1].key  # the one in the port
                os.write(self._terminal, press(key, int(match.group(1))).encode())

    def wait_for(self, pred, what: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for doc in self.lines:
                if pred(doc):
                    return doc
            assert self.proc is not None
            assert self.proc.poll() is None or time.monotonic() < deadline, \
                (what, self.proc.returncode, self.lines, self.stderr[-4000:])
            assert time.monotonic() < deadline, (what, self.lines)
            time.sleep(0.05)

    def result_for(self, key: VirtualKey, timeout: float = 60.0) -> dict:
        return self.wait_for(lambda d: d.get("serial") == key.serial and "result" in d,
                             f"the result for {key.serial}", timeout)

    def hw(self, *args: str) -> subprocess.CompletedProcess:
        return self.tb.run([*HWTOKEN, *args], capture_output=True, text=True, timeout=120,
                           env=self.env)



def _pull_out_while_written(tb: umockdev.Testbed, key: VirtualKey,
                            mode: str) -> threading.Event:
    """Play the person who pulls ``key`` out just as it is being written (an OTP slot, or
    the OATH applet's PUT): the write never lands, and the station's next use of the key
    fails like on real hardware."""
    pulled = threading.Event()

    def pull() -> None:
        plugged = next(p for p in tb.plugged if p.key is key)
        unplugging = threading.Thread(target=tb.unplug, args=(plugged,), daemon=True)
        unplugging.start()
        pulled.set()
        # out of the port before the write completes: its sysfs entry is gone (the last
        # thing the unplug does before it saves the key, once this command gives it back)
        syspath = tb.sysfs.path(plugged.tree.syspath)
        deadline = time.monotonic() + 30
        while syspath.exists():
            if time.monotonic() > deadline:
                frame = sys._current_frames().get(unplugging.ident)
                stack = "".join(traceback.format_stack(frame)) if frame else "(ended)"
                raise AssertionError(f"the key never left the port; the unplug is at\n{stack}")
            time.sleep(0.01)

    if mode == "oath-totp":
        from hwtoken.emulator.iso7816 import ApduError

        applet = key.oath
        original_process = applet.process

        def process(apdu):  # noqa: ANN001, ANN202
            if apdu.ins == 0x01 and not pulled.is_set():  # YKOATH PUT
                pull()
                raise ApduError(0x6F00)
            return original_process(apdu)

        applet.process = process  # type: ignore[method-assign]
        return pulled
    applet = key.otp
    original = applet.command

    def command(cmd: int, payload: bytes, cancel=None):  # noqa: ANN001
        if applet.is_write(cmd) and not pulled.is_set():
            pull()
            raise CommandRejected("pulled out")
        return original(cmd, payload, cancel)

    applet.command = command  # type: ignore[method-assign]
    return pulled


@contextlib.contextmanager
def _device_info_reads():
    """Serials of the keys whose device info anyone read (ykman's discovery reads it
    from every key it lists), while the block runs."""
    from hwtoken.emulator.applets.management import ManagementApplet

    reads: list[int] = []
    original = ManagementApplet.device_info

    def device_info(self):  # noqa: ANN001, ANN202
        reads.append(self.key.serial)
        return original(self)

    ManagementApplet.device_info = device_info  # type: ignore[method-assign]
    try:
        yield reads
    finally:
        ManagementApplet.device_info = original  # type: ignore[method-assign]


def _wait(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _stop_pulling(key: VirtualKey, mode: str) -> None:
    if mode == "oath-totp":
        del key.oath.process
    else:
        del key.otp.command


@pytest.mark.parametrize("mode", ["hotp", "chalresp", "oath-totp"])
def test_a_batch_plugged_in_one_after_another(tmp_path, mode):
    """OTP slots go through python-yubico over libusb; the OATH applet through yubikit
    over PC/SC, with pcscd and its own CCID driver reaching each key's CCID interface."""
    keys = [VirtualKey.create(tmp_path / f"k{i}.key") for i in range(5)]
    url = f"sqlite:///{tmp_path / 'inv.db'}"
    pcscd = None
    try:
        with umockdev.Testbed() as tb:
            st = Station(tb, url)
            if mode == "oath-totp":
                from hwtoken.emulator.pcscd import UsbPcscd

                pcscd = st.pcscd = UsbPcscd(tb).start()
                st.env = pcscd.client_env(st.env)
            # the station ends once no key came for 12 s (a loaded machine may take
            # seconds between one key and the next)
            st.start("-m", mode, "--slot", "1", "--idle-timeout", "12")
            for i, key in enumerate(keys):
                if i == 2:
                    pulled = _pull_out_while_written(tb, key, mode)
                plugged = tb.plug(key)
                doc = st.result_for(key)
                if i == 2:
                    assert pulled.is_set()
                    assert doc["result"] != "done", doc
                    continue
                assert doc["result"] == "done", (json.dumps(doc), st.stderr[-2000:])
                tb.unplug(plugged)
                if i == 0:  # the same key plugged in again is not taken twice
                    with _device_info_reads() as reads:
                        again = tb.plug(key)
                        # the station's discovery read it on two of its polls (every 0.5 s)
                        _wait(lambda: reads.count(key.serial) >= 2, "two looks at the key")
                    # it stays in while the next key is done: pulled right after a look, it
                    # would go while pcscd ends that look, and pcscd then shuts down the
                    # next key's reader (its reader name reused) -- a pcscd race
                if i == 1:
                    tb.unplug(again)
            st.proc.wait(120)
            assert st.proc.returncode == 1  # one key did not end done
            results = [d for d in st.lines if "result" in d]
            assert len(results) == 5 and [d["serial"] for d in results] == [
                k.serial for k in keys]
            status = json.loads(st.hw("provision", "status", "-i", url, "--json").stdout)
            assert status["counts"]["done"] == 4 and status["counts"]["pending"] == 1
            assert status["pending"][0]["serial"] == keys[2].serial

            # the pulled key comes back: resume settles it with the recorded secret
            _stop_pulling(keys[2], mode)  # the person stops pulling keys out
            tb.plug(keys[2])
            st.start(command="resume")
            assert st.proc.wait(120) == 0, (st.lines, st.stderr[-4000:])
            status = json.loads(st.hw("provision", "status", "-i", url, "--json").stdout)
            assert status["counts"]["done"] == 5 and status["counts"]["pending"] == 0
            out = tmp_path / "batch.pskc"
            exported = st.hw("provision", "export", "-i", url, "--format", "pskc", "-o",
                             str(out))
            assert exported.returncode == 0, exported.stderr
            tb.unplug(next(p for p in tb.plugged if p.key is keys[2]))
            if pcscd is not None:
                pcscd.wait_for_readers(lambda names: names == [])
            _each_key_answers_what_the_export_says(st, out, keys, mode)
    finally:
        if pcscd is not None:
            pcscd.stop()
        for k in keys:
            k.close()


def _each_key_answers_what_the_export_says(st: Station, pskc_file, keys, mode: str) -> None:
    """Each key's own answer, read the way a validation server's user would produce it,
    equals what the export says (HOTP: the code the slot types; challenge-response: the
    HMAC the key computes through python-yubico)."""
    import base64

    from pskc import PSKC

    exported = {int(str(k.serial)): k for k in PSKC(str(pskc_file)).keys}
    assert set(exported) == {k.serial for k in keys}
    for key in keys:
        entry = exported[key.serial]
        if mode == "oath-totp":
            now = int(time.time())
            plugged = st.tb.plug(key)
            try:
                st.pcscd.wait_for_readers(lambda names: len(names) == 1)
                listed = st.hw("yubikey", "oath", "code", "hwtoken", "--json")
                assert listed.returncode == 0, listed.stderr
                got = json.loads(listed.stdout)
            finally:
                st.tb.unplug(plugged)
                st.pcscd.wait_for_readers(lambda names: names == [])  # gone before the next
            totp = pyotp.TOTP(base64.b32encode(entry.secret).decode())
            assert _code_of(got) in {totp.at(now + d) for d in (-30, 0, 30, 60)}, got
            continue
        if mode == "hotp":
            typed = press(key, 1).strip()  # a touch: the slot types its next code
            expected = pyotp.HOTP(base64.b32encode(entry.secret).decode())
            assert typed == expected.at(int(entry.counter or 0))
            continue
        plugged = st.tb.plug(key)
        try:
            challenge = os.urandom(32)
            calc = st.hw("yubikey", "chalresp", "calc", "1", challenge.hex())
            assert calc.returncode == 0, calc.stderr
            assert calc.stdout.strip() == hmac.new(entry.secret, challenge,
                                                   hashlib.sha1).hexdigest()
        finally:
            st.tb.unplug(plugged)


def _code_of(doc) -> str:
    """The code in `hwtoken yubikey oath code NAME --json` output."""
    if isinstance(doc, list):
        doc = doc[0]
    if "codes" in doc:
        return _code_of(doc["codes"])
    return str(doc["code"])
