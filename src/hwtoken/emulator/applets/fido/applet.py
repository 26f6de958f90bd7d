"""``FidoApplet``: the FIDO2 (CTAP 2.1/2.2) and U2F (CTAP1) applet of a virtual key.

Transports call two entry points, both pure (bytes in, bytes out):

* :meth:`FidoApplet.ctap2` — command byte + CBOR in, status byte + CBOR out (CTAPHID CBOR,
  NFCCTAP_MSG over ISO 7816);
* :meth:`FidoApplet.u2f` — a U2F command APDU in, response data + status word out
  (CTAPHID MSG, or the U2F applet over ISO 7816).

``lock`` (re-entrant) serialises requests arriving through different transports at once.
A transport passes ``channel`` (any hashable naming the CTAPHID channel or card session a
request came on) so multi-step CTAP2 commands only continue on the channel that began them.
What the applet offers follows the key's profile: a ``u2f-only`` key has no CTAP2 at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from hwtoken.emulator.applets.fido import attestation, credentials
from hwtoken.emulator.applets.fido.u2f import U2fApplet

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.context import KeyContext

Keepalive = Callable[[], None]

CTAP1_ERR_INVALID_COMMAND = 0x01
CTAP1_ERR_INVALID_LENGTH = 0x03
CTAP2_ERR_OTHER = 0x7F
SW_INS_NOT_SUPPORTED = b"\x6d\x00"


class FidoApplet:
    """FIDO2 + U2F for one key; CTAP2 logic lives in :mod:`hwtoken.emulator.applets.fido.ctap2`."""

    def __init__(self, key: KeyContext) -> None:
        self.key = key
        self.lock = threading.RLock()
        self.winks = 0
        self.on_wink: Callable[[], None] | None = None

    def initialise(self) -> None:
        """Set up a new key: attestation key and certificate chain, CTAP2 defaults."""
        attestation.ensure_attestation(self.key)
        # (a missing fido2 package raises here, naming the extra, rather than leaving a key
        # whose CTAP2 state was never set up)
        init = getattr(self.authenticator, "initialise", None)
        if init is not None:
            init()

    @cached_property
    def authenticator(self) -> Any:
        """The CTAP2 authenticator (B's :mod:`hwtoken.emulator.applets.fido.ctap2`)."""
        from hwtoken.emulator.applets.fido.ctap2 import Authenticator

        return Authenticator(self.key)

    @cached_property
    def u2f_applet(self) -> U2fApplet:
        return U2fApplet(self.key)

    @property
    def ctap2_enabled(self) -> bool:
        """False for a CTAP1-only model (``u2f-only``)."""
        return self.key.profile.ctap2

    def ctap2(self, request: bytes, cancel: threading.Event | None = None,
              keepalive: Keepalive | None = None, channel: Any = None) -> bytes:
        """One CTAP2 request (command byte + CBOR) -> status byte + CBOR response."""
        if not request:
            return bytes([CTAP1_ERR_INVALID_LENGTH])
        if not self.ctap2_enabled:
            return bytes([CTAP1_ERR_INVALID_COMMAND])
        with self.lock:
            try:
                return bytes(self.authenticator.process(bytes(request), cancel=cancel,
                                                        keepalive=keepalive, channel=channel))
            except Exception:  # a bug must not take the key down: answer ERR_OTHER
                return bytes([CTAP2_ERR_OTHER])

    def u2f(self, apdu: bytes, cancel: threading.Event | None = None,
            keepalive: Keepalive | None = None) -> bytes:
        """One U2F command APDU -> response data + status word.

        While CTAP2's alwaysUv is on, CTAP1/U2F is disabled (it cannot verify the user):
        every command answers 6D00 (instruction not supported).
        """
        with self.lock:
            if not self._u2f_enabled():
                return SW_INS_NOT_SUPPORTED
            return self.u2f_applet.process(apdu, cancel=cancel, keepalive=keepalive)

    @property
    def u2f_enabled(self) -> bool:
        """False while CTAP 2.1's alwaysUv is on (U2F cannot verify the user then)."""
        return self._u2f_enabled()

    def _u2f_enabled(self) -> bool:
        if not self.key.profile.u2f:
            return False
        if not self.key.profile.ctap2:
            return True
        try:
            return bool(getattr(self.authenticator, "u2f_enabled", True))
        except ImportError:  # no CTAP2 in this tree: nothing can disable U2F
            return True

    def wink(self) -> None:
        """The host asked the key to identify itself (blink its LED)."""
        self.winks += 1
        if self.on_wink is not None:
            self.on_wink()

    def before_close(self) -> None:
        """The key is about to be closed cleanly: record the exact signature counter."""
        credentials.record_signature_counter(self.key)

    def power_cycle(self) -> None:
        """Drop volatile CTAP2 state (PIN tokens, wrong-PIN streak, ...)."""
        if "authenticator" in self.__dict__:
            hook = getattr(self.authenticator, "power_cycle", None)
            if hook is not None:
                hook()
