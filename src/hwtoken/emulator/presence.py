"""User presence: what happens when the virtual key asks for a touch.

A policy's :meth:`UserPresence.wait` blocks until the user approves or denies, the host
cancels (``cancel`` is set) or the timeout passes. ``keepalive`` is called about every
100 ms while waiting so the transport can send CTAPHID KEEPALIVE (status UPNEEDED).

A key with a fingerprint sensor (the ``yubikey-bio`` profile) also asks *which finger*
touched: :meth:`UserPresence.sample` answers with a finger's name (``"right-index"``), an
enrolled template ID (bytes) or :data:`NO_MATCH`. Enrollment records the finger that
touched; user verification matches it against the enrolled ones. Every policy touches with
:data:`DEFAULT_FINGER` unless it says otherwise: :class:`Finger` picks the finger,
:class:`FingerCallback` lets the test answer each time.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable

KEEPALIVE_INTERVAL = 0.1

Keepalive = Callable[[], None]

#: the finger every policy touches a fingerprint sensor with, unless it names another
DEFAULT_FINGER = "right-index"
#: a sensor reading that matches no enrolled finger (and enrolls nothing)
NO_MATCH = None

#: what a fingerprint sensor reads: a finger's name, an enrolled template ID, or NO_MATCH
Sample = str | bytes | None


class Decision(enum.Enum):
    """How a wait for a touch ended. Only ``APPROVED`` is true in a boolean context."""

    APPROVED = "approved"
    DENIED = "denied"  # the user refused (a policy or a prompt said no)
    TIMEOUT = "timeout"  # nobody touched the key in time
    CANCELLED = "cancelled"  # the host cancelled the request

    def __bool__(self) -> bool:
        return self is Decision.APPROVED


class UserPresence:
    """Base policy: subclasses implement :meth:`decide` (returning a bool or a Decision)."""

    timeout: float = 30.0

    def wait(self, reason: str, cancel: threading.Event | None = None,
             keepalive: Keepalive | None = None) -> Decision:
        """The :class:`Decision`; true only if the user approved."""
        cancel = cancel or threading.Event()
        result = self.decide(reason, cancel, keepalive)
        if isinstance(result, Decision):
            return result
        if cancel.is_set():
            return Decision.CANCELLED
        return Decision.APPROVED if result else Decision.DENIED

    def decide(self, reason: str, cancel: threading.Event,
               keepalive: Keepalive | None) -> bool | Decision:
        raise NotImplementedError

    #: the finger that touches a fingerprint sensor (see :meth:`sample`)
    finger: str = DEFAULT_FINGER

    def sample(self, reason: str) -> Sample:
        """What a fingerprint sensor reads once a touch was approved: by default
        :attr:`finger`. ``reason`` says why (``"bioEnroll"``, ``"getAssertion"``...)."""
        return self.finger

    @staticmethod
    def _sleep(seconds: float, cancel: threading.Event, keepalive: Keepalive | None) -> bool:
        """Sleep ``seconds`` sending keepalives; False if cancelled meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if keepalive is not None:
                keepalive()
            if cancel.wait(min(KEEPALIVE_INTERVAL, left)):
                return False


class ApproveAlways(UserPresence):
    """Approve at once (the default, like a key touched instantly)."""

    def decide(self, reason: str, cancel: threading.Event,
               keepalive: Keepalive | None) -> bool:
        return not cancel.is_set()


class DenyAlways(UserPresence):
    """Never approve: every request needing a touch times out as denied, immediately."""

    def decide(self, reason: str, cancel: threading.Event,
               keepalive: Keepalive | None) -> bool:
        return False


class ApproveAfterDelay(UserPresence):
    """Approve after ``delay`` seconds, sending keepalives meanwhile; cancellable."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def decide(self, reason: str, cancel: threading.Event,
               keepalive: Keepalive | None) -> bool:
        return self._sleep(self.delay, cancel, keepalive)


class AskCallback(UserPresence):
    """Ask ``callback(reason)`` in a worker thread; keepalives and cancel while it runs."""

    def __init__(self, callback: Callable[[str], bool], timeout: float = 30.0) -> None:
        self.callback = callback
        self.timeout = timeout

    def decide(self, reason: str, cancel: threading.Event,
               keepalive: Keepalive | None) -> bool:
        result: list[bool] = []
        done = threading.Event()

        def run() -> None:
            try:
                result.append(bool(self.callback(reason)))
            except Exception:
                result.append(False)
            finally:
                done.set()

        threading.Thread(target=run, daemon=True, name="hwtoken-presence").start()
        deadline = time.monotonic() + self.timeout
        while not done.is_set():
            if cancel.is_set():
                return Decision.CANCELLED
            if time.monotonic() > deadline:
                return Decision.TIMEOUT
            if keepalive is not None:
                keepalive()
            done.wait(KEEPALIVE_INTERVAL)
        return bool(result and result[0])


class Finger(ApproveAlways):
    """Touch at once with the finger called ``name`` (any name: ``"left-thumb"``...).

    On a key with a fingerprint sensor, enrolling records this finger, and user
    verification succeeds if it was enrolled and fails (UV_INVALID) if not. On other keys
    it is simply a touch.
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a finger needs a name")
        self.finger = name

    def __repr__(self) -> str:
        return f"Finger({self.finger!r})"


class FingerCallback(ApproveAlways):
    """Touch at once; ``callback(reason)`` says what the sensor reads each time: a
    finger's name, an enrolled template ID (bytes) or :data:`NO_MATCH` (None).

    A reading of NO_MATCH fails user verification (UV_INVALID, then UV_BLOCKED once the
    key's UV retries are spent) and gives an enrollment sample the status
    NO_USER_ACTIVITY. A template ID matches only while that template is enrolled.
    """

    def __init__(self, callback: Callable[[str], Sample]) -> None:
        self.callback = callback

    def sample(self, reason: str) -> Sample:
        return self.callback(reason)
