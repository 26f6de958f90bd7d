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
    assert verdict.allowed is False and verdict.uid is None
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


# -- access: resolve_user and PeerPolicy, in process ------------------------------------------
def test_resolve_user_says_exactly_what_is_wrong():
    assert resolve_user(" 65534\n") == 65534
    assert resolve_user("4294967294") == 4294967294  # the largest uid there is
    with pytest.raises(InvalidInput) as exc:
        resolve_user("4294967295")
    assert str(exc.value) == "--allow-user 4294967295: a uid is below 4294967295"
    with pytest.raises(InvalidInput) as exc:
        resolve_user(" no-such-user-here ")
    assert str(exc.value) == ("--allow-user 'no-such-user-here': no such user (give a uid or "
                              "a user name)")
    with pytest.raises(InvalidInput) as exc:
        resolve_user("\u0661\u0662")  # Arabic-Indic "12": digits, but not a uid
    assert str(exc.value) == ("--allow-user '\u0661\u0662': no such user (give a uid or a "
                              "user name)")
    with pytest.raises(InvalidInput) as exc:
        resolve_user("a\x00b")  # getpwnam: ValueError (embedded null)
    assert str(exc.value) == ("--allow-user 'a\\x00b': no such user (give a uid or a user "
                              "name)")
    with pytest.raises(InvalidInput) as exc:
        resolve_user("\udcff")
    assert str(exc.value) == ("--allow-user '\\\\udcff': no such user (give a uid or a user "
                              "name)")


def test_a_new_policy_admits_this_user_and_root_only():
    policy = PeerPolicy()
    assert policy.owner == os.geteuid()
    assert policy.allow_users == frozenset()
    assert policy.allowed == {0, os.geteuid()}
    assert policy.allow_remote is False
    assert policy.refused == 0
    assert PeerPolicy(owner=0).owner == 0


class _UnixPeer:
    """An accepted Unix connection whose peer has the credentials given."""

    family = socket.AF_UNIX

    def __init__(self, pid: int, uid: int, gid: int) -> None:
        self.cred = struct.pack("3i", pid, uid, gid)

    def getsockopt(self, level: int, name: int, size: int) -> bytes:
        assert (level, name, size) == (socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        return self.cred


def _tcp_verdict(policy: PeerPolicy):
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as _client_side:
        conn, _ = server.accept()
        with conn:
            return policy.judge(conn)


def test_the_verdicts_and_their_reasons(monkeypatch):
    from hwtoken.emulator.transports.access import Verdict

    policy = PeerPolicy(owner=1000, allow_users=[1001])
    assert policy.judge(_UnixPeer(7, 1000, 5)) == Verdict(True, 1000, "the owner")
    assert policy.judge(_UnixPeer(7, 0, 5)) == Verdict(True, 0, "root")
    assert policy.judge(_UnixPeer(7, 1001, 5)) == Verdict(True, 1001,
                                                          "allowed with --allow-user")
    assert policy.judge(_UnixPeer(1000, 1002, 1001)) == Verdict(
        False, 1002, "uid 1002 is not the key's owner (uid 1000) or root; `--allow-user 1002` "
                     "would let them in")
    assert PeerPolicy(owner=0).judge(_UnixPeer(7, 0, 5)) == Verdict(True, 0, "the owner")
    # --allow-remote opens TCP, never the Unix socket
    remote = PeerPolicy(owner=1000, allow_remote=True)
    assert remote.judge(_UnixPeer(7, 1002, 5)).allowed is False
    monkeypatch.setattr(sockowner, "peer_uid", lambda conn: 1002)
    assert _tcp_verdict(remote) == Verdict(True, None,
                                           "anyone who reaches the port (--allow-remote)")
    assert _tcp_verdict(policy) == Verdict(
        False, 1002, "uid 1002 is not the key's owner (uid 1000) or root; `--allow-user 1002` "
                     "would let them in")
    monkeypatch.setattr(sockowner, "peer_uid", lambda conn: 1001)
    assert _tcp_verdict(policy) == Verdict(True, 1001, "allowed with --allow-user")
    monkeypatch.setattr(sockowner, "peer_uid", lambda conn: None)
    assert _tcp_verdict(policy) == Verdict(
        False, None, "its user cannot be told (not from this machine, or already gone)")


def test_a_real_unix_peer_is_told_by_its_credentials():
    from hwtoken.emulator.transports.access import Verdict

    a, b = socket.socketpair()
    with a, b:
        assert PeerPolicy().judge(a) == Verdict(True, os.geteuid(), "the owner")
        assert PeerPolicy(owner=1000).judge(a) == Verdict(True, 0, "root")
    # a socket already closed: SO_PEERCRED fails, and the peer is refused
    assert PeerPolicy().judge(a) == Verdict(False, None,
                                            "its user cannot be told (Bad file descriptor)")


def test_admit_logs_the_first_refusal_of_each_user_as_a_warning(caplog):
    policy = PeerPolicy(owner=1000)
    log = logging.getLogger("hwtoken.test.access")
    with caplog.at_level(logging.DEBUG, logger="hwtoken.test.access"):
        assert policy.admit(_UnixPeer(7, 1000, 5), "usbip", log) is True
        assert policy.refused == 0 and caplog.records == []
        for uid in (1002, 1002, 1003):
            assert policy.admit(_UnixPeer(7, uid, 5), "usbip", log) is False
    assert policy.refused == 3
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "refused a usbip connection: uid 1002 is not the key's owner (uid "
                          "1000) or root; `--allow-user 1002` would let them in"),
        (logging.DEBUG, "refused a usbip connection: uid 1002 is not the key's owner (uid "
                        "1000) or root; `--allow-user 1002` would let them in"),
        (logging.WARNING, "refused a usbip connection: uid 1003 is not the key's owner (uid "
                          "1000) or root; `--allow-user 1003` would let them in"),
    ]


def test_odd_lines_of_the_tables(monkeypatch, tmp_path):
    import ipaddress

    loop = ipaddress.ip_address("127.0.0.1")
    lines = [
        "0: 0100007F:0CA8 00000000:0000 0A x x x 1000 0 7",  # exactly the 10 fields used
        "1: 0100007F:0CA8 00000000:0000 0A x x x 1000 0",  # one short: skipped
        "2: 0100007F:0CA9 00000000:0000 0A x x x uid 0 8",  # not a number: skipped
        "3: 0100007F:0CAA 00000000:0000 0A x x x 1001 0 9",
    ]
    assert sockowner.parse(lines) == [
        sockowner.TcpSocket((loop, 3240), (ipaddress.ip_address("0.0.0.0"), 0), 10, 1000, 7),
        sockowner.TcpSocket((loop, 3242), (ipaddress.ip_address("0.0.0.0"), 0), 10, 1001, 9),
    ]
    (tmp_path / "tcp6").write_text(TCP6)
    monkeypatch.setattr(sockowner, "TABLES", (str(tmp_path / "tcp"), str(tmp_path / "tcp6")))
    assert [s.inode for s in sockowner.tcp_sockets()] == [3333, 4444, 5555]  # no IPv4 table
    (tmp_path / "tcp").write_text(TCP)
    assert [s.inode for s in sockowner.tcp_sockets()] == [1111, 2222, 0, 3333, 4444, 5555]
    (tmp_path / "tcp").unlink()
    (tmp_path / "tcp").mkdir()
    with pytest.raises(IsADirectoryError):
        sockowner.tcp_sockets()


def test_addresses_are_normalized():
    import ipaddress

    assert sockowner.normalize("::ffff:127.0.0.1") == ipaddress.ip_address("127.0.0.1")
    assert sockowner.normalize("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert sockowner.normalize(ipaddress.ip_address("::1")) == ipaddress.ip_address("::1")
    assert sockowner.normalize("10.0.0.1") == ipaddress.ip_address("10.0.0.1")


def test_which_listeners_a_connection_could_reach(monkeypatch):
    import ipaddress

    def sock(local: str, port: int, state: int, uid: int, inode: int) -> sockowner.TcpSocket:
        return sockowner.TcpSocket((ipaddress.ip_address(local), port),
                                   (ipaddress.ip_address("0.0.0.0"), 0), state, uid, inode)

    rows = [sock("0.0.0.0", 5000, 0x0A, 1, 11), sock("127.0.0.1", 5000, 0x0A, 2, 12),
            sock("127.0.0.2", 5000, 0x0A, 3, 13), sock("127.0.0.1", 5000, 0x01, 4, 14),
            sock("127.0.0.1", 5000, 0x0A, 5, 0), sock("127.0.0.1", 5001, 0x0A, 6, 16),
            sock("::", 5002, 0x0A, 7, 17), sock("::1", 5003, 0x0A, 8, 18)]
    monkeypatch.setattr(sockowner, "tcp_sockets", lambda: rows)
    assert sockowner.listener_uids("127.0.0.1", 5000) == [1, 2]
    assert sockowner.listener_uids("127.0.0.2", 5000) == [1, 3]
    assert sockowner.listener_uids("::1", 5000) == []  # an IPv4 wildcard takes no IPv6
    assert sockowner.listener_uids("::1", 5002) == [7]
    assert sockowner.listener_uids("127.0.0.1", 5003) == []
    assert sockowner.listener_uids("::1", 5003) == [8]
    assert sockowner.TCP_LISTEN == 10
