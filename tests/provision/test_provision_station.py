"""A station on the real-key path (ykman's discovery, python-yubico over libusb) in a
umockdev testbed: what it does without a terminal to ask for a touch, what it says about
a key it cannot take, and what its terminal shows while keys come without --count."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time

from provision_helpers import PASSPHRASE, opened

from hwtoken.emulator import VirtualKey
from hwtoken.emulator.applets.otp.hid import press
from hwtoken.emulator.transports import umockdev
from hwtoken.otp import hotp_code
from hwtoken.provision import yubiotp
from hwtoken.provision.model import Mode, State

HWTOKEN = [sys.executable, "-m", "hwtoken"]
ENV = {**os.environ, "HWTOKEN_INVENTORY_PASSPHRASE": PASSPHRASE}


def hw(*args: str) -> subprocess.CompletedProcess[str]:
    """Outside the testbed: no key plugged in anywhere."""
    return subprocess.run([*HWTOKEN, *args], capture_output=True, text=True, timeout=120,
                          env=ENV, stdin=subprocess.DEVNULL)


def test_typing_slots_of_a_station_without_a_terminal_are_settled_by_a_hand_typed_code(
        tmp_path):
    url = str(tmp_path / "inv.db")
    with VirtualKey.create(tmp_path / "k.key") as key, umockdev.Testbed() as tb:
        plugged = tb.plug(key)
        run = tb.run([*HWTOKEN, "provision", "run", "-i", url, "-m", "hotp:1", "-m",
                      "yubiotp:2", "--idle-timeout", "2", "--json"], capture_output=True,
                     text=True, timeout=120, env=ENV, stdin=subprocess.DEVNULL)
        tb.unplug(plugged)
        docs = [json.loads(line) for line in run.stdout.splitlines()]
        assert run.returncode == 1, run.stderr
        assert [(d["target"], d["result"]) for d in docs[:2]] == [("1", "unchecked"),
                                                                  ("2", "unchecked")]
        assert docs[0]["message"] == (
            "a real key's HOTP slot can only be checked by touching it: run on a terminal, "
            "or type its code with `provision resume --code SERIAL=CODE`")
        assert "Yubico OTP slot" in docs[1]["message"]
        with opened(url) as inv:
            records = {r.slot: r for r in inv.records()}
            secrets = {slot: inv.secret(r) for slot, r in records.items()}
        assert {r.state for r in records.values()} == {State.PENDING}
        serial = key.serial

        # a wrong code: the record stays pending, and the key is not needed (or touched)
        wrong = hw("provision", "resume", "-i", url, "--code", f"{serial}=000000", "--json")
        assert wrong.returncode == 1
        wrong_docs = [json.loads(x) for x in wrong.stdout.splitlines()]
        assert [(d["target"], d["result"]) for d in wrong_docs[:2]] == [
            ("1", "failed"), ("2", "failed")]  # the code is tried on both typing slots
        assert wrong_docs[0]["message"] == ("the code typed for slot 1 does not match its "
                                            "recorded secret (the record stays pending)")
        # the admin touches the key somewhere (it types into a text field) and records
        # both codes; the key stays unplugged
        code, otp = press(key, 1).strip(), press(key, 2).strip()
        assert yubiotp.matches(otp, records[2].params["public_id"], secrets[2])
        done = hw("provision", "resume", "-i", url, "--code", f"{serial}={code}",
                  "--code", f"{serial}={otp}", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        results = [json.loads(x) for x in done.stdout.splitlines()][:2]
        assert [(d["target"], d["result"], d["message"]) for d in results] == [
            ("1", "done", "checked by the code typed by hand"),
            ("2", "done", "checked by the code typed by hand")]
        with opened(url) as inv:
            after = {r.slot: r for r in inv.records()}
        assert {r.state for r in after.values()} == {State.DONE}
        # the HOTP counter is the one after the typed code: the next touch is the next code
        assert press(key, 1).strip() == hotp_code(secrets[1], after[1].counter, 6)


class Terminal:
    """A station in the testbed with stdin, stdout and stderr on one pseudo-terminal."""

    def __init__(self, tb: umockdev.Testbed, *args: str) -> None:
        self.leader, follower = pty.openpty()
        self.proc = tb.popen([*HWTOKEN, *args], stdin=follower, stdout=follower,
                             stderr=follower, env={**ENV, "COLUMNS": "200"})
        os.close(follower)
        self.shown = b""

    def read(self, timeout: float) -> bool:
        """What the station wrote within ``timeout`` (False once it closed the terminal)."""
        ready, _, _ = select.select([self.leader], [], [], timeout)
        if ready:
            try:
                data = os.read(self.leader, 4096)
            except OSError:  # EIO: the station closed the terminal
                return False
            self.shown += data
            return bool(data)
        return True

    def read_until(self, pattern: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern.encode(), self.shown):
            left = deadline - time.monotonic()
            assert left > 0 and self.read(left), self.shown

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.leader)

    @property
    def text(self) -> str:
        return self.shown.decode()


def test_a_fido_only_key_at_an_otp_station_is_reported_as_such_and_the_tally_runs(tmp_path):
    """On a terminal, with no --count: each key's line stays, the tally at the bottom
    counts keys and results; a Security Key, which shows no serial (as a real one does
    not), is refused as what it is, named by its device path."""
    url = str(tmp_path / "inv.db")
    with VirtualKey.create(tmp_path / "sk.key", profile="security-key") as sk, \
            VirtualKey.create(tmp_path / "y5.key") as y5, umockdev.Testbed() as tb, \
            Terminal(tb, "provision", "run", "-i", url, "-m", "chalresp",
                     "--idle-timeout", "3") as term:
        term.read_until(r"insert the first key")
        first = tb.plug(sk)
        term.read_until(r"/dev/hidraw\d+ refused")
        tb.unplug(first)
        tb.plug(y5)
        term.read_until(rf"{y5.serial} slot 2 \(chalresp\) done")
        term.read_until(r"in \d+\.\d s")  # idle timeout: the summary
        assert term.proc.wait(timeout=60) == 0  # a key done; the other refused, as it should
    text = term.text
    assert re.search(r"/dev/hidraw\d+ refused: Security Key NFC is a FIDO-only key "
                     r"\(FIDO interface only\): it has no OTP slots", text), text
    assert str(sk.serial) not in text  # the key does not show it
    assert "not plugged in" not in text and "Error" not in text
    assert "provisioning: 2 key(s): 1 done, 1 refused" in text  # the running tally
    rows = [r.split("\x1b[K")[-1] for r in re.split(r"\r\n|\n", text)]
    assert any(r.startswith("1 done, 1 refused (unsuitable 1) in ") for r in rows), rows
    with opened(url) as inv:
        assert [(r.serial, r.mode) for r in inv.records()] == [(y5.serial, Mode.CHALRESP)]


def test_the_touch_prompt_of_a_station_on_a_terminal_never_lands_on_the_bar(tmp_path):
    """An HOTP and a Yubico OTP slot on a real-key station at a terminal: the station asks
    for each touch on a line of its own (the bar's line cleared first), the operator's
    key types its code there, and both records end done above the bar."""
    url = str(tmp_path / "inv.db")
    with VirtualKey.create(tmp_path / "k.key") as key, umockdev.Testbed() as tb:
        tb.plug(key)
        with Terminal(tb, "provision", "run", "-i", url, "-m", "hotp:1", "-m", "yubiotp:2",
                      "--count", "1") as term:
            answered = 0
            deadline = time.monotonic() + 120
            while term.read(1):
                assert time.monotonic() < deadline, term.shown
                prompts = re.findall(rb"touch the key \(slot (\d)\)[^\n]*: ", term.shown)
                if len(prompts) > answered:  # the key in the port types its code
                    os.write(term.leader, press(key, int(prompts[answered])).encode())
                    answered += 1
            assert term.proc.wait(timeout=60) == 0, term.shown
    text = term.text
    assert answered == 2
    for prompt in re.finditer(r"touch the key \(slot \d\)", text):
        line_start = max(text.rfind("\n", 0, prompt.start()), text.rfind("\r", 0,
                                                                          prompt.start()))
        assert text[line_start:prompt.start()] in ("\r\x1b[K", "\n"), \
            text[line_start:prompt.start()]  # nothing of the bar before it on its line
    assert f"{key.serial} slot 1 (hotp) done" in text
    assert f"{key.serial} slot 2 (yubiotp) done" in text
    with opened(url) as inv:
        assert {r.state for r in inv.records()} == {State.DONE}
