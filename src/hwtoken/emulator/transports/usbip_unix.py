"""USB/IP over a Unix socket: how hwtoken's own commands reach a key that ``emulate serve``
serves.

``hwtoken emulate serve`` listens, besides its TCP port, on ``usbip.sock`` in a private
(0700) runtime directory whose path it writes into the key's runtime file; only its user
(and root) can connect there. A client names such a server by its path instead of a host,
with port 0 (as libpq takes a directory for a host): :func:`transport_for` turns
``(host, port)`` into the ``usbip`` package's transport for either.
"""

from __future__ import annotations

import socket

from usbip import USBIP
from usbip.transport import Transport


def is_socket_path(host: str) -> bool:
    """True if ``host`` names a Unix socket (an absolute path) rather than a host."""
    return host.startswith("/")


class UnixSocketTransport(Transport):  # type: ignore[misc]
    """Connects to a USB/IP server listening on the Unix socket ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except BaseException:
            sock.close()
            raise
        return sock


def transport_for(host: str, port: int) -> Transport:
    """The transport reaching ``host:port``, or the Unix socket ``host`` (port unused)."""
    if is_socket_path(host):
        return UnixSocketTransport(host)
    return USBIP(host, port)


def no_delay(sock: socket.socket) -> None:
    """Send small writes at once (TCP only: a Unix socket has no Nagle to switch off).

    Header and payload go out in separate sends: without this, Nagle plus the server's
    delayed ACK stalls every OUT report by tens of milliseconds.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def describe(host: str, port: int, busid: str) -> str:
    """``usbip://127.0.0.1:3240/1-1`` or ``usbip+unix:///run/.../usbip.sock/1-1``."""
    if is_socket_path(host):
        return f"usbip+unix://{host}/{busid}"
    shown = f"[{host}]" if ":" in host else host
    return f"usbip://{shown}:{port}/{busid}"
