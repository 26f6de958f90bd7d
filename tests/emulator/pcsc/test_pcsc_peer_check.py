"""`serve --pcsc` gives the card only to a pcscd of root or of the serving user.

The review started a listener on the vpcd port as another user (uid 65534) and read the
owner's TOTP codes through it. Here such a listener, started with setpriv, must never see a
connection while the link says once why it waits; a listener of the serving user's gets
the card.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.transports import sockowner
from hwtoken.emulator.transports.vpcd import VpcdLink

HWTOKEN = str(Path(sys.executable).with_name("hwtoken"))

# listens on a free loopback port as whoever runs it, prints the port, then on each line
# of stdin prints how many connections it has been offered so far (without blocking)
LISTENER = textwrap.dedent("""
    import socket, sys
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    print(srv.getsockname()[1], flush=True)
    offered = 0
    for _ in sys.stdin:
        while True:
            try:
                conn, _ = srv.accept()
            except BlockingIOError:
                break
            offered += 1
            conn.close()
        print(offered, flush=True)
""")


@pytest.fixture
def key(tmp_path):
    k = VirtualKey.create(tmp_path / "k.key", serial=99)
    yield k
    k.close()


@pytest.fixture
def impostor(other_user):
    """A vpcd port listened on by the other user: (port, ask) where ask() -> connections."""
    proc = other_user.start_as_other_user([other_user.other_user_python(), "-c", LISTENER])
    port = int(proc.stdout.readline())

    def offered() -> int:
        proc.stdin.write("?\n")
        proc.stdin.flush()
        return int(proc.stdout.readline())

    try:
        yield port, offered
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def _wait(predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_the_listener_belongs_to_the_other_user():
    """(What the check reads: the listening socket's uid in /proc/net/tcp.)"""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        assert sockowner.listener_uids("127.0.0.1", srv.getsockname()[1]) == [os.geteuid()]
        assert sockowner.listener_uids("localhost", srv.getsockname()[1]) == [os.geteuid()]


def test_a_pcscd_port_held_by_another_user_never_gets_the_card(key, impostor, caplog):
    port, offered = impostor
    link = VpcdLink(key, port=port, max_backoff=0.1).start()
    try:
        _wait(lambda: link.refusals >= 3)  # it looked three times, and waits on
        assert offered() == 0
        assert not link.connected
        assert link.refused == (
            f"not inserting the card at 127.0.0.1:{port}: the socket listening there belongs "
            f"to uid 65534, not to root (the system's pcscd) or you (uid {os.geteuid()}); "
            "waiting for a pcscd that does")
    finally:
        link.stop()
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == \
        [link.refused]  # said once, however often it looked
    assert offered() == 0


def test_a_pcscd_port_of_the_serving_user_gets_the_card(key):
    with socket.create_server(("127.0.0.1", 0)) as srv:
        srv.settimeout(10)
        link = VpcdLink(key, port=srv.getsockname()[1]).start()
        try:
            conn, _ = srv.accept()
            conn.close()
            assert link.refused is None and link.refusals == 0
        finally:
            link.stop()


def test_the_listener_is_checked_again_once_connected(key, monkeypatch):
    """A listener swapped in between the check and the connect is caught before any byte."""
    calls = []
    real = sockowner.listener_uids

    def swapped(host: str, port: int) -> list[int]:
        calls.append(port)
        return real(host, port) if len(calls) == 1 else [4242]

    monkeypatch.setattr(sockowner, "listener_uids", swapped)
    with socket.create_server(("127.0.0.1", 0)) as srv:
        srv.settimeout(10)
        link = VpcdLink(key, port=srv.getsockname()[1], max_backoff=0.1).start()
        try:
            conn, _ = srv.accept()
            conn.settimeout(10)
            conn.sendall(b"\x00\x01\x04")  # "send your ATR"
            try:
                answer = conn.recv(10)
            except ConnectionResetError:  # (closed with our request unread)
                answer = b""
            assert answer == b""  # closed, nothing answered
            _wait(lambda: link.refused is not None)
            assert "belongs to uid 4242" in link.refused
        finally:
            link.stop()


def test_serve_says_once_why_the_card_is_withheld(impostor, tmp_path):
    port, offered = impostor
    env = {**os.environ, "HWTOKEN_STATE_DIR": str(tmp_path / "state")}
    subprocess.run([HWTOKEN, "emulate", "create", "k"], env=env, check=True, timeout=60,
                   capture_output=True)
    proc = subprocess.Popen([HWTOKEN, "emulate", "serve", "k", "--no-usbip", "--pcsc-address",
                             f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert line == (f"warning: not inserting the card at 127.0.0.1:{port}: the socket "
                        "listening there belongs to uid 65534, not to root (the system's "
                        f"pcscd) or you (uid {os.geteuid()}); waiting for a pcscd that does\n")
        assert offered() == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert err == "" and "stopped serving k" in out  # nothing more was said


def test_serve_does_not_also_report_a_missing_pcscd(monkeypatch, capsys):
    """While the link withholds the card, `serve` adds no "nothing answers" warning."""
    import threading
    from types import SimpleNamespace

    from hwtoken.cli import emulate

    monkeypatch.setattr(emulate, "PCSC_WARN_AFTER", 0.0)
    stop = threading.Event()
    looks = []

    class Link:
        host, port, connected = "127.0.0.1", 35963, False

        @property
        def refused(self) -> str:
            looks.append(1)
            if len(looks) >= 5:
                stop.set()
            return "not inserting the card: ..."

    emulate._watch(SimpleNamespace(vpcd=Link()), stop)
    assert len(looks) >= 5 and capsys.readouterr().err == ""
