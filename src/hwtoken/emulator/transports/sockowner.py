"""Who owns a TCP socket on this machine: Linux's ``/proc/net/tcp`` and ``/proc/net/tcp6``.

Each line of those tables is one TCP socket of this network namespace: its local and remote
address (hex, each 32-bit word in the machine's byte order), its state, the uid that made it
and its inode (0 for a socket no process holds any more, such as one in TIME_WAIT, whose
uid then reads 0: such a line never counts). Both ends of a loopback connection are in the
tables, so a server can tell which local user connected to it (:func:`peer_uid`), and a
client which user listens where it is about to connect (:func:`listener_uids`).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass

TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
TCP_LISTEN = 0x0A

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class TcpSocket:
    """One line of the tables."""

    local: tuple[Address, int]
    remote: tuple[Address, int]
    state: int
    uid: int
    inode: int


def _address(text: str) -> tuple[Address, int]:
    """``0100007F:0CA8`` -> (127.0.0.1, 3240); v4-mapped IPv6 addresses become IPv4."""
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    words = b"".join(int.from_bytes(raw[i:i + 4], "big").to_bytes(4, sys.byteorder)
                     for i in range(0, len(raw), 4))
    return normalize(ipaddress.ip_address(words)), int(port, 16)


def normalize(address: Address | str) -> Address:
    """An address, with an IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) as IPv4."""
    ip = ipaddress.ip_address(address.split("%")[0] if isinstance(address, str) else address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse(lines: Iterable[str]) -> list[TcpSocket]:
    """The sockets of one table's text (its header line is skipped)."""
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[0] == "sl":
            continue
        try:
            out.append(TcpSocket(_address(fields[1]), _address(fields[2]), int(fields[3], 16),
                                 int(fields[7]), int(fields[9])))
        except ValueError:
            continue
    return out


def tcp_sockets() -> list[TcpSocket]:
    """Every TCP socket of this network namespace (OSError if the tables cannot be read)."""
    out: list[TcpSocket] = []
    for table in TABLES:
        try:
            with open(table) as fh:
                out.extend(parse(fh))
        except FileNotFoundError:  # a kernel without IPv6
            continue
    return out


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end of ``conn``, a TCP connection this process
    accepted (or made) on this machine; None when no live socket there matches (the peer is
    on another machine, or closed already). OSError if the tables cannot be read."""
    here = _endpoint(conn.getsockname())
    there = _endpoint(conn.getpeername())
    for s in tcp_sockets():
        if s.local == there and s.remote == here and s.inode != 0:
            return s.uid
    return None


def listener_uids(host: str, port: int) -> list[int]:
    """The uids of the listening sockets a connection to ``host:port`` could reach: one
    bound to that address (any address ``host`` resolves to), or to the wildcard address of
    its family (an IPv6 wildcard also takes IPv4). Empty if nothing listens there. OSError
    if the tables cannot be read or ``host`` does not resolve."""
    targets = {normalize(info[4][0]) for info in
               socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    uids = []
    for s in tcp_sockets():
        address, lport = s.local
        if s.state != TCP_LISTEN or lport != port or s.inode == 0:
            continue
        if address in targets or address.is_unspecified and any(
                address.version in (target.version, 6) for target in targets):
            uids.append(s.uid)
    return uids


def _endpoint(sockaddr: tuple) -> tuple[Address, int]:  # type: ignore[type-arg]
    return normalize(sockaddr[0]), int(sockaddr[1])
