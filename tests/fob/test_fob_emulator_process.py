"""The virtual fob's board process from Python (hwtoken.fob.emulator.process): its life,
what the board says (frames, state, the serial port, replies) and what the host asks.

In-process against the real board (MicroPython's WebAssembly port under Node.js, started
in well under a second), with an empty flash or with the firmware deployed.
"""

from __future__ import annotations

import array
import calendar
import fcntl
import json
import logging
import os
import signal
import termios
import threading
import time

import pytest
from fob_support import _node

from hwtoken.errors import DeviceError, InvalidInput, SetupError
from hwtoken.fob.emulator import FobEmulator, Frame
from hwtoken.fob.emulator import process as proc_mod
from hwtoken.fob.emulator.process import display_state
from hwtoken.fob.firmware import firmware_sources
from hwtoken.fob.screenread import read_screen
from hwtoken.fob.simulate import Screen

ADDR_RULE = ("the OLED's I2C address must be from 0x08 to 0x77 (and not 0x68 with a "
             "DS3231)")


class Repl:
    """What the board's serial port says, collected (``emu.on_output``)."""

    def __init__(self, emu: FobEmulator) -> None:
        self.emu = emu
        self.seen = b""
        self.cond = threading.Condition()
        emu.on_output = self._got

    def _got(self, data: bytes) -> None:
        with self.cond:
            self.seen += data
            self.cond.notify_all()

    def run(self, line: str, timeout: float = 10) -> str:
        """``line`` typed at the friendly REPL; what it printed (without the echo)."""
        echo = line.encode() + b"\r\n"
        with self.cond:
            self.seen = b""
        self.emu.write(line.encode() + b"\r")

        def answered() -> bool:  # the echo, then what it printed and the next prompt
            _, found, after = self.seen.partition(echo)
            return bool(found) and after.endswith(b"\n>>> ")

        with self.cond:
            assert self.cond.wait_for(answered, timeout), self.seen
            out = self.seen.partition(echo)[2]
        return out.decode().removesuffix(">>> ").strip()


def _timed(call, limit: float = 10):
    """``call()`` in a thread given ``limit`` seconds: (its result or exception, seconds)."""
    out: list = []

    def run():
        try:
            out.append(call())
        except Exception as exc:  # handed to the test
            out.append(exc)

    started = time.monotonic()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), f"still waiting after {limit} s"
    return out[0], time.monotonic() - started


@pytest.fixture
def board():
    _node()
    with FobEmulator() as emu:
        yield emu


@pytest.fixture
def flash(tmp_path):
    """A flash directory holding the firmware, as a deploy leaves it."""
    d = tmp_path / "flash"
    d.mkdir()
    for name, data in firmware_sources().items():
        (d / name).write_bytes(data)
    return d


def test_frames_and_display_states():
    screen = Screen(bytes([1]) * 1024)
    on = Frame(screen, True, 255, 3)
    assert on.visible is screen and on.display == "on"
    off = Frame(screen, False, 255, 4)
    assert off.visible == Screen(bytes(1024)) and off.display == "off"
    assert Frame(Screen(bytes([7]) * 16, 8, 16), False, 0, 1).visible.buffer == bytes(16)
    assert Frame(screen, True, 63, 5).display == "dim"
    assert Frame(screen, True, 64, 5).display == "on"
    assert [display_state(o, c) for o, c in [(False, 0), (False, 255), (True, 0), (True, 8),
                                             (True, 63), (True, 64), (True, 255)]] == [
        "off", "off", "dim", "dim", "dim", "on", "on"]


def test_a_new_emulator_before_it_starts(tmp_path):
    emu = FobEmulator()
    assert emu.frame == Frame(Screen(bytes(1024)), False, 0, 0)
    assert (emu.flash, emu.oled_addr, emu.ds3231, emu.version) == (None, 0x3C, False, "")
    assert emu.on_output is None and emu.on_frame is None
    assert emu.running is False and emu.alive is False
    emu.stop()  # nothing to stop
    e = FobEmulator(flash=str(tmp_path), oled_addr=0x3D, ds3231=True)
    assert (e.flash, e.oled_addr, e.ds3231) == (tmp_path, 0x3D, True)
    for args in [{"oled_addr": 0x07}, {"oled_addr": 0x78}, {"oled_addr": 0x68, "ds3231": True},
                 {"oled_addr": -1}]:
        with pytest.raises(InvalidInput) as exc:
            FobEmulator(**args)
        assert str(exc.value) == ADDR_RULE, args
    for addr in (0x08, 0x77):
        assert FobEmulator(oled_addr=addr, ds3231=True).oled_addr == addr
    assert FobEmulator(oled_addr=0x68).oled_addr == 0x68  # no DS3231 there: free
    for call in (lambda: emu.write(b"x"), emu.heap, lambda: emu.press("next")):
        with pytest.raises(DeviceError) as exc:
            call()
        assert str(exc.value) == "the virtual fob is not running"
    with pytest.raises(InvalidInput) as exc:
        emu.press("up")
    assert str(exc.value) == "button must be one of next, prev, long"


def test_start_refuses_a_missing_flash_directory(tmp_path):
    _node()
    emu = FobEmulator(flash=tmp_path / "missing")
    with pytest.raises(InvalidInput) as exc:
        emu.start()
    assert str(exc.value) == f"the flash directory {tmp_path / 'missing'} does not exist"
    assert not emu.alive


def test_start_gives_up_in_time_and_stops_the_process():
    _node()
    emu = FobEmulator()
    started = time.monotonic()
    with pytest.raises(SetupError) as exc:
        emu.start(timeout=0)
    assert str(exc.value) == "the virtual fob did not start within 0 s"
    assert not emu.alive and emu._proc is None
    # stopped at once: not after the 10 s stop() gives the board's reader thread
    assert time.monotonic() - started < 6


def test_a_board_process_that_fails_says_why(tmp_path, monkeypatch):
    _node()
    broken = tmp_path / "wasm"
    broken.mkdir()
    (broken / "micropython.mjs").write_text("throw new Error('no port here');\n")
    (broken / "micropython.wasm").write_bytes(b"")
    monkeypatch.setenv("HWTOKEN_MICROPYTHON_WASM", str(broken))
    failures: list = []  # an exception in the board's threads (printed with a traceback)
    monkeypatch.setattr(threading, "excepthook", failures.append)
    for _ in range(3):  # every time: the error, not "no message" or Node.js' version line
        emu = FobEmulator()
        with pytest.raises(SetupError) as exc:
            emu.start()
        assert str(exc.value) == "the virtual fob's Node.js process failed: Error: no port here"
        assert not emu.alive and emu._proc is None
    assert failures == []


def test_failure_is_the_last_error_on_stderr():
    emu = FobEmulator()
    assert emu.failure() == "no message"
    emu._stderr = [b"file:///x.mjs:1\nthrow new Error('a');\n^\n\nTypeError: the", b" first\n"
                   b"    at x\nError [ERR_MODULE_NOT_FOUND]: the last \xff one\n  code: 'E'\n"
                   b"}\n\nNode.js v20.20.2\n"]
    assert emu.failure() == "Error [ERR_MODULE_NOT_FOUND]: the last \ufffd one"
    emu._stderr = [b"  first\nnot an error: ", b"the last one \n\n "]  # none: the last line
    assert emu.failure() == "not an error: the last one"
    emu._stderr = [b"x" * 400 + b"\n"]
    assert emu.failure() == "x" * 300
    emu._stderr = [b"Error: " + b"x" * 400 + b"\nNode.js v20\n"]
    assert emu.failure() == "Error: " + "x" * 293


def test_a_started_board(board):
    assert board.alive and board.version == "1.27.0"
    assert os.getsid(board._proc.pid) == board._proc.pid  # its own session: no Ctrl-C
    for named in (lambda t: t.name == "hwtoken-fob-emulator",
                  lambda t: t.name.endswith("(_drain_stderr)")):
        threads = [t for t in threading.enumerate() if named(t)]
        assert threads and all(t.daemon for t in threads)  # never keeps Python running
    pid = board._proc.pid
    with board as same:  # already started: the same board
        assert same is board and board._proc.pid == pid
        heap = board.heap()
    assert not board.alive  # the with block stopped it
    assert set(heap) == {"mem_alloc", "mem_free", "running"}
    assert heap["running"] is False and heap["mem_alloc"] > 0 and heap["mem_free"] > 0
    assert not [t for t in threading.enumerate() if t.name == "hwtoken-fob-emulator"]


def _rtc(repl: Repl) -> int:
    """The board's chip RTC as unix time."""
    y, mo, d, _, h, mi, s, _ = json.loads(
        repl.run("import machine; print(list(machine.RTC().datetime()))"))
    return calendar.timegm((y, mo, d, h, mi, s))


@pytest.mark.parametrize("args, found", [({}, [0x3C]), ({"oled_addr": 0x3D}, [0x3D]),
                                         ({"ds3231": True}, [0x3C, 0x68])])
def test_the_boards_i2c_devices(args, found):
    _node()
    with FobEmulator(**args) as emu:
        scanned = Repl(emu).run("import machine; print(machine.I2C(0).scan())")
    assert json.loads(scanned) == found


def test_the_serial_port_and_the_rtc(board):
    repl = Repl(board)
    assert repl.run("print(6 * 7)") == "42"
    t0 = _rtc(repl)
    assert time.gmtime(t0)[:2] == (2021, 1)  # an RP2040's RTC after power-up
    board.shift_rtc(3600)
    t1 = _rtc(repl)
    assert 3600 <= t1 - t0 <= 3610
    board.shift_rtc(-7200.9)  # whole seconds
    t2 = _rtc(repl)
    assert -7200 <= t2 - t1 <= -7190
    assert board.running is False
    running, took = _timed(lambda: board.wait_running(0.2))
    assert running is False and took >= 0.15  # it waited its 0.2 s


def test_requests_the_board_refuses_or_does_not_answer(board):
    with pytest.raises(DeviceError) as exc:
        board.request("reboot")
    assert str(exc.value) == "unknown request reboot"
    with pytest.raises(DeviceError) as exc:
        board.press("next", wait=0)
    assert str(exc.value).startswith("the fob's main loop is not running (a host holds its "
                                     "REPL, or no firmware is deployed")
    with pytest.raises(DeviceError) as exc:  # the board waits 5 s for a main loop: too long
        board.request("press", timeout=1, button="a", long=False, wait_ms=5000)
    assert str(exc.value) == "the virtual fob did not answer 'press' within 1 s"


def _unread(fd: int) -> int:
    """How many bytes wait in the pipe ``fd`` belongs to."""
    n = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, n)
    return n[0]


def test_a_board_that_dies_during_a_request(board):
    errors: list[str] = []

    def ask():
        try:
            board.request("press", button="a", long=False, wait_ms=15000)
        except DeviceError as exc:
            errors.append(str(exc))

    pid, pipe = board._proc.pid, board._proc.stdin.fileno()
    os.kill(pid, signal.SIGSTOP)  # alive, reading nothing: a request waits in its pipe
    t = threading.Thread(target=ask)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while _unread(pipe) == 0:  # the request is on its way: then the board dies
            assert time.monotonic() < deadline, "the request was not sent"
            threading.Event().wait(0.01)
    finally:
        os.kill(pid, signal.SIGKILL)
        t.join(15)
    assert errors == ["the virtual fob stopped"]
    assert not board.alive and board.wait_running(5) is False
    with pytest.raises(DeviceError) as exc:  # not waited for: it has stopped
        board.wait_frame(lambda f: f.on)
    assert str(exc.value) == ("the virtual fob's screen did not show what was expected "
                              "within 10 s")
    board.stop()
    with pytest.raises(DeviceError) as exc:
        board.request("heap")
    assert str(exc.value) == "the virtual fob is not running"


def test_a_board_whose_input_is_closed_has_stopped(board):
    board._proc.stdin.close()
    for call in (lambda: board.write(b"x"), lambda: board.request("heap")):
        with pytest.raises(DeviceError) as exc:
            call()
        assert str(exc.value) == "the virtual fob stopped"


def test_a_line_the_board_cannot_take_is_logged(board, caplog):
    caplog.set_level(logging.WARNING, logger=proc_mod.__name__)
    board._send({"op": "repl", "data": 5})
    heap = board.heap()  # answered after the log line: it has been read by then
    assert heap["running"] is False
    warnings = [r.getMessage() for r in caplog.records if r.name == proc_mod.__name__]
    assert len(warnings) == 1 and warnings[0].startswith("virtual fob: TypeError")


def test_stop_saves_the_flash_and_a_stuck_board_is_killed(tmp_path):
    _node()
    emu = FobEmulator(flash=tmp_path).start()
    proc = emu._proc
    Repl(emu).run("open('kept.txt', 'w').write('hello')")
    started = time.monotonic()
    emu.stop()
    assert proc.returncode == 0 and time.monotonic() - started < 8
    assert (tmp_path / "kept.txt").read_text() == "hello"
    assert all(s.closed for s in (proc.stdin, proc.stdout, proc.stderr))
    emu.start()
    proc = emu._proc
    os.kill(proc.pid, signal.SIGSTOP)  # stuck: it cannot take the stop request
    stopping = threading.Thread(target=emu.stop, kwargs={"timeout": 1}, daemon=True)
    try:
        stopping.start()
        stopping.join(15)
        assert not stopping.is_alive(), "stop() waited for a stuck board"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL and not emu.alive


def test_a_line_from_the_board_that_is_not_json_is_skipped(board, caplog):
    caplog.set_level(logging.DEBUG, logger=proc_mod.__name__)
    repl = Repl(board)  # (the interpreter's own output reaches the host as repl events)
    repl.run("import js; js.process.stdout.write('not json ' + 'x' * 300 + '\\n')")  # raw
    assert board.heap()["running"] is False  # what follows is still read
    assert [r.getMessage() for r in caplog.records if r.name == proc_mod.__name__] == [
        "unexpected line from the board: " + repr(b"not json " + b"x" * 191)]  # 200 bytes


def test_stop_gives_a_callback_in_progress_its_time(board):
    entered, release, done = threading.Event(), threading.Event(), []

    def slow(data):  # a callback busy for 0.3 s when stop() comes
        entered.set()
        release.wait(0.3)
        done.append(data)

    board.on_output = slow
    board.write(b"\r")
    assert entered.wait(10)
    board.stop()
    assert done and not [t for t in threading.enumerate() if t.name == "hwtoken-fob-emulator"]
    # a callback that does not end: stop() waits for it no longer than its timeout
    board.start()
    entered.clear()
    board.on_output = lambda data: (entered.set(), release.wait(30))
    board.write(b"\r")
    assert entered.wait(10)
    try:
        _, took = _timed(lambda: board.stop(timeout=0.5), limit=8)
    finally:
        release.set()
    assert took >= 0.5 and not board.alive


def test_stop_from_the_boards_own_thread(board, monkeypatch):
    failures: list = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    done = threading.Event()

    def on_output(data):
        board.stop()
        done.set()

    board.on_output = on_output
    board.write(b"\r")
    assert done.wait(10)
    assert failures == [] and not board.alive


def test_the_deployed_firmware_runs_draws_and_takes_presses(flash):
    _node()
    frames: list[Frame] = []
    emu = FobEmulator(flash=flash)
    emu.on_frame = frames.append
    with emu:
        assert emu.wait_running(10) is True and emu.running is True
        frame = emu.wait_frame(lambda f: read_screen(f.screen).kind == "message")
        assert frame.on and frame.n >= 1 and frame.contrast == 255
        assert read_screen(frame.screen).title == "NO TRUSTED TIME"
        assert frames[-1] == emu.frame
        seen = list(frames)  # (the reader thread may append meanwhile)
        # each frame the board drew, once, and nothing on its other events
        assert all(isinstance(f, Frame) for f in seen)
        assert len({id(f) for f in seen}) == len(seen)
        exc, took = _timed(lambda: emu.wait_frame(lambda f: False, timeout=0.3))
        assert isinstance(exc, DeviceError) and took >= 0.25  # it waited its 0.3 s
        assert str(exc) == ("the virtual fob's screen did not show what was expected "
                            "within 0 s")
        pressed = emu.press()  # next by default
        assert (pressed["button"], pressed["pin"], pressed["long"]) == ("a", 14, False)
        pressed = emu.press("next")
        assert (pressed["button"], pressed["pin"], pressed["long"]) == ("a", 14, False)
        pressed = emu.press("prev")
        assert (pressed["button"], pressed["pin"], pressed["long"]) == ("b", 15, False)
        pressed = emu.press("long")
        assert (pressed["button"], pressed["pin"], pressed["long"]) == ("a", 14, True)
        assert emu.heap()["running"] is True
        emu.power_cycle()
        assert emu.wait_running(10) is True
        assert read_screen(emu.wait_frame(lambda f: f.on).screen).title == "NO TRUSTED TIME"


def test_a_press_waits_for_the_main_loop(flash):
    _node()
    with FobEmulator(flash=flash) as emu:
        assert emu.wait_running(10)
        repl = Repl(emu)
        emu.write(b"\x03")  # Ctrl-C: the host holds the REPL, the loop stops
        with repl.cond:
            assert repl.cond.wait_for(lambda: repl.seen.endswith(b">>> "), 10)
        assert emu.running is False
        exc, took = _timed(lambda: emu.press("next", wait=0.5))
        assert isinstance(exc, DeviceError) and 0.4 <= took < 4  # its 0.5 s, not the 5 s default
        assert str(exc).startswith("the fob's main loop is not running")
        n = emu.frame.n
        emu.write(b"\x04")  # a soft reset: main.py runs again, and draws its screen again
        frame = emu.wait_frame(lambda f: f.n > n and read_screen(f.screen).kind == "message")
        assert read_screen(frame.screen).title == "NO TRUSTED TIME"
        assert emu.press("next", wait=10)["pin"] == 14


def test_a_press_the_board_does_not_answer(board, monkeypatch):
    monkeypatch.setattr(proc_mod, "REQUEST_TIMEOUT", 0.5)  # (20 s)
    os.kill(board._proc.pid, signal.SIGSTOP)  # it takes the request, but cannot answer
    try:
        exc, took = _timed(lambda: board.press("next", wait=0.3))
    finally:
        os.kill(board._proc.pid, signal.SIGCONT)
    assert isinstance(exc, DeviceError) and took >= 0.7  # REQUEST_TIMEOUT + wait
    assert str(exc) == "the virtual fob did not answer 'press' within 1 s"


def test_power_cycle_restarts_the_chip_rtc(board):
    repl = Repl(board)
    board.shift_rtc(86400 * 400)  # a year and more ahead
    assert time.gmtime(_rtc(repl))[0] == 2022
    repl.run("open('kept.txt', 'w').write('x'); x = 1")
    board.power_cycle()
    assert board.running is False
    assert time.gmtime(_rtc(repl))[:2] == (2021, 1)
    assert repl.run("print(open('kept.txt').read(), 'x' in globals())") == "x False"

