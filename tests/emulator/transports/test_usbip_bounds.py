"""The servers are bounded: no transfer longer than its endpoint takes is read, sessions are
capped and closed when idle or stalled, running out of file descriptors only pauses
accepting, and after a flood (by another user, and by the owner) the owner's client works.

Raw USB/IP is written by hand here (headers as in the kernel's usbip_protocol.rst).
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from usbip_wire import read_exact

from hwtoken.emulator import serve, usb
from hwtoken.emulator.serve import served
from hwtoken.emulator.transports import acceptor, usbip_urbs
from hwtoken.emulator.transports.usbip_fido import open_usbip_fido

OP_IMPORT = struct.pack(">HHI", 0x0111, 0x8003, 0) + b"1-1".ljust(32, b"\0")
OP_DEVLIST = struct.pack(">HHI", 0x0111, 0x8005, 0)
OUT, IN = 0, 1
HWTOKEN = str(Path(sys.executable).with_name("hwtoken"))


def _connect(where, timeout: float = 10) -> socket.socket:
    if isinstance(where, str | Path):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        try:
            s.connect(str(where))
        except BaseException:
            s.close()
            raise
    else:
        s = socket.create_connection(where, timeout=timeout)
    s.settimeout(10)
    return s


def _import(where) -> socket.socket:
    s = _connect(where)
    s.sendall(OP_IMPORT)
    reply = read_exact(s, 8 + 312)
    assert struct.unpack(">HHI", reply[:8])[2] == 0
    return s


def _submit(seq: int, direction: int, ep: int, length: int, setup: bytes = bytes(8)) -> bytes:
    return (struct.pack(">IIIII", 1, seq, 0x00010002, direction, ep)
            + struct.pack(">Iiiii", 0, length, 0, 0, 0) + setup)


def _answer(s: socket.socket) -> tuple[int, int, int]:
    """(command, seqnum, status) of the next answer (its IN data is read and dropped)."""
    head = read_exact(s, 48)
    command, seqnum, _devid, direction, _ep = struct.unpack(">IIIII", head[:20])
    status, actual = struct.unpack(">ii", head[20:28])
    if direction == IN and actual > 0:
        read_exact(s, actual)
    return command, seqnum, status


def _closed_by_server(s: socket.socket, timeout: float = 10) -> bool:
    """True if the server closes ``s`` within ``timeout`` seconds (what it sends first is
    read and dropped)."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not s.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def _settled(*acceptors) -> None:
    """Wait until the server has seen every flood connection end (closes arrive as events
    on its side; until then they still count against the cap)."""
    deadline = time.monotonic() + 30
    while any(a.active for a in acceptors):
        assert time.monotonic() < deadline, [a.active for a in acceptors]
        time.sleep(0.02)


def _still_serves(where) -> None:
    host, port = where if not isinstance(where, str | Path) else (str(where), 0)
    dev = open_usbip_fido(host, port, "1-1", timeout=10)
    try:
        assert dev.ping(b"still mine") == b"still mine"
    finally:
        dev.close()


# -- transfers ----------------------------------------------------------------------------------
SET_REPORT = bytes([0x21, 0x09, 0x00, 0x03, 0x00, 0x00]) + (0xFFFF).to_bytes(2, "little")


@pytest.mark.parametrize(("ep", "limit", "setup"), [
    (usb.FIDO_EP_OUT, 129 * 64, bytes(8)),  # a whole CTAPHID message: 7609 bytes in reports
    (usb.CCID_EP_OUT, 3072, bytes(8)),  # dwMaxCCIDMessageLength
    (0, 0xFFFF, SET_REPORT),  # a control transfer's wLength
])
def test_a_transfer_up_to_its_endpoints_limit_is_served_and_one_byte_more_is_not(
        usbip_server, ep, limit, setup):
    assert usbip_server.out_limits[ep] == limit
    where = (usbip_server.host, usbip_server.port)
    s = _import(where)
    s.sendall(_submit(1, OUT, ep, limit, setup) + bytes(limit))
    command, seq, _status = _answer(s)
    assert (command, seq) == (3, 1)  # answered (the device may STALL nonsense, not hang)
    s.sendall(_submit(2, OUT, ep, limit + 1, setup))
    assert _closed_by_server(s)
    s.close()
    _still_serves(where)


def test_a_2_gib_transfer_is_never_read(usbip_server, caplog):
    """The review sent 512 MiB to the 64-byte FIDO endpoint and the server kept them all."""
    where = (usbip_server.host, usbip_server.port)
    s = _import(where)
    s.sendall(_submit(1, OUT, usb.FIDO_EP_OUT, 2**31 - 1))
    sent = 0
    try:
        while sent < 64 << 20:
            s.sendall(bytes(1 << 16))
            sent += 1 << 16
    except OSError:  # the server hung up: the rest was never read
        pass
    s.close()
    assert sent < 16 << 20, sent  # at most what socket buffers hold before the reset
    assert "an OUT transfer of 2147483647 bytes to endpoint 4, which takes at most 8256" \
        in caplog.text
    _still_serves(where)
    assert usbip_server.errors == 0


def test_too_many_waiting_in_transfers_end_the_session(usbip_server):
    where = (usbip_server.host, usbip_server.port)
    s = _import(where)
    fido_in = usb.FIDO_EP_IN & 0x0F
    s.sendall(b"".join(_submit(n, IN, fido_in, 64) for n in range(1, usbip_urbs.MAX_PARKED + 1)))
    get_device = bytes([0x80, 0x06, 0x00, 0x01, 0x00, 0x00, 0x12, 0x00])
    s.sendall(_submit(1000, IN, 0, 18, get_device))  # answered: the session is fine so far
    assert _answer(s) == (3, 1000, 0)
    s.sendall(_submit(1001, IN, fido_in, 64))  # one more waiting: too many
    assert _closed_by_server(s)
    s.close()
    _still_serves(where)


# -- sessions ------------------------------------------------------------------------------------
def test_sessions_beyond_the_cap_wait_for_a_free_one(usbip_key):
    with served(usbip_key, max_sessions=3) as srv:
        where = (srv.host, srv.port)
        held = [_import(where), _connect(where), _connect(where)]  # (two not even importing)
        extra = _connect(where)
        extra.sendall(OP_DEVLIST)
        extra.settimeout(1.0)
        with pytest.raises(TimeoutError):  # not accepted while three are served
            extra.recv(8)
        assert srv.acceptors[0].full == 1
        held.pop().close()  # one ends: the waiting one is served
        extra.settimeout(10)
        assert extra.recv(8) == struct.pack(">HHI", 0x0111, 0x0005, 0)
        extra.close()
        for s in held:
            s.close()
        _settled(*srv.acceptors)
        _still_serves(where)


def test_an_idle_session_is_closed_but_one_a_host_waits_on_is_not(usbip_key, monkeypatch):
    monkeypatch.setattr(usbip_urbs, "_POLL", 0.1)
    with served(usbip_key, idle_timeout=0.5) as srv:
        where = (srv.host, srv.port)
        waiting = _import(where)
        waiting.sendall(_submit(1, IN, usb.FIDO_EP_IN & 0x0F, 64))  # a host polling the key
        idle = _import(where)
        assert _closed_by_server(idle, timeout=10)
        assert not _closed_by_server(waiting, timeout=2)  # four idle timeouts later: open
        unlink = (struct.pack(">IIIII", 2, 2, 0x00010002, 0, 0)
                  + struct.pack(">Iiiii", 1, 0, 0, 0, 0) + bytes(8))
        waiting.sendall(unlink)  # the host takes its transfer back: now it is idle
        assert _closed_by_server(waiting, timeout=10)
        idle.close()
        waiting.close()
        _still_serves(where)


def test_a_stalled_transfer_ends_the_session(usbip_server, monkeypatch):
    monkeypatch.setattr(usbip_urbs, "STALL_TIMEOUT", 0.5)
    where = (usbip_server.host, usbip_server.port)
    s = _import(where)
    s.sendall(_submit(1, OUT, usb.FIDO_EP_OUT, 64)[:20])  # 20 of the header's 48 bytes
    assert _closed_by_server(s)
    s.close()
    _still_serves(where)


def test_a_request_sent_one_byte_at_a_time_is_cut_off(usbip_server, monkeypatch):
    """Each byte arrives well within a read timeout; the whole request does not."""
    monkeypatch.setattr(serve, "HANDSHAKE_TIMEOUT", 1.0)
    s = _connect((usbip_server.host, usbip_server.port))
    started = time.monotonic()
    closed = False
    for byte in OP_IMPORT:
        try:
            s.sendall(bytes([byte]))
        except OSError:
            closed = True
            break
        time.sleep(0.1)  # (the trickle itself: what a slow-loris client does)
    closed = closed or _closed_by_server(s, timeout=5)
    s.close()
    assert closed and time.monotonic() - started < 4.0
    _still_serves((usbip_server.host, usbip_server.port))


# -- floods --------------------------------------------------------------------------------------
FLOOD = textwrap.dedent("""
    import socket, struct, sys
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    held, answered = [], 0
    for i in range(n):
        try:
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(struct.pack(">HHI", 0x0111, 0x8003, 0) + b"1-1".ljust(32, b"\\0"))
            held.append(s)
        except OSError:
            pass
    for s in held:
        try:
            if s.recv(1):
                answered += 1
        except OSError:
            pass
        s.close()
    print(answered)
""")


def _owner_flood(where, n: int) -> None:
    """The owner's own misbehaving clients: idle connections, junk, oversized transfers."""
    socks = []
    for i in range(n):
        try:
            s = _connect(where, timeout=0.2)  # (a full backlog: the flood goes on)
        except OSError:
            continue
        socks.append(s)
        try:
            if i % 3 == 1:
                s.sendall(b"\xff" * 64)
            elif i % 3 == 2:
                s.sendall(OP_IMPORT + _submit(1, OUT, usb.FIDO_EP_OUT, 2**30))
        except OSError:
            pass
    for s in socks:
        s.close()


def test_a_flood_over_tcp_leaves_the_owners_client_working(usbip_key, other_user):
    with served(usbip_key, max_sessions=8) as srv:
        where = (srv.host, srv.port)
        flood = other_user.python_as_other_user(FLOOD, srv.host, str(srv.port), "200",
                                                timeout=120)
        assert flood.returncode == 0, flood.stderr
        assert flood.stdout.strip() == "0"  # not one of 200 got a byte
        _owner_flood(where, 60)
        _settled(*srv.acceptors)
        _still_serves(where)
        assert srv.errors == 0 and srv.policy.refused >= 200


def test_a_flood_over_the_unix_socket_leaves_the_owners_client_working(usbip_key, tmp_path):
    path = tmp_path / "usbip.sock"
    with served(usbip_key, unix_path=path, max_sessions=8) as srv:
        _owner_flood(path, 60)
        _settled(*srv.acceptors)
        _still_serves(path)
        assert srv.errors == 0


def test_a_flood_of_the_control_socket_leaves_plugging_working(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from hwtoken.emulator.transports.umockdev import control

    monkeypatch.setattr(control, "READ_TIMEOUT", 2.0)  # what an idle client is given

    class Testbed:
        def __init__(self) -> None:
            self.root = tmp_path
            self.plugged: list = []
            self.on_replug: list = []  # (the server listens for a key's reboot)

        def plug(self, key):
            p = SimpleNamespace(key=key, hidraw=["/dev/hidraw0"], usbfs="/dev/bus/usb/001/002")
            self.plugged.append(p)
            return p

        def unplug(self, p) -> None:
            self.plugged.remove(p)

    server = control.ControlServer(Testbed(), {"k": object()})
    try:
        held = [_connect(server.path) for _ in range(control.MAX_CONNECTIONS)]
        extra = _connect(server.path)
        extra.sendall(b"plug k\n")
        extra.settimeout(0.3)  # (well within the idle ones' 2 s)
        with pytest.raises(TimeoutError):  # the cap: not accepted while eight are served
            extra.recv(100)
        for s in held[:3]:
            s.sendall(b"x" * 10_000)  # junk, too long for a request: answered with an error
        _owner_flood(server.path, 40)
        for s in held:
            s.close()
        extra.settimeout(10)
        assert extra.recv(100).startswith(b"ok plug k")  # served once a slot was free
        extra.close()
        _settled(server._server.acceptor)
        assert control.send(server.path, "unplug", "k") == "ok unplug k: pulled out"
    finally:
        server.close()


# -- out of file descriptors ---------------------------------------------------------------------
class _Starved:
    """A listening socket whose accept() fails with EMFILE ``n`` times, then works."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.real = socket.create_server(("127.0.0.1", 0))
        self.tried = 0

    def accept(self):
        self.tried += 1
        if self.left:
            self.left -= 1
            raise OSError(24, "Too many open files")
        return self.real.accept()


def test_running_out_of_descriptors_pauses_accepting_and_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(acceptor, "BACKOFF_FIRST", 0.001)
    monkeypatch.setattr(acceptor, "BACKOFF_MAX", 0.002)
    starved = _Starved(40)
    got = threading.Event()
    stop = threading.Event()
    retry = acceptor.AcceptRetry("test", lambda *a: warnings.append(a), stop)
    warnings: list = []
    client = socket.create_connection(starved.real.getsockname())

    def run() -> None:
        conn = retry.accept(starved)
        if conn is not None:
            conn[0].close()
            got.set()

    t = threading.Thread(target=run)
    t.start()
    assert got.wait(10)
    t.join(10)
    client.close()
    starved.real.close()
    assert starved.tried == 41 and len(warnings) == 1 and warnings[0][0] == "starved"


def _lowest_free_fd(pid: int) -> int:
    used = {int(n) for n in os.listdir(f"/proc/{pid}/fd")}
    fd = 0
    while fd in used:
        fd += 1
    return fd


@pytest.mark.slow
def test_a_serve_out_of_descriptors_keeps_accepting(tmp_path):
    """`hwtoken emulate serve` with every descriptor in use: it says so once, waits, and
    serves its owner again once descriptors are free (the review saw it stop for good)."""
    env = {**os.environ, "HWTOKEN_STATE_DIR": str(tmp_path / "state")}
    subprocess.run([HWTOKEN, "emulate", "create", "k"], env=env, check=True, timeout=60,
                   capture_output=True)
    proc = subprocess.Popen([HWTOKEN, "emulate", "serve", "k", "--usbip", "127.0.0.1:0",
                             "--json"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        text = ""
        while True:  # (--json prints one indented document)
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            text += line
            if line.startswith("}"):
                break
        doc = json.loads(text)
        where = (doc["usbip"]["host"], doc["usbip"]["port"])
        baseline = len(os.listdir(f"/proc/{proc.pid}/fd"))
        held = [_import(where) for _ in range(3)]
        soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (_lowest_free_fd(proc.pid), hard))
        waiting = [_connect(where) for _ in range(5)]  # accept() now fails: EMFILE
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while not any("cannot accept connections" in ln for ln in lines):
            assert time.monotonic() < deadline, lines
            lines.append(proc.stderr.readline())
        for s in held + waiting:
            s.close()
        deadline = time.monotonic() + 30  # the serve sees them close and frees their fds
        while len(os.listdir(f"/proc/{proc.pid}/fd")) > baseline:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (soft, hard))  # room again
        _still_serves(where)  # the accept loop lived through it
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    lines += err.splitlines()
    starved = [ln for ln in lines if "cannot accept connections" in ln]
    assert starved == ["warning: hwtoken-usbip-" + str(where[1]) + ": cannot accept "
                       "connections (Too many open files); waiting for some to close, then "
                       "accepting again\n"], lines
    assert proc.returncode == 0, err
    assert not [ln for ln in lines if re.search(r"Traceback|error:", ln)], lines


def test_stopping_lets_a_request_being_handled_finish_when_asked_to():
    """The control socket's close: the request in hand still gets its answer (`emulate run`
    ends right after the unplug its CMD was waiting for)."""
    listening = socket.create_server(("127.0.0.1", 0))
    working, release = threading.Event(), threading.Event()

    def handle(conn: socket.socket) -> None:
        working.set()
        release.wait(10)
        conn.sendall(b"ok\n")

    acc = acceptor.Acceptor(listening, handle, name="test").start()
    client = socket.create_connection(listening.getsockname(), timeout=10)
    try:
        assert working.wait(10)
        stopper = threading.Thread(target=acc.stop, kwargs={"drain": 10.0})
        stopper.start()
        release.set()
        assert client.recv(3) == b"ok\n"
        stopper.join(10)
        assert not stopper.is_alive() and acc.active == 0
    finally:
        client.close()
        listening.close()
