"""The virtual fob's control socket from Python (hwtoken.fob.emulator.control): its runtime
files, its requests and answers, and the errors a client sees.

In-process and fast: the board is a FobEmulator that was not started (its screen blank, its
requests refused as a stopped board's), or one started without firmware where the real
board must answer.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest
from fob_support import _node

from hwtoken import controlsocket
from hwtoken.errors import DeviceBusy, DeviceError, InvalidInput
from hwtoken.fob.emulator import FobEmulator, Frame
from hwtoken.fob.emulator import control as ctl
from hwtoken.fob.simulate import Screen

NAME_RULE = ("a virtual fob's name is 1 to 64 ASCII letters, digits, - and _ "
             "(not starting with -)")
BLANK = base64.b64encode(bytes(1024)).decode()  # a blank screen's RAM


@pytest.fixture
def served(_isolated_state_dir):
    """``serve(emulator, name)``: a ControlServer for ``emulator`` with its lock held;
    everything closed when the test ends."""
    opened: list = []

    def serve(emulator, name="bench", port="socket://127.0.0.1:4444"):
        lock = ctl.claim(name)
        opened.append(lock.release)
        server = ctl.ControlServer(emulator, name, port)
        opened.append(server.close)
        return server

    yield serve
    for close in reversed(opened):
        close()


def _raw(path, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` as it is (no newline added, unlike ``controlsocket.ask``) and read the
    answer line."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(data)
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer


def test_names_are_checked():
    for good in ("fob", "a", "_x", "bench-2", "A" * 64):
        assert ctl.check_name(good) == good
    for bad in ("", "-x", "../x", "a b", "A" * 65, "fob\n", 5, None):
        with pytest.raises(InvalidInput) as exc:
            ctl.check_name(bad)
        assert str(exc.value) == NAME_RULE
    assert ctl.DEFAULT_NAME == "fob"


def test_frame_doc():
    ram = bytes(range(256)) * 4
    doc = ctl.frame_doc(Frame(Screen(ram), True, 8, 3))
    assert doc == {"ram": base64.b64encode(ram).decode(), "on": True, "contrast": 8, "n": 3}
    assert ctl.frame_doc(Frame(Screen(bytes(1024)), False, 0, 0)) == {
        "ram": BLANK, "on": False, "contrast": 0, "n": 0}


@pytest.fixture
def short_dir():
    """A directory short enough for a socket path under it (pytest's tmp_path under
    xdist is not, on every machine)."""
    d = Path(tempfile.mkdtemp(prefix="hwt-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_claim_makes_a_private_directory_and_holds_the_lock(short_dir, monkeypatch):
    state = short_dir / "new" / "state"  # not there yet: made with its parents
    monkeypatch.setenv("HWTOKEN_STATE_DIR", str(state))
    assert ctl.runtime_dir() == state / "fob-emulators"
    lock = ctl.claim("bench")
    try:
        d = state / "fob-emulators"
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        assert lock.held and lock.path == d / "bench.lock"
        with pytest.raises(DeviceBusy) as exc:
            ctl.claim("bench")
        assert str(exc.value) == (f"virtual fob 'bench' is in use by another process "
                                  f"(lock {d / 'bench.lock'})")
        other = ctl.claim("other")  # the directory is there already: fine
        other.release()
    finally:
        lock.release()
    again = ctl.claim("bench")  # released: the next emulator takes it
    again.release()
    with pytest.raises(InvalidInput) as exc:
        ctl.claim("-bad")
    assert str(exc.value) == NAME_RULE


def test_claim_refuses_a_socket_path_too_long_for_unix(tmp_path, monkeypatch):
    def state_for(length: int):
        # .../<pad>/fob-emulators/n.sock is ``length`` bytes long
        tail = len(os.fsencode(tmp_path)) + len("/") + len("/fob-emulators/n.sock")
        state = tmp_path / ("s" * (length - tail))
        monkeypatch.setenv("HWTOKEN_STATE_DIR", str(state))
        return state / "fob-emulators" / "n.sock"

    path = state_for(107)
    assert len(os.fsencode(path)) == 107
    ctl.claim("n").release()  # 107 bytes: fits
    path = state_for(108)
    with pytest.raises(InvalidInput) as exc:
        ctl.claim("n")
    assert str(exc.value) == (f"the control socket path {path} is too long for a Unix "
                              "socket: use a shorter --state-dir")


def test_the_runtime_document_and_socket(served, _isolated_state_dir):
    d = _isolated_state_dir / "fob-emulators"
    d.mkdir(mode=0o700)
    (d / "bench.sock").write_text("left by an emulator that died")
    before = int(time.time())
    server = served(FobEmulator(), "bench", "/dev/pts/7")
    after = int(time.time())
    assert server.name == "bench" and server.path == d / "bench.sock"
    assert stat.S_ISSOCK((d / "bench.sock").stat().st_mode)
    assert stat.S_IMODE((d / "bench.sock").stat().st_mode) == 0o600
    text = (d / "bench.json").read_text()
    assert text.endswith("}\n") and text.count("\n") == 1
    doc = json.loads(text)
    assert doc == server.doc == {"name": "bench", "pid": os.getpid(), "port": "/dev/pts/7",
                                 "control": str(d / "bench.sock"), "started": doc["started"]}
    assert before <= doc["started"] <= after
    assert ctl.running("bench") == doc
    server.close()
    assert not (d / "bench.json").exists() and not (d / "bench.sock").exists()
    server.close()  # twice: nothing left to remove, no error


def test_a_server_needs_a_valid_name(_isolated_state_dir):
    with pytest.raises(InvalidInput) as exc:
        ctl.ControlServer(FobEmulator(), "../x", "p")
    assert str(exc.value) == NAME_RULE


def test_requests_and_their_answers(served):
    server = served(FobEmulator())  # not started: a blank screen, nothing runs
    screen = ctl.request("bench", {"op": "screen"})
    assert screen == {"ok": True, "ram": BLANK, "on": False, "contrast": 0,
                      "n": 0, "running": False}
    assert server.handle({"op": "screen"}) == {k: v for k, v in screen.items() if k != "ok"}
    for req, error in [
        ({"op": "press"}, "the virtual fob is not running"),  # button next by default
        ({"op": "press", "button": "next"}, "the virtual fob is not running"),
        ({"op": "press", "button": "up"}, "button must be one of next, prev, long"),
        ({"op": "heap"}, "the virtual fob is not running"),
        ({"op": "reboot"}, "send op press, screen or heap"),
        ({}, "send op press, screen or heap"),
    ]:
        with pytest.raises(DeviceError) as exc:
            ctl.request("bench", req)
        assert str(exc.value) == error, req
    path = server.path
    for data, answer in [
        (b'{"op": "screen"}\n', None),
        (b"\xff{not json\n", {"ok": False, "error": "not a JSON request"}),
        (b'["op", "screen"]\n', {"ok": False, "error": "not a JSON request"}),
        (b'"screen"\n', {"ok": False, "error": "not a JSON request"}),
        (b'{"op": "heap"}\n', {"ok": False, "error": "the virtual fob is not running"}),
    ]:
        raw = controlsocket.ask(path, data.removesuffix(b"\n"))
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1
        if answer is None:
            assert json.loads(raw) == screen
        else:
            assert json.loads(raw) == answer


def test_a_request_of_up_to_max_request_bytes_is_read_whole(served):
    server = served(FobEmulator())
    head = b'{"op": "screen", "pad": "'
    req = head + b"x" * (ctl.MAX_REQUEST - len(head) - 2) + b'"}'
    assert len(req) == ctl.MAX_REQUEST == 1024
    # no newline: the server stops reading at MAX_REQUEST bytes, and answers at once
    assert json.loads(_raw(server.path, req, timeout=5))["ok"] is True


def test_a_request_that_fails_unexpectedly_gets_the_failure_answer(served):
    class BrokenBoard(FobEmulator):
        def heap(self):
            raise RuntimeError("broken")

    server = served(BrokenBoard())
    assert json.loads(controlsocket.ask(server.path, b'{"op": "heap"}')) == {
        "ok": False, "error": "the request failed in the emulator"}
    with pytest.raises(DeviceError) as exc:
        ctl.request("bench", {"op": "heap"})
    assert str(exc.value) == "the request failed in the emulator"


def test_a_screen_request_need_not_wait_for_a_press(served):
    entered, release = threading.Event(), threading.Event()

    class SlowBoard(FobEmulator):
        def press(self, button="next", wait=5.0):
            entered.set()
            release.wait(10)
            return {"pin": 14, "button": button}

    served(SlowBoard())
    pressed: list = []
    t = threading.Thread(target=lambda: pressed.append(ctl.request("bench", {"op": "press"})))
    t.start()
    try:
        assert entered.wait(10)
        assert ctl.request("bench", {"op": "screen"}, timeout=5)["n"] == 0
    finally:
        release.set()
        t.join(10)
    assert pressed == [{"ok": True, "pin": 14, "button": "next"}]
    assert threading.current_thread().name != "hwtoken-fob-control"
    assert any(t.name == "hwtoken-fob-control" for t in threading.enumerate())


def test_heap_from_a_started_board(served):
    _node()
    with FobEmulator() as emu:
        served(emu)
        heap = ctl.request("bench", {"op": "heap"})
    assert heap["ok"] is True and heap["running"] is False and heap["mem_alloc"] > 0


def test_running_needs_the_lock_and_a_document(_isolated_state_dir):
    d = _isolated_state_dir / "fob-emulators"
    assert ctl.running("bench") is None  # no directory yet
    lock = ctl.claim("bench")
    try:
        assert ctl.running("bench") is None  # locked, no document yet
        for text in ("not json", '["a list"]', "3"):
            (d / "bench.json").write_text(text)
            assert ctl.running("bench") is None, text
        (d / "bench.json").write_text('{"control": "x"}')
        assert ctl.running("bench") == {"control": "x"}
    finally:
        lock.release()
    assert ctl.running("bench") is None  # the document of a process that is gone
    with pytest.raises(InvalidInput) as exc:
        ctl.running("a/b")
    assert str(exc.value) == NAME_RULE


def test_request_errors(_isolated_state_dir):
    with pytest.raises(DeviceError) as exc:
        ctl.request("fob", {"op": "screen"})
    assert str(exc.value) == ("no virtual fob named 'fob' is running: start one with "
                              "`hwtoken fob emulate`")
    with pytest.raises(DeviceError) as exc:
        ctl.request("bench", {"op": "screen"})
    assert str(exc.value) == ("no virtual fob named 'bench' is running: start one with "
                              "`hwtoken fob emulate --name bench`")
    d = _isolated_state_dir / "fob-emulators"
    lock = ctl.claim("bench")
    try:
        (d / "bench.json").write_text(json.dumps({"control": str(d / "gone.sock")}))
        with pytest.raises(DeviceError) as exc:
            ctl.request("bench", {"op": "screen"})
        assert str(exc.value) == ("the virtual fob 'bench' does not answer "
                                  "(No such file or directory)")
        # a socket that takes the request and never answers: the client's timeout
        silent = controlsocket.listen(d / "silent.sock")
        try:
            (d / "bench.json").write_text(json.dumps({"control": str(d / "silent.sock")}))
            errors: list[str] = []

            def ask():
                try:
                    ctl.request("bench", {"op": "screen"}, timeout=0.3)
                except DeviceError as exc:
                    errors.append(str(exc))

            asking = threading.Thread(target=ask, daemon=True)
            asking.start()
            asking.join(10)  # given up after its 0.3 s, not the default 30
            assert not asking.is_alive()
            assert errors == ["the virtual fob 'bench' does not answer (timed out)"]
        finally:
            silent.close()
        seen: list[bytes] = []

        def odd(line: bytes) -> bytes:
            seen.append(line)
            return b"<html>" if b"screen" in line else b'{"ok": false}'

        server = controlsocket.Server(d / "odd.sock", odd, limit=1024, name="odd",
                                      failure=b"")
        try:
            (d / "bench.json").write_text(json.dumps({"control": str(d / "odd.sock")}))
            with pytest.raises(DeviceError) as exc:
                ctl.request("bench", {"op": "screen"})
            assert str(exc.value) == "the virtual fob 'bench' sent an unexpected answer"
            assert json.loads(seen[0]) == {"op": "screen"}
            with pytest.raises(DeviceError) as exc:
                ctl.request("bench", {"op": "heap"})
            assert str(exc.value) == "None"  # refused without a reason
        finally:
            server.close()
    finally:
        lock.release()
