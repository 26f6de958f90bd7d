"""Who may use a served key: the user who serves it, root, and users named explicitly.

A key on a shared machine must behave like one on its owner's desk: another local user who
can connect to ``127.0.0.1:3240`` must not get its assertions, its HMAC answers or a
factory reset. :class:`PeerPolicy` judges each accepted connection before a single byte is
answered: for a Unix socket by the peer's credentials (``SO_PEERCRED``), for TCP on this
machine by the uid that owns the peer's socket (:mod:`.sockowner`). A TCP peer whose user
cannot be told (another machine, or the tables are unreadable) is refused, unless
``allow_remote``: then everyone who reaches the port is let in, as the option says.
"""

from __future__ import annotations

import logging
import os
import pwd
import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from hwtoken.emulator.transports import sockowner
from hwtoken.errors import InvalidInput

ROOT_UID = 0
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def resolve_user(text: str) -> int:
    """A uid from ``UID`` (digits) or a user name; :class:`InvalidInput` otherwise."""
    text = text.strip()
    if text.isdigit() and text.isascii():
        uid = int(text)
        if uid >= 2**32 - 1:
            raise InvalidInput(f"--allow-user {text}: a uid is below 4294967295")
        return uid
    try:
        return pwd.getpwnam(text).pw_uid
    except (KeyError, ValueError):
        shown = text.encode("utf-8", "backslashreplace").decode()
        raise InvalidInput(f"--allow-user {shown!r}: no such user (give a uid or a user "
                           "name)") from None


@dataclass(frozen=True)
class Verdict:
    """Whether a connection may use the key, whose it is (if known) and why."""

    allowed: bool
    uid: int | None
    reason: str


class PeerPolicy:
    """Admits the owner (default: the effective uid of this process), root and
    ``allow_users``; with ``allow_remote`` every TCP peer."""

    def __init__(self, *, owner: int | None = None, allow_users: Iterable[int] = (),
                 allow_remote: bool = False) -> None:
        self.owner = os.geteuid() if owner is None else owner
        self.allow_users = frozenset(allow_users)
        self.allowed = frozenset({ROOT_UID, self.owner, *self.allow_users})
        self.allow_remote = allow_remote
        self.refused = 0  #: connections refused so far
        self._told: set[int | None] = set()
        self._lock = threading.Lock()

    def judge(self, conn: socket.socket) -> Verdict:
        """The verdict on an accepted connection (reads nothing from it)."""
        if conn.family == socket.AF_UNIX:
            try:
                raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            except OSError as exc:
                return Verdict(False, None, f"its user cannot be told ({exc.strerror})")
            uid: int | None = _UCRED.unpack(raw)[1]
        elif self.allow_remote:
            return Verdict(True, None, "anyone who reaches the port (--allow-remote)")
        else:
            try:
                uid = sockowner.peer_uid(conn)
            except OSError as exc:
                return Verdict(False, None, "its user cannot be told (/proc/net/tcp: "
                                            f"{exc.strerror})")
            if uid is None:
                return Verdict(False, None, "its user cannot be told (not from this machine, "
                                            "or already gone)")
        if uid in self.allowed:
            return Verdict(True, uid, "the owner" if uid == self.owner else
                           "root" if uid == ROOT_UID else "allowed with --allow-user")
        return Verdict(False, uid, f"uid {uid} is not the key's owner (uid {self.owner}) or "
                                   f"root; `--allow-user {uid}` would let them in")

    def admit(self, conn: socket.socket, what: str, log: logging.Logger) -> bool:
        """True if ``conn`` may go on; a refusal is logged, as a warning the first time for
        each user (a flood of them must not flood the log)."""
        verdict = self.judge(conn)
        if verdict.allowed:
            return True
        with self._lock:
            self.refused += 1
            first = verdict.uid not in self._told
            self._told.add(verdict.uid)
        log.log(logging.WARNING if first else logging.DEBUG,
                "refused a %s connection: %s", what, verdict.reason)
        return False
