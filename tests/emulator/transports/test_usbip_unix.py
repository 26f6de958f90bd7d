"""hwtoken.emulator.transports.usbip_unix: naming a serve by its Unix socket path."""

from __future__ import annotations

import os
import socket

import pytest
from usbip import USBIP

from hwtoken.emulator.transports.usbip_unix import (
    UnixSocketTransport,
    describe,
    is_socket_path,
    no_delay,
    transport_for,
)


def test_only_an_absolute_path_is_a_socket():
    assert is_socket_path("/run/user/1000/hwtoken/key/usbip.sock") is True
    assert is_socket_path("127.0.0.1") is False
    assert is_socket_path("localhost") is False
    assert is_socket_path("::1") is False
    assert is_socket_path("run/usbip.sock") is False  # relative: taken as a host name


def test_transport_for_a_path_is_the_unix_socket(tmp_path):
    path = str(tmp_path / "usbip.sock")
    transport = transport_for(path, 0)
    assert type(transport) is UnixSocketTransport
    assert transport.path == path


def test_transport_for_a_host_is_tcp():
    transport = transport_for("127.0.0.1", 3241)
    assert type(transport) is USBIP
    assert (transport.host, transport.port) == ("127.0.0.1", 3241)


def test_the_unix_transport_connects_to_the_socket(tmp_path):
    path = str(tmp_path / "usbip.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        server.settimeout(5)
        client = UnixSocketTransport(path).connect()
        with client:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(5)
                assert client.family == socket.AF_UNIX
                assert client.type == socket.SOCK_STREAM
                assert client.getpeername() == path
                client.sendall(b"\x01\x11")
                assert conn.recv(2) == b"\x01\x11"


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_failed_connect_raises_and_leaves_no_socket_open(tmp_path):
    path = str(tmp_path / "nobody-listens.sock")
    transport = UnixSocketTransport(path)
    before = _open_fds()
    with pytest.raises(FileNotFoundError) as err:
        transport.connect()
    assert err.value.errno == 2
    assert _open_fds() == before


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_no_delay_switches_nagle_off_on_tcp(family):
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        no_delay(sock)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_no_delay_leaves_a_unix_socket_alone():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        no_delay(a)  # TCP_NODELAY on a Unix socket would raise EOPNOTSUPP
        a.sendall(b"x")
        b.settimeout(5)
        assert b.recv(1) == b"x"


def test_describe():
    assert describe("127.0.0.1", 3240, "1-1") == "usbip://127.0.0.1:3240/1-1"
    assert describe("localhost", 3241, "1-2") == "usbip://localhost:3241/1-2"
    assert describe("::1", 3240, "1-1") == "usbip://[::1]:3240/1-1"
    assert (
        describe("/run/user/1000/hwtoken/k/usbip.sock", 0, "1-1")
        == "usbip+unix:///run/user/1000/hwtoken/k/usbip.sock/1-1"
    )
