"""The vpcd framing, against a loopback stand-in for pcscd's side of the socket."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwtoken.emulator.iso7816 import YUBIKEY_NFC_ATR
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.transports.vpcd import VpcdLink, parse_hostport
from hwtoken.errors import InvalidInput


@pytest.fixture
def key(tmp_path):
    k = VirtualKey.create(tmp_path / "k.key", serial=99)
    yield k
    k.close()


def _send(conn, payload: bytes) -> None:
    conn.sendall(struct.pack(">H", len(payload)) + payload)


def _recv(conn) -> bytes:
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            assert chunk, "link closed"
            buf += chunk
        return buf

    (n,) = struct.unpack(">H", exact(2))
    return exact(n)


def _listener():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)
    return srv


def test_framing_power_atr_and_apdus(key):
    srv = _listener()
    link = VpcdLink(key, port=srv.getsockname()[1]).start()
    try:
        conn, _ = srv.accept()
        conn.settimeout(10)
        assert link.wait_connected(5)
        _send(conn, b"\x04")
        assert _recv(conn) == YUBIKEY_NFC_ATR
        _send(conn, b"\x01")  # power on: no answer
        _send(conn, bytes.fromhex("00a4040008a000000527471117"))
        assert _recv(conn) == b"5.7.4\x90\x00"
        _send(conn, b"\x02")  # reset: selection gone
        _send(conn, bytes.fromhex("001d000000"))
        assert _recv(conn)[-2:] == b"\x69\x85"
        conn.close()
        # pcscd "restarts": the link comes back by itself
        conn2, _ = srv.accept()
        conn2.settimeout(10)
        _send(conn2, b"\x04")
        assert _recv(conn2) == YUBIKEY_NFC_ATR
        assert link.connections == 2
        conn2.close()
    finally:
        link.stop()
        srv.close()
    assert not link.connected


def test_stop_while_nothing_listens_is_prompt(key):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    link = VpcdLink(key, port=port, max_backoff=0.2).start()
    assert not link.wait_connected(0.3)
    link.stop(timeout=5)
    assert link._thread is None


@given(st.lists(st.binary(max_size=300), max_size=10))
@settings(max_examples=100)
def test_handle_fuzz(tmp_path_factory, messages):
    k = VirtualKey.create(tmp_path_factory.mktemp("v") / "f.key")
    try:
        link = VpcdLink(k)
        for msg in messages:
            out = link.handle(msg)
            if len(msg) > 1:
                assert out is not None and len(out) >= 2
    finally:
        k.close()


@pytest.mark.parametrize("spec, expected", [
    (None, ("127.0.0.1", 35963)), ("", ("127.0.0.1", 35963)),
    ("127.0.0.1:40000", ("127.0.0.1", 40000)), (":40001", ("127.0.0.1", 40001)),
    ("localhost", ("localhost", 35963)), ("[::1]:5", ("::1", 5)),
])
def test_parse_hostport(spec, expected):
    assert parse_hostport(spec) == expected


@pytest.mark.parametrize("spec", ["host:notaport", "host:0", "host:70000"])
def test_parse_hostport_rejects(spec):
    with pytest.raises(InvalidInput):
        parse_hostport(spec)
