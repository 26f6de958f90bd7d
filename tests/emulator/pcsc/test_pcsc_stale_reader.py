"""A card process SIGKILLed in the middle of a ykman session must not leave the reader dead.

pcscd cleans up after the dead client (a reset that fails on the dead card), and if the next
card is already waiting in the vpcd driver's accept queue, pcscd's presence poll never sees
the reader empty: without the link's re-insertion it reports "no card" to every client
while the new card sits connected (seen for minutes).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest
from ykman.pcsc import list_devices
from yubikit.core.smartcard import SmartCardConnection
from yubikit.support import read_info

from hwtoken.emulator.pcscd import READER_0, wait_for_card
from hwtoken.emulator.transports.vpcd import VpcdLink

pytestmark = pytest.mark.system

# The old card: its own key, linked to pcscd, and a ykman (exclusive) session kept busy on it.
CHILD = """
import sys
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.pcscd import READER_0, wait_for_card
from hwtoken.emulator.transports.vpcd import VpcdLink
from ykman.pcsc import list_devices
from yubikit.core.smartcard import SmartCardConnection
from yubikit.oath import OathSession

key = VirtualKey.create(sys.argv[2], serial=1111)
link = VpcdLink(key, port=int(sys.argv[1])).start()
assert link.wait_connected(10)
wait_for_card(READER_0, timeout=10)
(dev,) = list_devices(READER_0)
session = OathSession(dev.open_connection(SmartCardConnection))
print("ready", flush=True)
while True:
    session.list_credentials()
"""


def _readline(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else b""


def test_next_card_is_seen_after_a_card_process_is_killed(pcscd, vkey, tmp_path):
    """End to end. Whether pcscd polls the reader while it is empty is a race: in a
    standalone script about 4 runs in 5 got stuck without the repair, under pytest it
    rarely shows, so the mechanism itself is pinned by the loopback tests below."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(pcscd.port),
                              str(tmp_path / "old.key")], env=pcscd.client_env(),
                             stdout=subprocess.PIPE)
    link = None
    try:
        assert _readline(child, 30) == b"ready", pcscd.log_tail()
        # The new card connects while the old one is still in the reader: it waits in the
        # driver's accept queue, the situation that made the reader look empty for good.
        link = VpcdLink(vkey, port=pcscd.port).start()
        assert link.wait_connected(5)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        wait_for_card(READER_0, timeout=10)
        (dev,) = list_devices(READER_0)
        with dev.open_connection(SmartCardConnection) as conn:
            assert read_info(conn).serial == vkey.serial
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        if link is not None:
            link.stop()


def test_a_powered_card_is_never_reinserted(pcscd, linked):
    """The repair is only for a card pcscd never powered: a normal insertion keeps its
    one connection."""
    (dev,) = list_devices(READER_0)
    with dev.open_connection(SmartCardConnection) as conn:
        read_info(conn)
    assert linked.wait_connected(1)
    assert linked.reinsertions == 0 and linked.connections == 1


# -- the mechanism, against a loopback stand-in for pcscd's vpcd driver ------------------------
def _send(conn: socket.socket, payload: bytes) -> None:
    conn.sendall(struct.pack(">H", len(payload)) + payload)


def _recv(conn: socket.socket) -> bytes:
    buf = b""
    while len(buf) < 2 or len(buf) < 2 + struct.unpack(">H", buf[:2])[0]:
        chunk = conn.recv(4096)
        if not chunk:
            raise EOFError
        buf += chunk
    return buf[2:]


def _poll_until_closed(conn: socket.socket, polls: int) -> int:
    """Presence polls (ATR requests, every 50 ms like a fast pcscd) until the card hangs
    up; how many it answered."""
    for n in range(polls):
        time.sleep(0.05)
        _send(conn, b"\x04")
        try:
            _recv(conn)
        except (EOFError, ConnectionResetError):
            return n
    return polls


@pytest.fixture
def driver():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)
    yield srv
    srv.close()


def test_polled_but_never_powered_card_reinserts_once(driver, vkey):
    link = VpcdLink(vkey, port=driver.getsockname()[1], stale_after=0.3).start()
    try:
        first, _ = driver.accept()
        first.settimeout(10)
        # poll like pcscd (it never powers the card: its reader state is stale)
        answered = _poll_until_closed(first, 200)
        assert answered < 200, "the link never dropped the stale connection"
        second, _ = driver.accept()  # and it comes back by itself
        second.settimeout(10)
        assert _poll_until_closed(second, 20) == 20  # only once: no reinsertion loop
        assert link.reinsertions == 1 and link.connections == 2
        first.close()
        second.close()
    finally:
        link.stop()


def test_powered_card_keeps_its_connection(driver, vkey):
    link = VpcdLink(vkey, port=driver.getsockname()[1], stale_after=0.3).start()
    try:
        conn, _ = driver.accept()
        conn.settimeout(10)
        _send(conn, b"\x04")
        _recv(conn)
        _send(conn, b"\x01")  # pcscd saw the insertion and powers the card up
        assert _poll_until_closed(conn, 20) == 20  # 1 s > stale_after
        assert link.reinsertions == 0 and link.connections == 1
        conn.close()
    finally:
        link.stop()
