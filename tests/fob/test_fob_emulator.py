"""The virtual fob (`hwtoken fob emulate`): a maker's whole set-up without a board.

`hwtoken fob emulate` runs as a real process, serving the firmware's raw REPL on 127.0.0.1
or a pty; the unmodified `hwtoken fob` commands and mpremote talk to it, buttons are
pressed and the screen read from other processes, and the code on the screen is checked
against oathtool. Every test stops the emulator it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hwtoken.fob import png

HWTOKEN = str(Path(sys.executable).with_name("hwtoken"))
MPREMOTE = str(Path(sys.executable).with_name("mpremote"))
GITHUB = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
MAIL = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


class Emulator:
    """A running `hwtoken fob emulate` process and what it printed when ready."""

    def __init__(self, proc: subprocess.Popen[str], doc: dict, env: dict[str, str]) -> None:
        self.proc, self.doc, self.env = proc, doc, env
        self.port = doc.get("port", "")

    def run(self, *args: str, input: str | None = None, code: int = 0,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`hwtoken ARGS` as a real process next to the emulator."""
        proc = subprocess.run([HWTOKEN, *args], input=input, capture_output=True, text=True,
                              env=self.env, timeout=timeout)
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        return proc

    def fob(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return self.run("fob", "--port", self.port, *args, **kw)

    def json(self, *args: str, **kw) -> dict:
        return json.loads(self.run(*args, "--json", **kw).stdout)

    def readline(self, timeout: float = 60) -> str:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout), "the emulator printed nothing in time"
        return self.proc.stdout.readline()


def _env(tmp_path: Path) -> dict[str, str]:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    return {**os.environ, "HWTOKEN_STATE_DIR": str(state), "HWTOKEN_FOB_PORT": ""}


@contextlib.contextmanager
def emulate(tmp_path: Path, *args: str, human: bool = False) -> Iterator[Emulator]:
    """`hwtoken fob emulate ARGS` until the block ends (then SIGTERM: exit 0, checked)."""
    from fob_support import _node

    _node()
    env = _env(tmp_path)
    cmd = [HWTOKEN, "fob", "emulate", *args, *([] if human else ["--json"])]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        em = Emulator(proc, {}, env)
        first = em.readline()
        if human:
            lines = [first] + [em.readline() for _ in range(7)]
            port = lines[1].split("its serial port:")[1].split()[0]
            em.doc, em.port, em.banner = {"port": port}, port, "".join(lines)
        else:
            em.doc = json.loads(first)
            em.port = em.doc["port"]
        yield em
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            raise AssertionError("the emulator did not stop on SIGTERM") from None
        finally:
            proc.stdout.close()
            proc.stderr.close()
    assert proc.returncode == 0, proc.returncode


def _oathtool(secret: str, t: int) -> str:
    oathtool = shutil.which("oathtool")
    assert oathtool, "oathtool is required (make deps installs it)"
    proc = subprocess.run([oathtool, "--totp", "-b", "-N", f"@{t}", "-"], input=secret,
                          capture_output=True, text=True, timeout=10, check=True)
    return proc.stdout.strip()


@pytest.mark.slow
@pytest.mark.system
def test_the_maker_story_without_a_board(tmp_path):
    """deploy, sync-time, add two accounts, press next, read the code on the screen, and
    compare it with oathtool: every step a real process, as a maker would type them."""
    frames = tmp_path / "frames"
    frames.mkdir()
    with emulate(tmp_path, "--frames", str(frames), "--scale", "2") as em:
        assert em.port.startswith("socket://127.0.0.1:")
        assert "12 file(s) written" in em.fob("deploy").stdout
        first = em.json("fob", "emulate", "screen")
        assert first["reads"] == {"kind": "message", "title": "NO TRUSTED TIME", "lines": [
            "Connect USB and", "run on the host:", "hwtoken fob", "    sync-time"]}
        assert "it had no trusted time before" in em.fob("sync-time").stdout
        em.fob("add", "github", "--secret", "-", input=GITHUB + "\n")
        em.fob("add", "--uri", "-", input=f"otpauth://totp/mail?secret={MAIL}\n")
        listed = json.loads(em.fob("list", "--json").stdout)
        assert [a["name"] for a in listed] == ["github", "mail"]
        status = json.loads(em.fob("status", "--json").stdout)
        assert status["trusted"] is True and status["accounts"] == 2

        shown = em.json("fob", "emulate", "screen")["reads"]
        assert (shown["account"], shown["position"]) == ("github", "1/2")
        before = int(time.time())
        pressed = em.json("fob", "emulate", "press", "next")
        assert pressed["pin"] == 14 and pressed["woke"] is False
        screen = em.json("fob", "emulate", "screen")
        after = int(time.time())
        reads = screen["reads"]
        assert screen["display"] == "on" and screen["running"] is True
        assert (reads["kind"], reads["account"], reads["position"]) == ("code", "mail", "2/2")
        # the code read from the pixels is oathtool's at the second it was drawn: the one
        # second of the window whose seconds-left matches the bar's
        # (the fob's clock is the host's to the second, rounded: up to a second either way)
        drawn = [t for t in range(before - 1, after + 2) if 30 - t % 30 == reads["seconds_left"]]
        assert len(drawn) == 1, (drawn, reads)
        assert reads["code"] == _oathtool(MAIL, drawn[0])
        assert reads["code"] != _oathtool(GITHUB, drawn[0])
        # a long press shows the next code too, which is oathtool's for the next period
        held = em.json("fob", "emulate", "press", "long")["reads"]
        assert held["account"] == "mail"
        now = int(time.time())
        assert held["next_code"] in {_oathtool(MAIL, t + 30) for t in (now - 1, now)}
    pictures = sorted(frames.iterdir())
    assert len(pictures) >= 4 and pictures[0].name == "frame-000001.png"
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in pictures)
    rows = png.decode(pictures[-1].read_bytes())
    assert (len(rows), len(rows[0])) == (128, 256)


@pytest.mark.slow
@pytest.mark.system
def test_mpremote_and_a_pty_owned_by_the_user(tmp_path):
    link = tmp_path / "ttyFOB"
    with emulate(tmp_path, "--pty", str(link)) as em:
        pty = os.readlink(link)
        st = os.stat(pty)
        assert pty.startswith("/dev/pts/") and em.doc["pty"] == pty and em.port == str(link)
        assert stat.S_ISCHR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.getuid()
        out = subprocess.run([MPREMOTE, "connect", str(link), "exec", "print(6 * 7)"],
                             capture_output=True, text=True, timeout=60, env=em.env)
        assert out.returncode == 0 and out.stdout.strip() == "42", out
        em.fob("deploy")
        em.fob("add", "github", "--secret", "-", input=GITHUB + "\n")
        out = subprocess.run([MPREMOTE, "connect", str(link), "fs", "ls"],
                             capture_output=True, text=True, timeout=60, env=em.env)
        assert out.returncode == 0 and "main.py" in out.stdout and "accounts.json" in out.stdout
        # mpremote leaves a board in its REPL (the fob stops); the next hwtoken command
        # resets it, and the fob runs again
        assert em.json("fob", "emulate", "screen")["running"] is False
        assert json.loads(em.fob("list", "--json").stdout)[0]["name"] == "github"
        assert em.json("fob", "emulate", "screen")["running"] is True
    assert not link.exists() and not link.is_symlink()


@pytest.mark.slow
@pytest.mark.system
def test_mpremote_over_tcp_and_the_flash_kept_between_runs(tmp_path):
    from hwtoken.fob.firmware import firmware_sources

    flash = tmp_path / "flash"
    flash.mkdir()
    for name, data in firmware_sources().items():  # as a deploy leaves it
        (flash / name).write_bytes(data)
    with emulate(tmp_path, "--flash", str(flash)) as em:
        out = subprocess.run([MPREMOTE, "connect", em.port, "exec", "print(6 * 7)"],
                             capture_output=True, text=True, timeout=60, env=em.env)
        assert out.returncode == 0 and out.stdout.strip() == "42", out
        em.fob("add", "github", "--secret", "-", input=GITHUB + "\n")
        em.fob("sync-time")
    kept = {p.name for p in flash.iterdir()}
    assert {"main.py", "app.py", "accounts.json"} <= kept and "tmp" not in kept
    for written in ("accounts.json", "clock.json"):  # what the board wrote: 0600
        assert stat.S_IMODE((flash / written).stat().st_mode) == 0o600
    assert GITHUB in (flash / "accounts.json").read_text()
    # plugged in again: the firmware and the account are there; the chip RTC restarted
    with emulate(tmp_path, "--flash", str(flash), "--show", human=True) as em:
        assert "virtual fob 'fob' is running" in em.banner
        frame = [em.readline() for _ in range(2)]
        assert frame[0].startswith("frame 1, display on: NO TRUSTED TIME / Connect USB and")
        assert frame[1].startswith("+" + "-" * 64 + "+")
        assert json.loads(em.fob("list", "--json").stdout)[0]["name"] == "github"


@pytest.mark.slow
@pytest.mark.system
def test_settings_kept_across_deploys_and_the_oled_address_applies(tmp_path):
    """An OLED module at 0x3D stays dark until `fob config oled_addr=0x3D`, and a later
    deploy keeps that setting (the bug the settings file fixes)."""
    with emulate(tmp_path, "--oled-addr", "0x3D") as em:
        assert em.doc["oled_addr"] == "0x3D"
        em.fob("deploy")
        dark = em.json("fob", "emulate", "screen")
        assert dark["frames"] == 0 and dark["reads"] == {"kind": "blank"}
        out = em.fob("config", "oled_addr=0x3D", "show_clock=on", "utc_offset=+02:00").stdout
        assert out.startswith("set on the fob: oled_addr=0x3D, show_clock=on, "
                              "utc_offset=+02:00; it restarts with them now")
        lit = em.json("fob", "emulate", "screen")
        assert lit["reads"]["title"] == "NO TRUSTED TIME"
        again = em.fob("deploy", "--force").stdout
        assert "12 file(s) written" in again
        assert "settings: kept (oled_addr, show_clock, utc_offset; the rest are defaults)" in again
        em.fob("sync-time")
        em.fob("add", "github", "--secret", "-", input=GITHUB + "\n")
        reads = em.json("fob", "emulate", "screen")["reads"]
        # sync-time sets whole seconds (up to 0.5 s ahead); the screen redraws its clock
        # once a minute (up to 60 s behind)
        assert reads["account"] == "github" and reads["clock"] in {
            time.strftime("%H:%M", time.gmtime(time.time() + 7200 + d)) for d in (-60, 0, 1)}


def test_emulator_refuses_bad_options_before_starting(tmp_path):
    env = _env(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (["--tcp-port", "70000"], "Invalid value for '--tcp-port'"),
        (["--oled-addr", "0x99"], "an I2C address must be from 8 to 119"),
        (["--oled-addr", "nan"], "an I2C address must be a whole number"),
        (["--flash", str(tmp_path / "missing")], "Invalid value for '--flash'"),
        (["--frames", str(afile)], "Invalid value for '--frames'"),
        (["--pty", str(afile)], f"{afile} already exists"),
        (["--pty", str(tmp_path / "no" / "link")], "the directory"),
        (["--name", "../x"], "a virtual fob's name is 1 to 64 ASCII letters"),
        (["--name", "a\udcff"], "is not valid UTF-8 text"),
        (["--tcp-port", "1", "--pty", str(tmp_path / "l")], "give --tcp-port or --pty, not both"),
    ]
    for args, message in cases:
        proc = subprocess.run([HWTOKEN, "fob", "emulate", *[os.fsencode(a) if "\udcff" in a
                                                           else a for a in args]],
                              capture_output=True, text=True, env=env, timeout=60,
                              stdin=subprocess.DEVNULL)
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert proc.returncode == 2 and len(errors) == 1 and message in errors[0], (args, proc)
        assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert not (tmp_path / "l").exists()


def test_press_and_screen_without_a_running_emulator(tmp_path):
    env = _env(tmp_path)
    for args, code, message in [
        (["press", "next"], 2, "error: no virtual fob named 'fob' is running: start one with "
                               "`hwtoken fob emulate`"),
        (["press", "next", "--name", "bench"], 2, "error: no virtual fob named 'bench' is "
                                                  "running: start one with `hwtoken fob "
                                                  "emulate --name bench`"),
        (["press", "sideways"], 2, "error: Invalid value for '{next|prev|long}'"),
        (["screen", "--png", str(tmp_path / "no" / "s.png")], 2,
         f"error: cannot write {tmp_path / 'no' / 's.png'}: the directory"),
        (["screen", "--scale", "0"], 2, "error: Invalid value for '--scale'"),
    ]:
        proc = subprocess.run([HWTOKEN, "fob", "emulate", *args], capture_output=True,
                              text=True, env=env, timeout=60)
        assert proc.returncode == code, (args, proc)
        assert proc.stderr.splitlines()[-1].startswith(message), (args, proc.stderr)
        assert proc.stdout == "" and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.system
def test_ctrl_c_stops_it_with_130_and_a_second_one_is_refused(tmp_path):
    from fob_support import _node

    _node()
    env = _env(tmp_path)
    proc = subprocess.Popen([HWTOKEN, "fob", "emulate", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        em = Emulator(proc, {}, env)
        doc = json.loads(em.readline())
        control = Path(doc["control"])
        assert stat.S_IMODE(control.stat().st_mode) == 0o600
        assert stat.S_IMODE(control.parent.stat().st_mode) == 0o700
        second = subprocess.run([HWTOKEN, "fob", "emulate"], capture_output=True, text=True,
                                env=env, timeout=60)
        assert second.returncode == 2
        assert second.stderr.strip() == ("error: virtual fob 'fob' is in use by another "
                                         f"process (lock {control.with_suffix('.lock')})")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert proc.returncode == 130
        assert proc.stderr.read().strip() == "interrupted"
        assert not control.exists() and not control.with_suffix(".json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
