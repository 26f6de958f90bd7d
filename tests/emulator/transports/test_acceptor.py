"""hwtoken.emulator.transports.acceptor: the accept loop, in process, on 127.0.0.1.

Connections are real TCP connections to a listening socket on loopback; only the accept
errors of a process out of descriptors are played by a stand-in socket.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
import types

import pytest

from hwtoken.emulator.transports import acceptor
from hwtoken.emulator.transports.acceptor import Acceptor, AcceptRetry

LOGGER = "hwtoken.emulator.transports.acceptor"


def _wait_for(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def listening():
    sock = socket.create_server(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


def _client(listening: socket.socket) -> socket.socket:
    return socket.create_connection(listening.getsockname(), timeout=10)


class Echo:
    """A handler that answers each line, and records the thread it ran in."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.ended = threading.Event()

    def __call__(self, conn: socket.socket) -> None:
        self.threads.append(threading.current_thread().name)
        conn.settimeout(10)
        try:
            while data := conn.recv(100):
                conn.sendall(b"echo " + data)
        finally:
            self.ended.set()


def test_each_connection_is_handled_in_a_thread_of_its_own(listening):
    echo = Echo()
    acc = Acceptor(listening, echo, name="test").start()
    try:
        assert acc._thread is not None and acc._thread.name == "test"
        assert acc._thread.daemon
        assert acc.conn_name == "test-conn"
        with _client(listening) as a, _client(listening) as b:
            a.sendall(b"a")
            b.sendall(b"b")
            assert a.recv(100) == b"echo a"
            assert b.recv(100) == b"echo b"
            _wait_for(lambda: acc.accepted == 2)
            assert acc.active == 2
        _wait_for(lambda: acc.active == 0)
        assert echo.threads == ["test-conn", "test-conn"]
        assert acc.accepted == 2 and acc.full == 0 and acc.starved == 0
        assert acc._conns == set()
        assert not acc.stopping
    finally:
        acc.stop()
    assert acc.stopping


def test_the_connections_threads_are_named_as_asked(listening):
    echo = Echo()
    acc = Acceptor(listening, echo, name="test", conn_name="usbip-session").start()
    try:
        with _client(listening) as a:
            a.sendall(b"x")
            assert a.recv(100) == b"echo x"
        assert echo.ended.wait(10)
        assert echo.threads == ["usbip-session"]
    finally:
        acc.stop()


def test_a_connection_not_admitted_is_closed_unanswered(listening):
    echo = Echo()
    seen: list[tuple[str, int]] = []

    def admit(conn: socket.socket) -> bool:
        seen.append((threading.current_thread().name, len(conn.recv(1))))
        return False

    acc = Acceptor(listening, echo, name="test", admit=admit).start()
    try:
        with _client(listening) as a:
            a.sendall(b"x")
            assert a.recv(100) == b""  # closed
        _wait_for(lambda: acc.active == 0)
        assert seen == [("test", 1)]  # decided in the accepting thread
        assert echo.threads == [] and acc.accepted == 0 and acc._conns == set()
    finally:
        acc.stop()


def test_an_admitted_connection_is_handled(listening):
    echo = Echo()
    acc = Acceptor(listening, echo, name="test", admit=lambda conn: True).start()
    try:
        with _client(listening) as a:
            a.sendall(b"y")
            assert a.recv(100) == b"echo y"
        # counted by the accepting thread once the handler's thread started, which may
        # already have answered: wait for the count, not for the answer
        _wait_for(lambda: acc.accepted == 1)
    finally:
        acc.stop()


def test_a_handler_that_fails_is_logged_and_the_loop_goes_on(listening, caplog):
    calls = []

    def handle(conn: socket.socket) -> None:
        calls.append(conn)
        if len(calls) == 1:
            raise RuntimeError("handler broke")
        conn.sendall(b"fine")

    acc = Acceptor(listening, handle, name="test").start()
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            with _client(listening) as a:
                assert a.recv(100) == b""  # the failed one is closed
            with _client(listening) as b:
                assert b.recv(100) == b"fine"
        _wait_for(lambda: acc.active == 0)
        failed = [r for r in caplog.records if r.name == LOGGER]
        assert [(r.levelno, r.getMessage()) for r in failed] == [
            (logging.ERROR, "test: a connection failed; still serving")]
        assert str(failed[0].exc_info[1]) == "handler broke"
        assert calls[0].fileno() == -1  # closed
    finally:
        acc.stop()


def test_logs_go_to_the_logger_given(listening, caplog):
    mine = logging.getLogger("hwtoken.test.acceptor")

    def handle(conn: socket.socket) -> None:
        raise RuntimeError("x")

    acc = Acceptor(listening, handle, name="mine", logger=mine).start()
    try:
        with caplog.at_level(logging.WARNING):
            with _client(listening) as a:
                assert a.recv(100) == b""
            _wait_for(lambda: acc.active == 0)
        assert [(r.name, r.getMessage()) for r in caplog.records] == [
            ("hwtoken.test.acceptor", "mine: a connection failed; still serving")]
    finally:
        acc.stop()


def test_beyond_max_connections_new_ones_wait_their_turn(listening, caplog):
    echo = Echo()
    acc = Acceptor(listening, echo, name="test", max_connections=1).start()
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            a = _client(listening)
            a.sendall(b"1")
            assert a.recv(100) == b"echo 1"
            b = _client(listening)  # the kernel's backlog takes it
            b.sendall(b"2")
            _wait_for(lambda: acc.full == 1)
            b.settimeout(0.3)
            with pytest.raises(TimeoutError):
                b.recv(100)  # not accepted while the first is handled
            assert acc.active == 1 and acc.accepted == 1
            a.close()
            b.settimeout(10)
            assert b.recv(100) == b"echo 2"
            _wait_for(lambda: acc.accepted == 2)
            _wait_for(lambda: acc.full == 2)  # full again with the second
            b.close()
        assert set(acc._warned) == {"full"}
        # the second time within a minute is logged at DEBUG only
        assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER] == [
            (logging.WARNING, "test: 1 connections at once; accepting more when one ends")]
    finally:
        acc.stop()


def test_up_to_max_connections_are_handled_at_once(listening):
    echo = Echo()
    acc = Acceptor(listening, echo, name="test", max_connections=2).start()
    try:
        with _client(listening) as a, _client(listening) as b:
            a.sendall(b"a")
            b.sendall(b"b")
            assert a.recv(100) == b"echo a"
            assert b.recv(100) == b"echo b"
            assert acc.active == 2
            _wait_for(lambda: acc.full == 1)
    finally:
        acc.stop()


def test_stop_ends_the_connections_and_the_loop(listening):
    echo = Echo()
    acc = Acceptor(listening, echo, name="test").start()
    with _client(listening) as a:
        a.sendall(b"x")
        assert a.recv(100) == b"echo x"
        acc.stop()
        assert a.recv(100) == b""  # shut down
    assert echo.ended.wait(10)
    assert acc._thread is not None and not acc._thread.is_alive()
    _wait_for(lambda: acc.active == 0)
    with pytest.raises(OSError):
        _client(listening).close()  # no longer listening


def test_stop_wakes_a_loop_waiting_for_room(listening):
    echo = Echo()
    acc = Acceptor(listening, echo, name="test", max_connections=1).start()
    with _client(listening) as a:
        a.sendall(b"x")
        assert a.recv(100) == b"echo x"
        _wait_for(lambda: acc.full == 1)
        stopper = threading.Thread(target=acc.stop, kwargs={"drain": 5.0}, daemon=True)
        stopper.start()
        assert acc._thread is not None
        acc._thread.join(2)
        assert not acc._thread.is_alive()  # at once, not after the drain
        a.close()  # the handler ends: the drain is over
        stopper.join(10)
        assert not stopper.is_alive()


def test_stop_without_drain_cuts_a_request_in_hand(listening):
    working, release = threading.Event(), threading.Event()
    outcome: list[object] = []

    def handle(conn: socket.socket) -> None:
        working.set()
        release.wait(10)
        try:
            conn.sendall(b"late")
            outcome.append("sent")
        except OSError as exc:
            outcome.append(exc.errno)

    acc = Acceptor(listening, handle, name="test").start()
    with _client(listening) as a:
        assert working.wait(10)
        acc.stop(drain=0.0)
        assert a.recv(100) == b""
        release.set()
        _wait_for(lambda: acc.active == 0)
    assert outcome == [errno.EPIPE]


def _stop_while_a_request_is_in_hand(listening, drain: float) -> Acceptor:  # noqa: ANN001
    """stop(drain=...) while a handler is busy, which then finishes: its answer arrives and
    stop() returns."""
    working, release = threading.Event(), threading.Event()

    def handle(conn: socket.socket) -> None:
        working.set()
        release.wait(10)
        conn.sendall(b"ok")

    acc = Acceptor(listening, handle, name="test").start()
    with _client(listening) as a:
        assert working.wait(10)
        stopper = threading.Thread(target=acc.stop, kwargs={"drain": drain}, daemon=True)
        stopper.start()
        _wait_for(lambda: acc.stopping)
        release.set()
        assert a.recv(100) == b"ok"
        stopper.join(10)
        assert not stopper.is_alive()
    return acc


def test_stop_with_drain_lets_a_request_in_hand_finish(listening):
    assert _stop_while_a_request_is_in_hand(listening, 10.0).active == 0


def test_a_connection_arriving_while_stopping_is_not_handled(listening):
    echo = Echo()
    acc = Acceptor(listening, echo, name="test")
    acc._stopping.set()
    conn, peer = socket.socketpair()
    with peer:
        acc._conns.add(conn)
        acc.active = 1
        acc._run(conn)  # stopping: the handler is not called, the connection is closed
        assert peer.recv(10) == b""
    assert echo.threads == [] and acc.active == 0 and acc._conns == set()


def test_stop_before_start_and_stop_from_the_loops_own_thread(listening, caplog):
    with socket.create_server(("127.0.0.1", 0)) as other:
        Acceptor(other, Echo(), name="never").stop()  # nothing to join

    def admit(conn: socket.socket) -> bool:
        acc.stop()  # (a server shutting down from inside its own loop)
        return False

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        acc = Acceptor(listening, Echo(), name="test", admit=admit).start()
        with _client(listening) as a:
            assert a.recv(100) == b""
        assert acc._thread is not None
        acc._thread.join(10)
        assert not acc._thread.is_alive()
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == []


def test_disconnect_all_ends_the_connections_and_goes_on_accepting(listening):
    echo = Echo()
    acc = Acceptor(listening, echo, name="test").start()
    try:
        assert acc.disconnect_all() == 0
        with _client(listening) as a, _client(listening) as b:
            a.sendall(b"a")
            b.sendall(b"b")
            assert a.recv(100) == b"echo a"
            assert b.recv(100) == b"echo b"
            assert acc.disconnect_all() == 2
            assert a.recv(100) == b"" and b.recv(100) == b""
        _wait_for(lambda: acc.active == 0)
        with _client(listening) as c:
            c.sendall(b"c")
            assert c.recv(100) == b"echo c"
        assert not acc.stopping
    finally:
        acc.stop()


def test_a_connection_no_thread_can_serve_is_closed_and_logged(listening, monkeypatch, caplog):
    class NoThread:
        def __init__(self, **kw: object) -> None:
            self.kw = kw

        def start(self) -> None:
            raise RuntimeError("can't start new thread")

    fake = types.SimpleNamespace(Thread=NoThread, current_thread=threading.current_thread)
    echo = Echo()
    acc = Acceptor(listening, echo, name="test").start()
    try:
        monkeypatch.setattr(acceptor, "threading", fake)
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            with _client(listening) as a:
                assert a.recv(100) == b""
            _wait_for(lambda: acc.active == 0)
        records = [r for r in caplog.records if r.name == LOGGER]
        assert [(r.levelno, r.getMessage()) for r in records] == [
            (logging.ERROR, "test: cannot serve a connection")]
        assert str(records[0].exc_info[1]) == "can't start new thread"
        assert acc.accepted == 0 and acc._conns == set()
        monkeypatch.undo()
        with _client(listening) as b:  # still accepting
            b.sendall(b"b")
            assert b.recv(100) == b"echo b"
    finally:
        monkeypatch.undo()
        acc.stop()


# -- warnings at most once a minute -------------------------------------------------------------

def test_a_warning_of_each_kind_once_a_minute(listening, monkeypatch, caplog):
    now = [1000.0]
    monkeypatch.setattr(acceptor, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    acc = Acceptor(listening, Echo(), name="test")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        acc._warn("full", "full %s", "one")
        now[0] += 59.9
        acc._warn("full", "full %s", "two")
        acc._warn("starved", "starved %d", 1)
        now[0] += 0.1
        acc._warn("full", "full %s", "three")  # a minute after the first
        acc._warn("starved", "starved %d", 2)
        now[0] += 60.0
        acc._warn("starved", "starved %d", 3)
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER] == [
        (logging.WARNING, "full one"),
        (logging.DEBUG, "full two"),
        (logging.WARNING, "starved 1"),
        (logging.WARNING, "full three"),
        (logging.DEBUG, "starved 2"),
        (logging.WARNING, "starved 3"),
    ]
    assert acc.starved == 3  # every "starved" counts, logged or not
    assert acc._warned == {"full": 1060.0, "starved": 1120.0}


# -- AcceptRetry ----------------------------------------------------------------------------------

class Waits(threading.Event):
    """A stop event that records each wait instead of waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


class Scripted:
    """A listening socket whose accept() raises the errors given, then accepts for real
    (without a real socket, one accept too many fails the test at once)."""

    def __init__(self, real: socket.socket | None, errors: list[int],
                 stop: threading.Event | None = None,
                 stop_after: int | None = None) -> None:
        self.real = real
        self.errors = list(errors)
        self.tried = 0
        self.stop = stop
        self.stop_after = stop_after

    def accept(self) -> tuple[socket.socket, object]:
        self.tried += 1
        if self.stop is not None and self.tried == self.stop_after:
            self.stop.set()
        if self.errors:
            code = self.errors.pop(0)
            raise OSError(code, errno.errorcode[code])
        assert self.real is not None, "accept() called again"
        return self.real.accept()


def test_running_out_of_descriptors_backs_off_doubling_and_warns_once(listening):
    stop = Waits()
    warned: list[tuple] = []
    retry = AcceptRetry("test", lambda *a: warned.append(a), stop)
    scripted = Scripted(listening, [errno.EMFILE] * 7 + [errno.ENFILE])
    with _client(listening) as client:
        conn, addr = retry.accept(scripted)
        with conn:
            assert addr == client.getsockname()
    assert scripted.tried == 9
    assert stop.waits == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert warned == [("starved", "%s: cannot accept connections (%s); waiting for some to "
                       "close, then accepting again", "test", "EMFILE")]
    assert retry.backoff == 0.0  # and after a connection, the next shortage warns again
    scripted.errors = [errno.ENOBUFS, errno.ENOMEM]
    with _client(listening):
        conn, _ = retry.accept(scripted)
        conn.close()
    assert stop.waits[8:] == [0.05, 0.1]
    assert [w[3] for w in warned] == ["EMFILE", "ENOBUFS"]


def test_a_connection_that_went_away_is_skipped_without_waiting(listening):
    stop = Waits()
    warned: list[tuple] = []
    retry = AcceptRetry("test", lambda *a: warned.append(a), stop)
    scripted = Scripted(listening, [errno.ECONNABORTED, errno.EPROTO])
    with _client(listening):
        conn, _ = retry.accept(scripted)
        conn.close()
    assert scripted.tried == 3 and stop.waits == [] and warned == [] and retry.backoff == 0.0


@pytest.mark.parametrize("code", [errno.EBADF, errno.EINVAL, errno.ENOTSOCK])
def test_a_closed_or_shut_down_socket_ends_accepting(listening, code):
    retry = AcceptRetry("test", lambda *a: None, Waits())
    scripted = Scripted(None, [code])
    assert retry.accept(scripted) is None
    assert scripted.tried == 1


def test_any_error_once_stopping_ends_accepting(listening):
    stop = Waits()
    retry = AcceptRetry("test", lambda *a: None, stop)
    scripted = Scripted(None, [errno.ECONNABORTED], stop=stop, stop_after=1)
    assert retry.accept(scripted) is None
    assert scripted.tried == 1


def test_stopping_during_a_backoff_ends_accepting(listening):
    stop = Waits()
    retry = AcceptRetry("test", lambda *a: None, stop)
    scripted = Scripted(None, [errno.EMFILE, errno.EMFILE], stop=stop, stop_after=2)
    assert retry.accept(scripted) is None
    assert scripted.tried == 2 and stop.waits == [0.05]


def test_nothing_is_accepted_once_stopping(listening):
    stop = Waits()
    stop.set()
    scripted = Scripted(listening, [])
    assert AcceptRetry("test", lambda *a: None, stop).accept(scripted) is None
    assert scripted.tried == 0


def test_a_real_shut_down_listener_ends_accepting():
    sock = socket.create_server(("127.0.0.1", 0))
    got: list[object] = []
    with sock:
        sock.shutdown(socket.SHUT_RDWR)
        retry = AcceptRetry("test", lambda *a: None, threading.Event())
        t = threading.Thread(target=lambda: got.append(retry.accept(sock)), daemon=True)
        t.start()
        t.join(10)
        assert not t.is_alive() and got == [None]


class _ScriptedListener(Scripted):
    def shutdown(self, how: int) -> None:
        self.real.shutdown(how)


def test_the_loop_waits_out_a_shortage_and_warns_through_its_logger(listening, caplog):
    echo = Echo()
    scripted = _ScriptedListener(listening, [errno.EMFILE, errno.EMFILE])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        acc = Acceptor(scripted, echo, name="short").start()  # type: ignore[arg-type]
        try:
            with _client(listening) as a:
                a.sendall(b"s")
                assert a.recv(100) == b"echo s"
            assert scripted.errors == [] and acc.starved == 1
        finally:
            acc.stop()
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER] == [
        (logging.WARNING, "short: cannot accept connections (EMFILE); waiting for some to "
                          "close, then accepting again")]


def test_handlers_run_in_daemon_threads(listening):
    daemon: list[bool] = []

    def handle(conn: socket.socket) -> None:
        daemon.append(threading.current_thread().daemon)
        conn.sendall(b"d")

    acc = Acceptor(listening, handle, name="test").start()
    try:
        with _client(listening) as a:
            assert a.recv(100) == b"d"
        assert daemon == [True]
    finally:
        acc.stop()


def test_stop_by_default_does_not_wait_for_a_request_in_hand(listening):
    working, release = threading.Event(), threading.Event()

    def handle(conn: socket.socket) -> None:
        working.set()
        release.wait(10)

    acc = Acceptor(listening, handle, name="test").start()
    try:
        with _client(listening) as a:
            assert working.wait(10)
            began = time.monotonic()
            acc.stop()
            assert time.monotonic() - began < 0.9  # no drain: the handler is not waited for
            assert a.recv(100) == b""
    finally:
        release.set()


# -- connections their handler closed, a listener already closed ----------------------------------

class _CloseFails(socket.socket):
    """A connection whose close() fails, as when its descriptor is already gone."""

    def close(self) -> None:
        super().close()
        raise OSError(errno.EBADF, "Bad file descriptor")


def test_close_of_a_connection_that_fails_to_close_is_quiet():
    conn = _CloseFails(socket.AF_INET, socket.SOCK_STREAM)
    acceptor._close(conn)
    assert conn.fileno() == -1


def _handler_that_closes_its_connection_early():
    closed, release = threading.Event(), threading.Event()

    def handle(conn: socket.socket) -> None:
        conn.close()  # the handler owns it: done with the peer, still busy
        closed.set()
        release.wait(10)

    return handle, closed, release


def test_disconnect_all_skips_a_connection_its_handler_closed(listening):
    handle, closed, release = _handler_that_closes_its_connection_early()
    acc = Acceptor(listening, handle, name="test").start()
    try:
        with _client(listening):
            assert closed.wait(10)
            assert acc.disconnect_all() == 1
    finally:
        release.set()
        acc.stop()


def test_stop_skips_a_connection_its_handler_closed(listening):
    handle, closed, release = _handler_that_closes_its_connection_early()
    acc = Acceptor(listening, handle, name="test").start()
    try:
        with _client(listening):
            assert closed.wait(10)
            acc.stop()
            assert acc.stopping
    finally:
        release.set()


def test_stop_of_a_closed_listener_is_quiet():
    sock = socket.create_server(("127.0.0.1", 0))
    acc = Acceptor(sock, Echo(), name="test")
    sock.close()
    acc.stop()  # (shutting down a closed socket fails: nothing to stop)
    assert acc.stopping


def test_stop_gives_up_on_a_loop_that_does_not_end_within_its_timeout(listening):
    inside, release = threading.Event(), threading.Event()

    def admit(conn: socket.socket) -> bool:
        inside.set()
        release.wait(30)
        return False

    acc = Acceptor(listening, Echo(), name="test", admit=admit).start()
    try:
        with _client(listening):
            assert inside.wait(10)
            stopper = threading.Thread(target=acc.stop, kwargs={"timeout": 0.2}, daemon=True)
            stopper.start()
            stopper.join(10)
            assert not stopper.is_alive()
            assert acc._thread is not None and acc._thread.is_alive()  # still in admit
    finally:
        release.set()
    assert acc._thread is not None
    acc._thread.join(10)
    assert not acc._thread.is_alive()


def test_a_drain_of_one_second_is_waited_for(listening):
    _stop_while_a_request_is_in_hand(listening, 1.0)


def test_a_drain_ends_when_its_time_is_up(listening):
    working, release = threading.Event(), threading.Event()

    def handle(conn: socket.socket) -> None:
        working.set()
        release.wait(30)

    acc = Acceptor(listening, handle, name="test").start()
    try:
        with _client(listening) as a:
            assert working.wait(10)
            stopper = threading.Thread(target=acc.stop, kwargs={"drain": 0.3}, daemon=True)
            stopper.start()
            stopper.join(10)
            assert not stopper.is_alive()  # not waiting for the handler any longer
            assert a.recv(100) == b""  # and its connection is shut down
    finally:
        release.set()
