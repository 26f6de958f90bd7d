"""The virtual fob from Python (hwtoken.fob.emulator): a board's REPL life, its hardware,
its memory, its ports and its control socket."""

from __future__ import annotations

import json
import socket
import time

import pytest
from mpremote.transport_serial import SerialTransport

from hwtoken.errors import DeviceBusy, DeviceError
from hwtoken.fob.device import Fob
from hwtoken.fob.emulator import FobEmulator, Frame
from hwtoken.fob.emulator import control as ctl
from hwtoken.fob.emulator.ports import TcpPort
from hwtoken.fob.emulator.service import FrameLog, Service
from hwtoken.fob.screenread import read_screen
from hwtoken.fob.settings import Changes
from hwtoken.fob.simulate import FobAccount, Screen, render

SECRET = "JBSWY3DPEHPK3PXP"


class Serial:
    """A program on the fob's serial port, reading what it says."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("socket://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.seen = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def expect(self, text: bytes, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                chunk = b""
            if not chunk and time.monotonic() >= deadline:
                raise AssertionError(f"{text!r} not seen in {self.seen[-300:]!r}")
            self.seen += chunk
        before, _, after = self.seen.partition(text)
        self.seen = after
        return before + text

    def close(self) -> None:
        self.sock.close()


def _set_up(url: str, accounts: int = 0, changes: Changes | None = None) -> None:
    with Fob(url) as f:
        if changes:
            f.configure(changes)
        f.sync_time()
        for i in range(accounts):
            f.add(FobAccount(f"account-{i:02d}", SECRET * 2, ("SHA1", "SHA256", "SHA512")[i % 3]))


@pytest.mark.slow
@pytest.mark.system
def test_ctrl_c_stops_the_fob_and_a_soft_reset_forgets_everything_then_boots(deployed_fob):
    emu, url = deployed_fob.emulator, deployed_fob.url
    _set_up(url, accounts=1)
    assert emu.wait_running(10)
    s = Serial(url)
    try:
        s.send(b"\x03")  # Ctrl-C: main.py's loop ends with a KeyboardInterrupt
        out = s.expect(b">>> ")
        assert b"KeyboardInterrupt" in out and b"MicroPython v1.27.0" in out
        assert not emu.running
        s.send(b"x = 6 * 7\r")
        s.expect(b">>> ")
        s.send(b"print(x, 'app' in __import__('sys').modules)\r")
        assert b"42 True" in s.expect(b">>> ")
        s.send(b"\x04")  # Ctrl-D in the friendly REPL: soft reset, then main.py again
        s.expect(b"MPY: soft reboot\r\n")
        assert emu.wait_running(10)
        frame = emu.wait_frame(lambda f: read_screen(f.screen).kind == "code")
        assert read_screen(frame.screen).account == "account-00"
        s.send(b"\x03")
        s.expect(b">>> ")
        s.send(b"print('x' in globals())\r")  # the soft reset forgot the globals
        assert b"False" in s.expect(b">>> ")
    finally:
        s.close()
    # mpremote's soft reset from the raw REPL stays there, and main.py does not run
    t = SerialTransport(url, timeout=10)
    try:
        t.enter_raw_repl(soft_reset=True)
        assert t.exec("print(1 + 1)") == b"2\n" and not emu.running
        t.exit_raw_repl()
    finally:
        t.close()


@pytest.mark.slow
@pytest.mark.system
def test_heap_after_boot_with_twenty_accounts_and_settings(deployed_fob):
    emu = deployed_fob.emulator
    changes = Changes({"oled_addr": 0x3C, "brightness": 200, "show_clock": True,
                       "utc_offset": 60, "wifi_ssid": "home", "wifi_password": "pw-12345678"})
    _set_up(deployed_fob.url, accounts=20, changes=changes)
    assert emu.wait_running(10)
    emu.wait_frame(lambda f: read_screen(f.screen).kind == "code")
    heap = emu.heap()
    print(f"heap after boot, 20 accounts, settings, screen: {heap['mem_alloc']} bytes")
    assert heap["running"] is True
    assert 20_000 < heap["mem_alloc"] <= 64 * 1024


@pytest.mark.slow
@pytest.mark.system
def test_presses_need_a_running_fob_and_its_button(virtual_fob, deployed_fob):
    with pytest.raises(DeviceError) as exc:  # no firmware: nothing runs
        virtual_fob.emulator.press("next", wait=0.2)
    assert str(exc.value).startswith("the fob's main loop is not running")
    emu, url = deployed_fob.emulator, deployed_fob.url
    _set_up(url, accounts=2)
    with Fob(url) as f:
        f.configure(Changes({"button_b": None}))
    with pytest.raises(DeviceError) as exc:
        emu.press("prev")
    assert str(exc.value) == "the fob has no button B (its setting button_b is none)"
    assert emu.press("next")["pin"] == 14
    assert read_screen(emu.frame.screen).position == "2/2"


@pytest.mark.slow
@pytest.mark.system
@pytest.mark.parametrize("ds3231", [False, True])
def test_unplugged_the_chip_rtc_forgets_the_time_a_ds3231_does_not(ds3231, tmp_path):
    from fob_support import _node

    from hwtoken.fob.firmware import firmware_sources

    _node()
    for name, data in firmware_sources().items():
        (tmp_path / name).write_bytes(data)
    with FobEmulator(ds3231=ds3231, flash=tmp_path) as emu:
        port = TcpPort(emu)
        try:
            _set_up(port.url, accounts=1)
            with Fob(port.url) as f:
                assert f.status()["source"] == ("ds3231" if ds3231 else "rtc")
            emu.wait_frame(lambda f: read_screen(f.screen).kind == "code")
            emu.power_cycle()
            assert emu.wait_running(10)
            after = read_screen(emu.wait_frame(lambda f: f.on).screen)
            if ds3231:
                assert after.kind == "code" and after.account == "account-00"
            else:
                assert after.title == "NO TRUSTED TIME"
        finally:
            port.close()


@pytest.mark.slow
@pytest.mark.system
def test_an_error_in_the_main_loop_is_printed_and_leaves_the_repl(deployed_fob):
    emu, url = deployed_fob.emulator, deployed_fob.url
    _set_up(url, accounts=1)
    seen: list[bytes] = []
    with Fob(url) as f:
        f._t.fs_writefile("screen.py", b"def draw(*a):\n    raise RuntimeError('broken screen')\n")
        out = emu.on_output
        emu.on_output = lambda data: (seen.append(data), out(data))
    deadline = time.monotonic() + 10
    while b"RuntimeError: broken screen" not in b"".join(seen):
        assert time.monotonic() < deadline, b"".join(seen)
        time.sleep(0.05)
    text = b"".join(seen)
    assert b"Traceback (most recent call last):" in text and text.rstrip().endswith(b">>>")
    assert not emu.running


@pytest.mark.slow
@pytest.mark.system
def test_the_serial_port_is_loopback_and_serves_one_program_at_a_time(virtual_fob):
    url = virtual_fob.url
    host, port = url.removeprefix("socket://").split(":")
    assert host == "127.0.0.1"
    first = Serial(url)
    try:
        first.send(b"\r")
        first.expect(b">>> ")
        with socket.create_connection((host, int(port)), timeout=10) as second:
            assert second.recv(10) == b""  # closed at once: the port is busy
        first.send(b"print(2 ** 10)\r")
        assert b"1024" in first.expect(b">>> ")
    finally:
        first.close()


@pytest.mark.slow
@pytest.mark.system
def test_the_control_socket(tmp_path, monkeypatch):
    from fob_support import _node

    _node()
    monkeypatch.setenv("HWTOKEN_STATE_DIR", str(tmp_path))
    assert ctl.running("bench") is None
    with Service("bench") as svc:
        doc = ctl.running("bench")
        assert doc["port"] == svc.port_name and doc["control"] == str(svc.control.path)
        with pytest.raises(DeviceBusy):
            Service("bench").__enter__()
        screen = ctl.request("bench", {"op": "screen"})
        assert screen["running"] is False and screen["n"] == 0  # no firmware yet
        with pytest.raises(DeviceError) as exc:
            ctl.request("bench", {"op": "reboot"})
        assert str(exc.value) == "send op press, screen or heap"
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(svc.control.path))
            s.sendall(b"\xff{not json\n")
            assert json.loads(s.recv(4096)) == {"ok": False, "error": "not a JSON request"}
        assert ctl.request("bench", {"op": "heap"})["mem_alloc"] > 0
    assert ctl.running("bench") is None
    assert not (tmp_path / "fob-emulators" / "bench.sock").exists()
    with pytest.raises(DeviceError) as exc:
        ctl.request("bench", {"op": "screen"})
    assert "no virtual fob named 'bench' is running" in str(exc.value)


def test_frame_log_keeps_each_new_picture_once(tmp_path):
    shown: list[int] = []
    log = FrameLog(lambda frame, n: shown.append(n), tmp_path, scale=1)
    code = render([FobAccount("a", SECRET)], 1700000000)
    blank = Screen(bytes(1024))
    frames = [Frame(code, True, 255, 1), Frame(code, True, 255, 2),   # a redraw: same picture
              Frame(code, True, 8, 3), Frame(code, True, 4, 4),       # dimmed (twice)
              Frame(code, False, 4, 5), Frame(blank, False, 4, 6)]    # off: black, whatever RAM
    for f in frames:
        log(f)
    assert shown == [1, 2, 3]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["frame-000001.png", "frame-000002.png", "frame-000003.png"]
    from hwtoken.fob import png

    rows = [png.decode((tmp_path / n).read_bytes()) for n in names]
    assert max(max(r) for r in rows[0]) == 255 and max(max(r) for r in rows[1]) == 96
    assert max(max(r) for r in rows[2]) == 0
