"""A touch policy for cancel tests: nobody touches the key, only the host's cancel ends it."""

from __future__ import annotations

import threading

from hwtoken.emulator.presence import KEEPALIVE_INTERVAL, Decision, UserPresence


class UntilCancelled(UserPresence):
    """Never approves: the wait sends keepalives until the host cancels the request.

    ``asked`` is set when the key starts waiting for a touch and ``cancelled`` when a cancel
    ended the wait, so a test knows *why* the request ended without timing it (a wait that
    the cancel did not reach would never end; pytest-timeout ends the test then).
    """

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.cancelled = threading.Event()

    def decide(self, reason: str, cancel: threading.Event, keepalive) -> Decision:
        self.asked.set()
        while True:
            if keepalive is not None:
                keepalive()  # UPNEEDED at once, then every interval
            if cancel.wait(KEEPALIVE_INTERVAL):
                break
        self.cancelled.set()
        return Decision.CANCELLED
