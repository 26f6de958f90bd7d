"""The USB/IP server survives clients that vanish mid-transfer, garbage and contention."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from usbip import USBIP
from usbip import host as usbip_host

from hwtoken.emulator.serve import UsbipServer, is_loopback, parse_endpoint
from hwtoken.emulator.store import KeyStore
from hwtoken.emulator.transports.usbip_fido import open_usbip_fido
from hwtoken.errors import DeviceError, InvalidInput

OP_REQ_IMPORT = struct.pack(">HHI", 0x0111, 0x8003, 0)


def _still_serves(srv, rounds: int = 1) -> None:
    """A fresh client can import the key and run CTAPHID through it."""
    for _ in range(rounds):
        dev = open_usbip_fido(srv.host, srv.port, srv.busid, timeout=10)
        try:
            assert dev.ping(b"still here") == b"still here"
        finally:
            dev.close()


def _raw_import(srv) -> socket.socket:
    s = socket.create_connection((srv.host, srv.port), timeout=5)
    s.sendall(OP_REQ_IMPORT + srv.busid.encode().ljust(32, b"\0"))
    reply = b""
    while len(reply) < 8 + 312:
        chunk = s.recv(8 + 312 - len(reply))
        assert chunk, "server closed during import"
        reply += chunk
    assert struct.unpack(">HHI", reply[:8])[2] == 0
    return s


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _queued_fido_reports(srv) -> int:
    """IN reports waiting on the FIDO endpoint of the server's one USB session."""
    with srv.usb._sessions_cond:
        sessions = list(srv.usb._sessions)
    if len(sessions) != 1:
        return 0
    endpoint = sessions[0].fido_iface.in_ep
    with endpoint._cv:
        return len(endpoint._q)


def test_many_clients_in_sequence(usbip_server):
    _still_serves(usbip_server, rounds=15)
    assert usbip_server.sessions == 15


def test_client_closing_half_way_through_an_urb(usbip_server):
    s = _raw_import(usbip_server)
    # CMD_SUBMIT, OUT to the FIDO endpoint, 64 bytes announced, 10 sent, then gone
    header = struct.pack(">IIIII", 1, 1, 0x00010002, 0, 4)
    header += struct.pack(">Iiiii", 0, 64, 0, 0, 1) + bytes(8)
    s.sendall(header + bytes(10))
    s.close()
    _still_serves(usbip_server)


def test_client_vanishing_while_a_response_is_pending(usbip_server):
    s = _raw_import(usbip_server)
    # a CTAPHID INIT on the broadcast channel, then leave before reading the answer
    report = struct.pack(">IB", 0xFFFFFFFF, 0x86) + struct.pack(">H", 8) + b"12345678"
    report = report.ljust(64, b"\0")
    header = struct.pack(">IIIII", 1, 1, 0x00010002, 0, 4)
    header += struct.pack(">Iiiii", 0, 64, 0, 0, 1) + bytes(8)
    s.sendall(header + report)
    # the answer is queued on the session's FIDO IN endpoint (no host asks for it)
    assert _wait_for(lambda: _queued_fido_reports(usbip_server) == 1)
    s.close()
    _still_serves(usbip_server, rounds=2)


def test_garbage_instead_of_a_request(usbip_server):
    for junk in (b"\xff" * 100, b"GET / HTTP/1.1\r\n\r\n", b"\x01\x11\x80\x03", b""):
        with socket.create_connection((usbip_server.host, usbip_server.port), timeout=5) as s:
            s.settimeout(5)
            try:
                if junk:
                    s.sendall(junk)
                s.shutdown(socket.SHUT_WR)
                answer = s.recv(1024)
            except OSError:  # the server already hung up (reset, not connected)
                answer = b""
            assert answer == b""  # no reply to junk: the server just hangs up
    _still_serves(usbip_server)


def test_garbage_urbs_after_import(usbip_server):
    s = _raw_import(usbip_server)
    s.settimeout(5)
    # control URB with a nonsense setup packet, an URB to a missing endpoint, an unknown
    # command and a bogus direction: each gets an error status or is ignored
    urbs = [
        struct.pack(">IIIII", 1, 1, 0, 1, 0) + struct.pack(">Iiiii", 0, 8, 0, 0, 0)
        + bytes([0xC3, 0x77, 0, 0, 0, 0, 8, 0]),
        struct.pack(">IIIII", 1, 2, 0, 1, 9) + struct.pack(">Iiiii", 0, 64, 0, 0, 0) + bytes(8),
        struct.pack(">IIIII", 7, 3, 0, 1, 1) + struct.pack(">Iiiii", 0, 0, 0, 0, 0) + bytes(8),
        struct.pack(">IIIII", 1, 4, 0, 5, 1) + struct.pack(">Iiiii", 0, 8, 0, 0, 0) + bytes(8),
    ]
    for urb in urbs:
        s.sendall(urb)
    replies = s.recv(4096)
    assert replies  # answered, not hung
    s.close()
    _still_serves(usbip_server)


@settings(max_examples=30,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(min_size=1, max_size=200), after_import=st.booleans())
def test_fuzzed_bytes_never_stop_the_server(usbip_server, junk, after_import):
    s = _raw_import(usbip_server) if after_import else socket.create_connection(
        (usbip_server.host, usbip_server.port), timeout=5)
    try:
        s.sendall(junk)
    finally:
        s.close()
    assert _wait_for(lambda: usbip_server.usb.session_count == 0)  # every session ended
    devices = usbip_host.list_devices(USBIP(usbip_server.host, usbip_server.port))
    assert [d["idVendor"] for d in devices] == [0x1050]
    assert usbip_server.errors == 0  # junk ends the connection cleanly, nothing crashed


def test_subprocess_killed_mid_transfer(usbip_server, usbip_key, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from fido2.ctap2 import Ctap2
        from hwtoken.emulator.transports.usbip_fido import open_usbip_fido
        dev = open_usbip_fido({usbip_server.host!r}, {usbip_server.port}, {usbip_server.busid!r})
        ctap2 = Ctap2(dev)
        print("ready", flush=True)
        n = 0
        while True:
            dev.ping(bytes(7000))
            ctap2.make_credential(
                bytes(32), {{"id": "example.com", "name": "Example"}},
                {{"id": bytes([n % 256]), "name": "u"}}, [{{"type": "public-key", "alg": -7}}],
                options={{"rk": True}})
            n += 1
            print(n, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        # well inside the loop of transfers: two rounds done, the third under way
        assert [proc.stdout.readline().strip() for _ in range(2)] == ["1", "2"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    _still_serves(usbip_server, rounds=2)
    # the state file is whole JSON and the key's records are intact
    usbip_key.store.commit()
    store = KeyStore.read(usbip_key.path)
    assert store.data["identity"]["serial"] == usbip_key.serial
    assert len(store.data["fido"]["resident"]) >= 1  # it really was mid-way through work


def test_several_clients_attached_at_once(usbip_server, usbip_key):
    """Like several processes opening one hidraw node: each has its own CTAPHID channel."""
    import yubico
    from fido2.ctap2 import Ctap2

    from hwtoken.emulator.transports.pyusb_backend import UsbipBackend, use_backend

    first = open_usbip_fido(usbip_server.host, usbip_server.port, usbip_server.busid)
    second = open_usbip_fido(usbip_server.host, usbip_server.port, usbip_server.busid)
    try:
        assert usbip_server.usb.session_count == 2
        rp, params = {"id": "example.com", "name": "Ex"}, [{"type": "public-key", "alg": -7}]
        for i in range(3):
            assert first.ping(b"one%d" % i) == b"one%d" % i
            Ctap2(second).make_credential(bytes(32), rp, {"id": bytes([i]), "name": "u"},
                                          params, options={"rk": True})
        with UsbipBackend(usbip_server.host, usbip_server.port) as b, use_backend(b):
            assert yubico.find_yubikey().version() == "5.7.4"  # a third host, pyusb
        assert first.ping(b"still") == b"still"
        # listing works while hosts are attached, like usbipd
        assert usbip_host.list_devices(USBIP(usbip_server.host, usbip_server.port))
    finally:
        first.close()
        second.close()
    assert _wait_for(lambda: usbip_server.usb.session_count == 0)
    assert len(usbip_key.store.section("fido")["resident"]) == 3
    _still_serves(usbip_server)


def test_stopping_the_server_ends_an_attached_client(usbip_key):
    srv = UsbipServer(usbip_key, "127.0.0.1", 0).start()
    dev = open_usbip_fido(srv.host, srv.port, srv.busid, timeout=10)
    srv.stop()
    with pytest.raises(OSError):
        dev.ping(b"gone")
    dev.close()


def test_remote_bind_needs_allow_remote(usbip_key):
    with pytest.raises(InvalidInput, match="--allow-remote"):
        UsbipServer(usbip_key, "0.0.0.0", 0)
    with pytest.raises(InvalidInput):
        UsbipServer(usbip_key, "192.0.2.1", 0)


def test_port_in_use_is_a_clear_error(usbip_server, usbip_key):
    from hwtoken.emulator.serve import YubiKeyUsb

    other = UsbipServer(usbip_key, "127.0.0.1", usbip_server.port,
                        usb=YubiKeyUsb(usbip_key, with_otp_engine=False))
    with pytest.raises(DeviceError, match="in use"):
        other.start()


@pytest.mark.parametrize(("value", "expected"), [
    (None, ("127.0.0.1", 3240)),
    ("4000", ("127.0.0.1", 4000)),
    ("0", ("127.0.0.1", 0)),
    ("10.0.0.1:3241", ("10.0.0.1", 3241)),
    ("localhost:", ("localhost", 3240)),
    ("[::1]:5000", ("::1", 5000)),
])
def test_parse_endpoint(value, expected):
    assert parse_endpoint(value) == expected


@pytest.mark.parametrize("value", ["abc", "host:port", "70000", "1:-1"])
def test_parse_endpoint_rejects(value):
    with pytest.raises(InvalidInput):
        parse_endpoint(value)


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    assert not is_loopback("example.com")


def test_allow_remote_warns(usbip_key, monkeypatch, caplog):
    """The warning path, exercised on loopback (tests never bind other addresses)."""
    import logging

    from hwtoken.emulator import serve

    monkeypatch.setattr(serve, "is_loopback", lambda host: False)
    with pytest.raises(InvalidInput):
        UsbipServer(usbip_key, "127.0.0.1", 0)
    with caplog.at_level(logging.WARNING, logger="hwtoken.emulator.serve"):
        srv = UsbipServer(usbip_key, "127.0.0.1", 0, allow_remote=True).start()
        srv.stop()
    assert "anyone who can reach this address can use the key" in caplog.text


def test_usbip_requests_save_state_under_the_key_lock(usbip_server, usbip_key):
    """CTAPHID and OTP feature-report requests hold ``key.lock`` (shared with PC/SC)."""
    import threading

    import yubico
    from fido2.ctap2 import Ctap2

    from hwtoken.emulator.transports.pyusb_backend import UsbipBackend, use_backend

    saves: list[bool] = []
    real_commit = usbip_key.store.commit

    def commit() -> None:
        saves.append(usbip_key.lock._is_owned())
        real_commit()

    usbip_key.store.commit = commit
    cycles: list[bool] = []
    real_power_cycle = usbip_key.power_cycle

    def power_cycle() -> None:
        cycles.append(usbip_key.lock._is_owned())
        real_power_cycle()

    usbip_key.power_cycle = power_cycle
    try:
        dev = open_usbip_fido(usbip_server.host, usbip_server.port, usbip_server.busid)
        assert cycles == [True]  # plugging in (the first import) drops volatile state
        try:
            Ctap2(dev).make_credential(
                bytes(32), {"id": "example.com", "name": "Ex"}, {"id": b"u", "name": "u"},
                [{"type": "public-key", "alg": -7}], options={"rk": True})
        finally:
            dev.close()
        fido_saves = len(saves)
        assert fido_saves >= 1
        with UsbipBackend(usbip_server.host, usbip_server.port) as b, use_backend(b):
            yk = yubico.find_yubikey()
            cfg = yk.init_config()
            cfg.mode_challenge_response(b"h:" + bytes(range(20)).hex().encode())
            yk.write_config(cfg, slot=2)
            del yk
        assert len(saves) > fido_saves
        assert all(saves), saves
        # the lock is really contended for: held elsewhere, a request waits for it
        held = threading.Event()
        release = threading.Event()

        def hold() -> None:
            with usbip_key.lock:
                held.set()
                release.wait(10)

        dev = open_usbip_fido(usbip_server.host, usbip_server.port, usbip_server.busid)
        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(5)
        try:
            result: list[bytes] = []
            caller = threading.Thread(target=lambda: result.append(
                bytes(Ctap2(dev).get_info().aaguid)))
            caller.start()
            caller.join(0.3)
            assert caller.is_alive() and not result  # waiting for the other transport
            release.set()
            caller.join(10)
            assert result == [usbip_key.aaguid]
        finally:
            release.set()
            holder.join(10)
            dev.close()
    finally:
        del usbip_key.store.commit
        del usbip_key.power_cycle


def test_connections_and_junk_are_logged(usbip_server, caplog):
    """What `serve -v` shows: lists, imports, detaches and junk connections."""
    import logging

    with caplog.at_level(logging.INFO, logger="hwtoken.emulator.serve"):
        usbip_host.list_devices(USBIP(usbip_server.host, usbip_server.port))
        _still_serves(usbip_server)
        # (held open until then: a peer already gone cannot be told from another user's)
        with socket.create_connection((usbip_server.host, usbip_server.port), timeout=5) as s:
            s.sendall(b"\xff" * 16)
            assert _wait_for(lambda: "sent no valid request" in caplog.text)
        assert _wait_for(lambda: "detached" in caplog.text)
    assert "lists the exported devices" in caplog.text
    assert "imports busid 1-1" in caplog.text


def test_connection_accepted_while_stopping_is_closed_at_once(usbip_key):
    """A connection whose thread starts after stop() began gets no session."""
    srv = UsbipServer(usbip_key, "127.0.0.1", 0).start()
    srv.stop()
    ours, client = socket.socketpair()
    try:
        client.sendall(OP_REQ_IMPORT + b"1-1".ljust(32, b"\0"))  # a valid import...
        srv._serve_one(ours, "late client")  # ...arriving late: returns without serving
        client.settimeout(5)
        try:
            reply = client.recv(1)
        except ConnectionResetError:  # closed with the request unread
            reply = b""
        assert reply == b""  # closed, no import reply
        assert srv.usb.session_count == 0 and srv.sessions == 0
    finally:
        client.close()
