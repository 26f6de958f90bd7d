"""The NDEF applet: an NFC Forum Type 4 tag (capability container + NDEF file).

Pure ISO 7816 logic; a YubiKey serves it over NFC only.
"""

from __future__ import annotations

from typing import Any

from hwtoken.emulator.iso7816 import SW, Apdu, ApduError

AID_NDEF = bytes.fromhex("d2760000850101")
INS_READ_BINARY = 0xB0
NDEF_CC_FILE = b"\xe1\x03"
NDEF_FILE = b"\xe1\x04"


class NdefApplet:
    """NFC Forum Type 4 tag: a capability container and an empty NDEF message.

    ykman reads it to tell whether a key is in "NFC restricted" mode; ours never is.
    """

    aid = AID_NDEF
    capability = 0

    CC = bytes.fromhex("000f20007f007f0406e10400ff00ff")

    def __init__(self, key: Any) -> None:
        self.key = key
        self._file: bytes | None = None

    def select(self, apdu: Apdu) -> bytes:
        self._file = None
        return b""

    def deselect(self) -> None:
        self._file = None

    def _content(self, fid: bytes) -> bytes:
        if fid == NDEF_CC_FILE:
            return self.CC
        return b"\x00\x00"  # NLEN = 0: no NDEF message

    def process(self, apdu: Apdu) -> bytes:
        if apdu.ins == 0xA4 and apdu.p1 == 0x00:
            if apdu.data not in (NDEF_CC_FILE, NDEF_FILE):
                raise ApduError(SW.FILE_NOT_FOUND)
            self._file = apdu.data
            return b""
        if apdu.ins == INS_READ_BINARY:
            if self._file is None:
                raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
            content = self._content(self._file)
            offset = (apdu.p1 << 8) | apdu.p2
            if offset > len(content):
                raise ApduError(SW.WRONG_PARAMETERS_P1P2)
            return content[offset:offset + (apdu.ne or 256)]
        raise ApduError(SW.INVALID_INSTRUCTION)
