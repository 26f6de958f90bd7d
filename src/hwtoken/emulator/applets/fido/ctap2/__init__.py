"""The CTAP 2.1 authenticator of the virtual key (pure logic: bytes in, bytes out).

``Authenticator(key).process(request, cancel, keepalive)`` takes a command byte plus CBOR
and returns a status byte plus canonical CBOR. State lives in the key's ``fido`` store
section (see :mod:`hwtoken.emulator.applets.fido.ctap2.state`).
"""

from hwtoken.emulator.applets.fido.ctap2.authenticator import Authenticator, Cmd
from hwtoken.emulator.applets.fido.ctap2.errors import ERR, Ctap2Error

__all__ = ["Authenticator", "Cmd", "ERR", "Ctap2Error"]
