"""What an applet may use of the key it lives in: a narrow :class:`typing.Protocol`.

Applets are pure protocol logic. They reach persisted state through the key's store
sections, ask the user's presence through its presence policy, and read its identity
(serial, firmware version, profile). :class:`~hwtoken.emulator.key.VirtualKey` provides all
of it; a test may hand an applet anything else that does. Applets type their key as
:class:`KeyContext`, never as ``VirtualKey``, so the applets never import the key that
assembles them.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.presence import UserPresence
    from hwtoken.emulator.profiles import Profile


class SectionStore(Protocol):
    """The key's persisted state: one dict per applet, written by :meth:`commit`."""

    def section(self, name: str) -> dict[str, Any]:
        """The named section (created empty on first use)."""

    def commit(self) -> None:
        """Write every section durably (atomically) before an answer leaves the key."""


class KeyContext(Protocol):
    """The key as an applet sees it."""

    store: SectionStore
    presence: UserPresence
    #: held while one request is handled, so two transports never interleave in an applet
    lock: threading.RLock

    @property
    def serial(self) -> int: ...

    @property
    def version(self) -> tuple[int, int, int]: ...

    @property
    def profile(self) -> Profile: ...

    @property
    def aaguid(self) -> bytes: ...

    @property
    def master_secret(self) -> bytes: ...

    def seconds_since_power_up(self) -> float: ...

    def request_reboot(self) -> None:
        """Reboot once the current answer is out (the transports re-enumerate the key)."""
