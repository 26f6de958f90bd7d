"""A served key answers its owner (and root) only: another local user (uid 65534) gets no
USB/IP reply at all, not even the device list, over TCP loopback or the Unix socket, unless
--allow-user or --allow-remote says so.

The other user's client is a plain Python script run with setpriv; the attack the security
review made (a factory reset of the FIDO applet right after "plugging in") is replayed with
python-fido2 as that user.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import struct
import textwrap

import pytest
from fido2.ctap2 import Ctap2

from hwtoken.emulator.serve import served
from hwtoken.emulator.transports import sockowner
from hwtoken.emulator.transports.access import PeerPolicy, resolve_user
from hwtoken.emulator.transports.usbip_fido import open_usbip_fido
from hwtoken.errors import InvalidInput

CLIENT = textwrap.dedent("""
    import socket, struct, sys
    where, op = sys.argv[1], sys.argv[2]
    if where.startswith("/"):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(where)
    else:
        host, port = where.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=10)
    data = b""
    try:
        if op == "list":  # the server closes after the list
            s.sendall(struct.pack(">HHI", 0x0111, 0x8005, 0))
            want = 1 << 20
        else:  # the server answers, then waits for transfers
            s.sendall(struct.pack(">HHI", 0x0111, 0x8003, 0) + b"1-1".ljust(32, b"\\0"))
            want = 8 + 312
        while len(data) < want:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, BrokenPipeError, TimeoutError) as exc:
        print(type(exc).__name__, file=sys.stderr)
    print(len(data))
""")

RESET = textwrap.dedent("""
    import sys
    from fido2.ctap2 import Ctap2
    from hwtoken.emulator.transports.usbip_fido import open_usbip_fido
    try:
        dev = open_usbip_fido(sys.argv[1], int(sys.argv[2]), "1-1", timeout=10)
    except Exception as exc:
        print("refused:", exc)
        sys.exit(0)
    Ctap2(dev).reset()
    print("reset")
""")


DEVLIST_REPLY = 8 + 4 + 312 + 3 * 4  # header, count, the device, its three interfaces


def _client(other_user, where: str, op: str) -> int:
    res = other_user.python_as_other_user(CLIENT, where, op)
    assert res.returncode == 0, res.stderr
    return int(res.stdout.strip())


def _make_credential(key_server) -> None:
    dev = open_usbip_fido(key_server.host, key_server.port, key_server.busid)
    try:
        Ctap2(dev).make_credential(bytes(32), {"id": "example.com", "name": "Ex"},
                                   {"id": b"alice", "name": "alice"},
                                   [{"type": "public-key", "alg": -7}], options={"rk": True})
    finally:
        dev.close()


def test_another_user_gets_no_reply_not_even_the_device_list(usbip_server, other_user, caplog):
    where = f"{usbip_server.host}:{usbip_server.port}"
    assert _client(other_user, where, "list") == 0
    with caplog.at_level(logging.WARNING, logger="hwtoken.emulator.serve"):
        assert _client(other_user, where, "import") == 0
    assert usbip_server.sessions == 0 and usbip_server.policy.refused == 2
    # the owner (root here) is answered as before
    with socket.create_connection((usbip_server.host, usbip_server.port), timeout=10) as s:
        s.sendall(struct.pack(">HHI", 0x0111, 0x8005, 0))
        assert s.recv(8) == struct.pack(">HHI", 0x0111, 0x0005, 0)


def test_the_factory_reset_of_the_review_is_refused(usbip_key, other_user):
    with served(usbip_key) as srv:
        _make_credential(srv)
        res = other_user.python_as_other_user(RESET, srv.host, str(srv.port))
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("refused: cannot import USB/IP device usbip://"), res.stdout
        assert len(usbip_key.store.section("fido")["resident"]) == 1  # the credential is there


def test_allow_user_lets_that_user_in(usbip_key, other_user):
    with served(usbip_key, allow_users=[65534]) as srv:
        where = f"{srv.host}:{srv.port}"
        assert _client(other_user, where, "list") == DEVLIST_REPLY
        assert _client(other_user, where, "import") == 8 + 312
        assert srv.sessions == 1 and srv.policy.refused == 0


def test_allow_remote_answers_everyone(usbip_key, other_user):
    with served(usbip_key, allow_remote=True) as srv:
        assert _client(other_user, f"{srv.host}:{srv.port}", "list") == DEVLIST_REPLY


def test_the_unix_socket_checks_its_peer_too(usbip_key, other_user, other_users_dir):
    """The socket lives in a private directory; even where another user can reach it, their
    credentials (SO_PEERCRED) are refused."""
    path = other_users_dir / "usbip.sock"
    with served(usbip_key, unix_path=path) as srv:
        assert path.stat().st_mode & 0o777 == 0o600
        path.chmod(0o666)  # as if the directory and socket had been opened up
        assert _client(other_user, str(path), "list") == 0
        assert srv.policy.refused == 1
        dev = open_usbip_fido(str(path), 0, "1-1", timeout=10)  # the owner's own client
        try:
            assert dev.ping(b"mine") == b"mine"
        finally:
            dev.close()
    assert not path.exists()


def test_a_peer_already_gone_is_refused(usbip_key, monkeypatch):
    """Whose a connection is cannot be told once its socket is gone: refused, not guessed."""
    monkeypatch.setattr(sockowner, "peer_uid", lambda conn: None)
    with served(usbip_key) as srv, \
            socket.create_connection((srv.host, srv.port), timeout=10) as s:
        s.sendall(struct.pack(">HHI", 0x0111, 0x8005, 0))
        s.settimeout(10)
        try:
            reply = s.recv(8)
        except ConnectionResetError:
            reply = b""
        assert reply == b""
        assert srv.policy.refused == 1


def test_unreadable_socket_tables_refuse(monkeypatch):
    def unreadable(conn):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(sockowner, "peer_uid", unreadable)
    policy = PeerPolicy()
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as _client_side:
        conn, _ = server.accept()
        with conn:
            verdict = policy.judge(conn)
    assert not verdict.allowed
    assert verdict.reason == "its user cannot be told (/proc/net/tcp: Permission denied)"


def test_root_and_the_owner_are_always_answered():
    policy = PeerPolicy(owner=1000, allow_users=[1001])
    assert policy.allowed == {0, 1000, 1001}


def test_resolve_user():
    assert resolve_user("65534") == 65534
    assert resolve_user("root") == 0
    for bad in ("no-such-user-here", "-1", "4294967295", "1e3", "\udcff"):
        with pytest.raises(InvalidInput):
            resolve_user(bad)


# -- /proc/net/tcp parsing --------------------------------------------------------------------
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0CA8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1
   1: 0100007F:9C40 0100007F:0CA8 01 00000000:00000000 00:00000000 00000000 65534        0 2222 1
   2: 0100007F:9C41 0100007F:0CA8 06 00000000:00000000 03:00000F3D 00000000     0        0 0 3
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:8B1B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 3333 1
   1: 0000000000000000FFFF00000100007F:9C42 0000000000000000FFFF00000100007F:0CA8 01 00000000:00000000 00:00000000 00000000  1001        0 4444 1
   2: 00000000000000000000000001000000:9C43 00000000000000000000000001000000:0CA8 01 00000000:00000000 00:00000000 00000000  1002        0 5555 1
"""  # noqa: E501


def test_the_tables_are_read_as_the_kernel_writes_them(monkeypatch):
    import ipaddress
    import sys

    if sys.byteorder != "little":  # pragma: no cover
        pytest.fail("these lines are as a little-endian kernel writes them")
    rows = sockowner.parse(TCP.splitlines()) + sockowner.parse(TCP6.splitlines())
    loop = ipaddress.ip_address("127.0.0.1")
    assert rows[0] == sockowner.TcpSocket((loop, 3240), (ipaddress.ip_address("0.0.0.0"), 0),
                                          0x0A, 0, 1111)
    assert (rows[1].local, rows[1].remote, rows[1].uid) == ((loop, 40000), (loop, 3240), 65534)
    assert rows[4].local == (loop, 40002) and rows[4].uid == 1001  # v4-mapped: as IPv4
    assert rows[5].local == (ipaddress.ip_address("::1"), 40003)
    monkeypatch.setattr(sockowner, "tcp_sockets", lambda: rows)
    assert sockowner.listener_uids("127.0.0.1", 3240) == [0]
    assert sockowner.listener_uids("127.0.0.1", 0x8B1B) == [1000]  # the IPv6 wildcard
    assert sockowner.listener_uids("::1", 0x8B1B) == [1000]
    assert sockowner.listener_uids("127.0.0.1", 9) == []


def test_peer_uid_skips_sockets_no_process_holds(monkeypatch):
    """A TIME_WAIT line says uid 0 (root!) with inode 0: it must never count."""
    rows = sockowner.parse(TCP.splitlines())
    monkeypatch.setattr(sockowner, "tcp_sockets", lambda: rows)

    class Conn:
        def __init__(self, port: int) -> None:
            self.port = port

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", 3240)

        def getpeername(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    assert sockowner.peer_uid(Conn(40000)) == 65534
    assert sockowner.peer_uid(Conn(40001)) is None  # the TIME_WAIT one


def test_peer_uid_of_a_real_connection():
    import os

    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as client:
        conn, _ = server.accept()
        with conn:
            assert sockowner.peer_uid(conn) == os.geteuid()
            assert sockowner.peer_uid(client) == os.geteuid()


def test_a_killed_serves_runtime_directory_is_swept_by_the_next(tmp_path, monkeypatch):
    import subprocess
    import sys

    from hwtoken.emulator.serve import make_runtime_dir

    base = tmp_path / "run"
    base.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for name, pid in (("hwtoken-serve-dead", gone), ("hwtoken-serve-live", str(os.getpid()))):
        (base / name).mkdir()
        (base / name / "owner.pid").write_text(pid + "\n")
    (base / "hwtoken-serve-unknown").mkdir()  # no owner.pid: not ours to judge
    made = make_runtime_dir()
    assert made.parent == base and stat.S_IMODE(made.stat().st_mode) == 0o700
    assert (made / "owner.pid").read_text() == f"{os.getpid()}\n"
    assert sorted(p.name for p in base.iterdir()) == sorted(
        [made.name, "hwtoken-serve-live", "hwtoken-serve-unknown"])
