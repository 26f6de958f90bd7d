"""The USB/IP tests' side of the wire: read what the server sends."""

from __future__ import annotations

import socket


def read_exact(s: socket.socket, n: int) -> bytes:
    """``n`` bytes from ``s`` (its own timeout applies); fails the test if it closes first."""
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, f"closed after {len(data)} of {n} bytes"
        data += chunk
    return data
