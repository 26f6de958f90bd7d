"""CTAP1 / U2F raw messages for the virtual key: ISO 7816-4 APDUs in, response + SW out.

VERSION answers ``U2F_V2``; REGISTER makes a P-256 credential whose key handle is a
credential ID from :mod:`hwtoken.emulator.applets.fido.credentials` (so CTAP2 getAssertion accepts
it in an allowList, as on a real key) and signs it with the key's attestation key;
AUTHENTICATE supports check-only (P1 0x07), enforce-user-presence (0x03) and
dont-enforce-user-presence (0x08). The signature counter is the key's global one, shared
with CTAP2. Pure logic: no I/O besides the key's store.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwtoken.emulator.applets.fido import attestation, credentials

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.context import KeyContext

SW_NO_ERROR = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_WRONG_DATA = 0x6A80
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00

INS_REGISTER = 0x01
INS_AUTHENTICATE = 0x02
INS_VERSION = 0x03

P1_CHECK_ONLY = 0x07
P1_ENFORCE_UP = 0x03
P1_DONT_ENFORCE_UP = 0x08

VERSION = b"U2F_V2"


class ApduFormatError(ValueError):
    """The bytes are not a well-formed command APDU (answer 6700)."""


@dataclass(frozen=True)
class Apdu:
    """A parsed command APDU (short or extended encoding)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int = 0


def parse_apdu(apdu: bytes) -> Apdu:
    """Parse a command APDU; raises :class:`ApduFormatError` if the lengths do not add up.

    Accepts ISO 7816-4 cases 1-4 in short and extended form, and the U2F-over-HID form
    that python-fido2 sends (extended Lc even for empty data, then a 2-byte Le).
    """
    if len(apdu) < 4:
        raise ApduFormatError("APDU shorter than its header")
    cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
    body = bytes(apdu[4:])
    n = len(body)
    if n == 0:  # case 1
        return Apdu(cla, ins, p1, p2)
    if n == 1:  # case 2 short
        return Apdu(cla, ins, p1, p2, le=body[0] or 256)
    if body[0] != 0:  # short Lc
        lc = body[0]
        if n == 1 + lc:
            return Apdu(cla, ins, p1, p2, body[1:])
        if n == 2 + lc:
            return Apdu(cla, ins, p1, p2, body[1:1 + lc], body[-1] or 256)
        raise ApduFormatError("short APDU length mismatch")
    if n == 3:  # case 2 extended
        return Apdu(cla, ins, p1, p2, le=int.from_bytes(body[1:3], "big") or 65536)
    lc = int.from_bytes(body[1:3], "big")
    if n == 3 + lc:
        return Apdu(cla, ins, p1, p2, body[3:])
    if n == 5 + lc:
        return Apdu(cla, ins, p1, p2, body[3:3 + lc],
                    int.from_bytes(body[-2:], "big") or 65536)
    raise ApduFormatError("extended APDU length mismatch")


def _sw(code: int, data: bytes = b"") -> bytes:
    return data + struct.pack(">H", code)


class U2fApplet:
    """CTAP1/U2F message processing for one key (:class:`~hwtoken.emulator.context.KeyContext`)."""

    def __init__(self, key: KeyContext) -> None:
        self.key = key

    def process(self, apdu: bytes, cancel: threading.Event | None = None,
                keepalive: Callable[[], None] | None = None) -> bytes:
        """Answer one command APDU with response data + a 2-byte status word."""
        try:
            req = parse_apdu(bytes(apdu))
        except (ApduFormatError, TypeError, ValueError):
            return _sw(SW_WRONG_LENGTH)
        if req.cla != 0:
            return _sw(SW_CLA_NOT_SUPPORTED)
        cancel = cancel or threading.Event()
        if req.ins == INS_VERSION:
            if req.data:
                return _sw(SW_WRONG_LENGTH)
            return _sw(SW_NO_ERROR, VERSION)
        if req.ins == INS_REGISTER:
            return self._register(req, cancel, keepalive)
        if req.ins == INS_AUTHENTICATE:
            return self._authenticate(req, cancel, keepalive)
        return _sw(SW_INS_NOT_SUPPORTED)

    def _presence(self, reason: str, cancel: threading.Event,
                  keepalive: Callable[[], None] | None) -> bool:
        return bool(self.key.presence.wait(reason, cancel, keepalive))

    def _register(self, req: Apdu, cancel: threading.Event,
                  keepalive: Callable[[], None] | None) -> bytes:
        if len(req.data) != 64:
            return _sw(SW_WRONG_LENGTH)
        challenge, app = req.data[:32], req.data[32:]
        if not self._presence("U2F register", cancel, keepalive):
            return _sw(SW_CONDITIONS_NOT_SATISFIED)
        cred = credentials.CredentialKey.generate(credentials.ALG_ES256, u2f=True)
        handle = credentials.wrap(credentials.wrapping_secret(self.key), app, cred)
        point = cred.public_point()
        cert = attestation.attestation_certificate(self.key)
        signature = attestation.sign(self.key, b"\0" + app + challenge + handle + point)
        body = b"\x05" + point + bytes([len(handle)]) + handle + cert + signature
        return _sw(SW_NO_ERROR, body)

    def _authenticate(self, req: Apdu, cancel: threading.Event,
                      keepalive: Callable[[], None] | None) -> bytes:
        data = req.data
        if len(data) < 65 or len(data) != 65 + data[64]:
            return _sw(SW_WRONG_LENGTH)
        challenge, app, handle = data[:32], data[32:64], data[65:]
        if req.p1 not in (P1_CHECK_ONLY, P1_ENFORCE_UP, P1_DONT_ENFORCE_UP):
            return _sw(SW_WRONG_DATA)
        cred = credentials.unwrap(credentials.wrapping_secret(self.key), app, handle)
        if cred is None or not _usable_over_u2f(cred):
            return _sw(SW_WRONG_DATA)
        if req.p1 == P1_CHECK_ONLY:
            return _sw(SW_CONDITIONS_NOT_SATISFIED)  # "the key handle is mine"
        flags = 0x00
        if req.p1 == P1_ENFORCE_UP:
            if not self._presence("U2F authenticate", cancel, keepalive):
                return _sw(SW_CONDITIONS_NOT_SATISFIED)
            flags = 0x01
        counter = credentials.next_signature_counter(self.key)
        signed = app + bytes([flags]) + struct.pack(">I", counter) + challenge
        return _sw(SW_NO_ERROR, bytes([flags]) + struct.pack(">I", counter) + cred.sign(signed))


def _usable_over_u2f(cred: credentials.CredentialKey) -> bool:
    """U2F can only use P-256, non-discoverable credentials without credProtect level 3."""
    return cred.alg == credentials.ALG_ES256 and not cred.resident and cred.cred_protect < 3
