"""The virtual fob's serial port (hwtoken.fob.emulator.ports): on 127.0.0.1 and as a
pseudo-terminal, one program at a time, bytes as they are.

In-process: most tests put a recording board behind the port (a FobEmulator whose write()
keeps what the port hands it), so what crosses the port can be checked byte for byte; two
run the real board (MicroPython under Node.js) behind each kind of port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import stat
import struct
import threading
import time

import pytest
from fob_support import _node

from hwtoken.errors import DeviceError, InvalidInput
from hwtoken.fob.emulator import FobEmulator
from hwtoken.fob.emulator.ports import BUSY_WAIT, PtyPort, TcpPort


class Board(FobEmulator):
    """A board that keeps the bytes a host sends; ``b"!"`` finds it stopped."""

    def __init__(self) -> None:
        super().__init__()
        self.got = b""
        self.seen = threading.Condition()
        self.holding = threading.Event()  # set while a b"hold" write is held up
        self.release = threading.Event()

    def write(self, data: bytes) -> None:
        if data == b"!":
            raise DeviceError("the virtual fob stopped")
        if data == b"hold":  # a board busy with what it was sent
            self.holding.set()
            assert self.release.wait(10)
            return
        with self.seen:
            self.got += data
            self.seen.notify_all()

    def wait_got(self, data: bytes, timeout: float = 10) -> bool:
        with self.seen:
            return self.seen.wait_for(lambda: data in self.got, timeout)

    def say(self, data: bytes) -> None:
        """What the board writes to its serial port."""
        assert self.on_output is not None
        self.on_output(data)


def _connect(port: TcpPort) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port.port), timeout=10)


def _recv_until(sock: socket.socket, data: bytes, timeout: float = 10) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while data not in got:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        assert chunk, f"closed before {data!r} came: {got!r}"
        got += chunk
    return got


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


@pytest.fixture
def tcp():
    board = Board()
    port = TcpPort(board)
    try:
        yield board, port
    finally:
        port.close()


def test_tcp_port_is_loopback_and_carries_bytes_both_ways(tcp):
    board, port = tcp
    assert port.emulator is board and port.port > 0
    assert port.url == f"socket://127.0.0.1:{port.port}"
    assert port._sock.getsockname() == ("127.0.0.1", port.port)
    assert [t.daemon for t in _threads("hwtoken-fob-tcp")] == [True]
    board.say(b"said while nobody listens: lost")
    with _connect(port) as c:
        c.sendall(b"print(1)\r\n")
        assert board.wait_got(b"print(1)\r\n")
        big = bytes(range(256)) * 40  # more than one read
        c.sendall(big)
        assert board.wait_got(big)
        assert board.got == b"print(1)\r\n" + big
        board.say(b"1\r\n>>> ")
        assert _recv_until(c, b">>> ") == b"1\r\n>>> "


def test_tcp_port_cannot_take_a_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        n = taken.getsockname()[1]
        with pytest.raises(InvalidInput) as exc:
            TcpPort(Board(), n)
        assert str(exc.value) == f"cannot listen on 127.0.0.1:{n}: Address already in use"


def test_tcp_ports_on_free_ports():
    ports = [TcpPort(Board()), TcpPort(Board())]
    try:
        assert ports[0].port != ports[1].port
        assert all(p.port >= 1024 for p in ports)  # chosen by the system, not asked for
    finally:
        for p in ports:
            p.close()


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a reset (RST), as a program killed mid-transfer may."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_a_program_that_went_while_the_board_was_busy():
    board = Board()
    port = TcpPort(board)
    try:
        c = _connect(port)
        c.sendall(b"hold")
        assert board.holding.wait(10)  # the port's relay is busy in the board's write()
        _reset(c)
        board.say(b"to a program that has gone")  # fails on the socket: dropped, no error
        board.say(b"again")
    finally:
        port.close()  # shuts a reset socket down: no error either
        board.release.set()
    assert _threads("hwtoken-fob-tcp") == []


def test_tcp_port_on_a_given_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        n = probe.getsockname()[1]
    port = TcpPort(Board(), n)
    try:
        assert port.port == n and port.url == f"socket://127.0.0.1:{n}"
    finally:
        port.close()


def test_tcp_port_serves_one_program_at_a_time(tcp):
    board, port = tcp
    with _connect(port) as first:
        first.sendall(b"a")
        assert board.wait_got(b"a")
        started = time.monotonic()
        with _connect(port) as second:
            assert second.recv(10) == b""  # refused once the first kept it BUSY_WAIT s
            assert time.monotonic() - started >= BUSY_WAIT - 0.1
        first.sendall(b"b")
        assert board.wait_got(b"ab")
        board.say(b"to the first")
        assert _recv_until(first, b"to the first") == b"to the first"
    with _connect(port) as third:  # once the first has gone, the next one is served
        third.sendall(b"c")
        assert board.wait_got(b"abc")


def test_tcp_port_serves_the_next_program_once_the_first_closes(tcp):
    board, port = tcp
    for i in range(3):  # each closes, the next one is served at once
        with _connect(port) as c:
            c.sendall(b"%d" % i)
            assert board.wait_got(b"%d" % i)
    first = _connect(port)
    first.sendall(b"x")
    assert board.wait_got(b"x")
    with _connect(port) as second:  # waits for the first
        started = time.monotonic()
        first.close()
        second.sendall(b"y")
        assert board.wait_got(b"xy")
        assert time.monotonic() - started < BUSY_WAIT * 0.75  # told at once, no timeout
        board.say(b"to the second")
        assert _recv_until(second, b"to the second") == b"to the second"


def test_a_stopped_board_drops_the_program_and_frees_the_port(tcp, caplog):
    caplog.set_level(logging.DEBUG, logger="hwtoken.fob.emulator.ports")
    board, port = tcp
    with _connect(port) as c:
        c.sendall(b"a")
        assert board.wait_got(b"a")  # served: its relay thread runs
        relays = [t for t in threading.enumerate() if t.name.endswith("(_relay)")]
        assert relays and all(t.daemon for t in relays)  # never keeps Python running
        c.sendall(b"!")
        assert c.recv(10) == b""  # the board stopped: the connection ends
    assert [r.getMessage() for r in caplog.records
            if r.name == "hwtoken.fob.emulator.ports"] == [
        "serial client dropped: the virtual fob stopped"]
    with _connect(port) as c:  # the port is free again at once
        started = time.monotonic()
        c.sendall(b"z")
        assert board.wait_got(b"z")
        assert time.monotonic() - started < BUSY_WAIT * 0.75


def test_tcp_port_close_ends_the_program_and_the_port():
    board = Board()
    port = TcpPort(board)
    c = _connect(port)
    try:
        c.sendall(b"q")
        assert board.wait_got(b"q")
        port.close()
        c.settimeout(10)
        assert c.recv(10) == b""  # the program sees the port go
    finally:
        c.close()
    assert _threads("hwtoken-fob-tcp") == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port.port), timeout=10).close()
    board.say(b"after close: nobody to send to")


def test_tcp_port_close_without_a_program_and_twice():
    port = TcpPort(Board())
    port.close()
    assert _threads("hwtoken-fob-tcp") == []
    port.close()  # closed already: nothing happens


def test_pty_link_must_be_a_new_path_in_a_directory(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nothing")
    for link in (afile, dangling):
        with pytest.raises(InvalidInput) as exc:
            PtyPort.check_link(link)
        assert str(exc.value) == (f"{link} already exists: name a new path for the virtual "
                                  "fob's serial port")
    missing = tmp_path / "no" / "tty"
    with pytest.raises(InvalidInput) as exc:
        PtyPort.check_link(str(missing))
    assert str(exc.value) == (f"cannot create {missing}: the directory {tmp_path / 'no'} "
                              "does not exist")
    PtyPort.check_link(tmp_path / "new")  # fine: nothing raised
    with pytest.raises(InvalidInput):
        PtyPort(Board(), afile)
    assert afile.read_text() == "x"


@contextlib.contextmanager
def _pty(board, link=None):
    port = PtyPort(board, link)
    try:
        yield port
    finally:
        port.close()


def _read_until(fd: int, data: bytes, timeout: float = 10) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while data not in got:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"{data!r} not read in time: {got!r}"
        got += os.read(fd, 4096)
    return got


def test_pty_port_is_the_users_raw_terminal(tmp_path):
    board = Board()
    link = tmp_path / "ttyFOB"
    with _pty(board, link) as port:
        assert port.emulator is board and port.link == link and port.name == str(link)
        assert port.path.startswith("/dev/pts/") and os.readlink(link) == port.path
        st = os.stat(port.path)
        assert stat.S_ISCHR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.getuid()
        assert [t.daemon for t in _threads("hwtoken-fob-pty")] == [True]
        fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, b"a\nb\r\x03\x04c")  # no line editing, no CR/LF mapping, no signals
            assert board.wait_got(b"a\nb\r\x03\x04c")
            board.say(b"x\ny\r\n>>> ")
            # no echo: the first bytes back are the board's, as it sent them
            assert _read_until(fd, b">>> ") == b"x\ny\r\n>>> "
            big = bytes(range(256)) * 40
            os.write(fd, big)
            assert board.wait_got(big)
            assert board.got == b"a\nb\r\x03\x04c" + big
        finally:
            os.close(fd)
    assert not link.exists() and not link.is_symlink()
    assert _threads("hwtoken-fob-pty") == []
    board.say(b"after close: nobody to send to")  # dropped, no error


def test_pty_port_without_a_link():
    board = Board()
    with _pty(board) as port:
        assert port.link is None and port.name == port.path
        assert port.path.startswith("/dev/pts/")
        fd = os.open(port.path, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, b"hello")
            assert board.wait_got(b"hello")
        finally:
            os.close(fd)


def test_pty_output_nobody_reads_is_dropped_not_waited_for():
    board = Board()
    with _pty(board) as port:
        done = threading.Event()

        def flood():
            for _ in range(256):
                board.say(b"x" * 4096)  # 1 MiB: far more than a terminal holds
            done.set()

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        assert done.wait(20), "writing to a port nobody reads blocked"
        fd = os.open(port.path, os.O_RDWR | os.O_NOCTTY)
        try:
            board.say(b"fresh>>> ")
            assert _read_until(fd, b"fresh>>> ").endswith(b"fresh>>> ")
        finally:
            os.close(fd)


def test_pty_port_stops_serving_when_the_board_stops():
    board = Board()
    with _pty(board) as port:
        fd = os.open(port.path, os.O_RDWR | os.O_NOCTTY)
        try:
            [serving] = _threads("hwtoken-fob-pty")
            os.write(fd, b"!")
            serving.join(10)
            assert not serving.is_alive(), "the pty's thread went on after the board"
            os.write(fd, b"lost")
        finally:
            os.close(fd)
    assert board.got == b""


def test_pty_close_leaves_a_link_that_is_no_longer_its_own(tmp_path):
    link = tmp_path / "ttyFOB"
    port = PtyPort(Board(), link)
    link.unlink()
    link.symlink_to("/dev/null")  # someone else's now
    port.close()
    assert os.readlink(link) == "/dev/null"
    link.unlink()
    port = PtyPort(Board(), link)
    link.unlink()  # gone already: close has nothing to remove
    port.close()
    assert not link.is_symlink()


def test_the_real_board_behind_each_port(tmp_path):
    _node()
    with FobEmulator() as emu:
        port = TcpPort(emu)
        try:
            with _connect(port) as c:
                c.sendall(b"\r")
                _recv_until(c, b">>> ")
                c.sendall(b"print(6 * 7)\r")
                assert _recv_until(c, b"\n>>> ") == b"print(6 * 7)\r\n42\n>>> "
        finally:
            port.close()
        with _pty(emu, tmp_path / "tty") as pty:
            fd = os.open(pty.name, os.O_RDWR | os.O_NOCTTY)
            try:
                os.write(fd, b"print(2 ** 10)\r")
                assert _read_until(fd, b"\n>>> ").endswith(b"1024\n>>> ")
            finally:
                os.close(fd)
    with pytest.raises(DeviceError):
        emu.write(b"x")  # stopped
