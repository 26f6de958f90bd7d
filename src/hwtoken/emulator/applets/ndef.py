"""The NDEF applet: an NFC Forum Type 4 tag (capability container + NDEF file).

Pure ISO 7816 logic; a YubiKey serves it over NFC only, as part of its OTP application:
the tag holds one NDEF record, the URI (or text) programmed with ``ykman otp ndef``
followed by a fresh OTP of that slot, which a phone opens when the key is held to it.
With OTP disabled over NFC there is no tag (SELECT answers 6A82).
"""

from __future__ import annotations

import struct
from typing import Protocol

from hwtoken.emulator.iso7816 import SW, Apdu, ApduError

AID_NDEF = bytes.fromhex("d2760000850101")
INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
NDEF_CC_FILE = b"\xe1\x03"
NDEF_FILE = b"\xe1\x04"
CAP_OTP = 0x01  # the management capability the tag belongs to

#: NDEF record header of a lone short record: MB | ME | SR, TNF 1 (NFC Forum well-known)
RECORD_HEADER = 0xD1


class NdefSource(Protocol):
    """Where the tag's record comes from (the key's OTP applet)."""

    def ndef(self) -> tuple[int, bytes]:
        """``(record type, payload)`` for one read, using up an OTP."""


class NdefKey(Protocol):
    """What the NDEF applet needs from the key."""

    @property
    def otp(self) -> NdefSource: ...


def ndef_file(record_type: int, payload: bytes) -> bytes:
    """The NDEF file: NLEN (2 bytes) then one short well-known record."""
    if len(payload) > 0xFF:
        raise ValueError("an NDEF short record holds at most 255 bytes")
    record = bytes([RECORD_HEADER, 1, len(payload), record_type]) + payload
    return struct.pack(">H", len(record)) + record


class NdefApplet:
    """NFC Forum Type 4 tag: a capability container and the NDEF file.

    Selecting the NDEF file reads the key's record once (an OTP is used up per read, as a
    phone's tap does); READ BINARY then serves that content at any offset. ykman also
    reads it to tell whether a key is in "NFC restricted" mode; ours never is.
    """

    aid = AID_NDEF
    capability = CAP_OTP

    #: mapping version 2.0, MLe 127, MLc 127, NDEF file E104 of up to 255 bytes, read free,
    #: no writes
    CC = bytes.fromhex("000f20007f007f0406e10400ff00ff")

    def __init__(self, key: NdefKey) -> None:
        self.key = key
        self._file: bytes | None = None
        self._content = b""

    def select(self, apdu: Apdu) -> bytes:
        self._file = None
        return b""

    def deselect(self) -> None:
        self._file = None

    def process(self, apdu: Apdu) -> bytes:
        if apdu.ins == INS_SELECT and apdu.p1 == 0x00:
            if apdu.data == NDEF_CC_FILE:
                self._content = self.CC
            elif apdu.data == NDEF_FILE:
                self._content = ndef_file(*self.key.otp.ndef())
            else:
                raise ApduError(SW.FILE_NOT_FOUND)
            self._file = apdu.data
            return b""
        if apdu.ins == INS_READ_BINARY:
            if self._file is None:
                raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
            offset = (apdu.p1 << 8) | apdu.p2
            if offset > len(self._content):
                raise ApduError(SW.WRONG_PARAMETERS_P1P2)
            return self._content[offset:offset + (apdu.ne or 256)]
        raise ApduError(SW.INVALID_INSTRUCTION)
