"""ISO 7816-4 for the virtual key: APDU parsing and a card OS that dispatches to applets.

Pure logic, no I/O: a transport (``transports/vpcd.py``) hands :meth:`CardOS.transmit`
the bytes of a command APDU and sends back the bytes it returns (data + SW1 SW2).

What a YubiKey 5 does, and what yubikit, ykman and fido2 rely on:

* SELECT (``00 A4 04 00``) by AID picks an applet; the answer is the applet's select data.
  An unknown AID answers ``6A82`` (yubikit maps it to ApplicationNotAvailableError).
* Command chaining: CLA bit ``0x10`` marks a part of a longer command; parts are answered
  ``9000`` and the applet sees the joined command once the last part arrives.
* Long answers come in pieces: ``61XX`` says more is waiting, fetched with GET RESPONSE
  (``INS C0``) or the applet's own "send remaining" instruction (``INS A5`` for OATH).
* Short and extended length encodings of cases 1-4 are accepted.
* Secure messaging (GlobalPlatform SCP03/SCP11): an applet with a ``handshake`` method (the
  Security Domain) opens a session whichever applet is selected; the card OS then unwraps
  every command and wraps every answer for the selected applet (:mod:`hwtoken.emulator.scp`).
  SELECT ends the session.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger(__name__)

# ATR of a YubiKey 5 NFC read over NFC ("...WYubiKey"); T=1, historical bytes from Yubico.
# Its second byte (0x8D) tells yubikit's ScardSmartCardConnection "NFC transport".
YUBIKEY_NFC_ATR = bytes.fromhex("3B8D80018073C021C057597562694B6579F9")
# ATR of a YubiKey 5 over its USB CCID interface (pcsc-tools' smartcard_list.txt: "Yubico
# YubiKey 5 NFC (PKI)"): TA1=13 (Fi 372, Di 4), T=1 with IFSC 254 and BWI/CWI 1/5 (TA3,
# TB3), the same historical bytes; the second byte (0xFD) says "not NFC" to yubikit.
YUBIKEY_USB_ATR = bytes.fromhex("3BFD1300008131FE158073C021C057597562694B657940")

#: the transports a card OS is reached over; they differ in the applets a YubiKey offers
#: there (FIDO and NDEF answer only over NFC: over USB, FIDO has its own HID interface)
#: and in which of the management applet's enabled sets switches applets off
TRANSPORTS = ("nfc", "usb")

INS_SELECT = 0xA4
INS_GET_RESPONSE = 0xC0
CLA_CHAINING = 0x10

MANAGEMENT_AID = bytes.fromhex("a000000527471117")
SHORT_CHUNK = 256
MAX_COMMAND = 65536 + 8  # the longest command (header + extended Lc + data) we buffer


class SW:
    """Status words used by the applets (same names as ``yubikit.core.smartcard.SW``)."""

    OK = 0x9000
    NO_INPUT_DATA = 0x6285
    VERIFY_FAIL_NO_RETRY = 0x63C0
    MEMORY_FAILURE = 0x6581
    WRONG_LENGTH = 0x6700
    SECURITY_CONDITION_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    DATA_INVALID = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED = 0x6986
    INCORRECT_PARAMETERS = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    NO_SPACE = 0x6A84
    REFERENCE_DATA_NOT_FOUND = 0x6A88
    WRONG_PARAMETERS_P1P2 = 0x6B00
    INVALID_INSTRUCTION = 0x6D00
    CLASS_NOT_SUPPORTED = 0x6E00
    COMMAND_ABORTED = 0x6F00


class ApduError(Exception):
    """Raised by an applet to answer with status word ``sw`` (and optional ``data``)."""

    def __init__(self, sw: int, data: bytes = b"") -> None:
        super().__init__(f"SW={sw:04X}")
        self.sw = sw
        self.data = data


@dataclass(frozen=True)
class Apdu:
    """A parsed command APDU. ``ne`` is the expected answer length (0 = no Le field)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    ne: int = 0
    extended: bool = False

    @property
    def chained(self) -> bool:
        """True if CLA says more parts of this command follow."""
        return bool(self.cla & CLA_CHAINING) and self.cla != 0xFF

    @classmethod
    def parse(cls, raw: bytes) -> Apdu:
        """Parse the four ISO 7816-4 cases in short or extended form.

        Raises :class:`ApduError` (``6700`` wrong length) for malformed input.
        """
        raw = bytes(raw)
        n = len(raw)
        if n < 4:
            raise ApduError(SW.WRONG_LENGTH)
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        body = raw[4:]
        if not body:  # case 1
            return cls(cla, ins, p1, p2)
        if len(body) == 1:  # case 2 short
            return cls(cla, ins, p1, p2, b"", body[0] or 256)
        if body[0] != 0:  # short Lc
            lc = body[0]
            if len(body) == 1 + lc:  # case 3 short
                return cls(cla, ins, p1, p2, body[1:])
            if len(body) == 2 + lc:  # case 4 short
                return cls(cla, ins, p1, p2, body[1:1 + lc], body[-1] or 256)
            raise ApduError(SW.WRONG_LENGTH)
        # body[0] == 0: extended length (or a short Lc=0 case 4 some hosts send)
        if len(body) == 3:  # case 2 extended
            le = struct.unpack(">H", body[1:3])[0]
            return cls(cla, ins, p1, p2, b"", le or 65536, True)
        if len(body) == 2:  # short "Lc=0, Le" (not strictly ISO, seen in the wild)
            return cls(cla, ins, p1, p2, b"", body[1] or 256)
        if len(body) < 3:
            raise ApduError(SW.WRONG_LENGTH)
        lc = struct.unpack(">H", body[1:3])[0]
        if lc == 0:
            raise ApduError(SW.WRONG_LENGTH)
        rest = body[3:]
        if len(rest) == lc:  # case 3 extended
            return cls(cla, ins, p1, p2, rest, 0, True)
        if len(rest) == lc + 2:  # case 4 extended
            le = struct.unpack(">H", rest[lc:])[0]
            return cls(cla, ins, p1, p2, rest[:lc], le or 65536, True)
        raise ApduError(SW.WRONG_LENGTH)

    def to_bytes(self) -> bytes:
        """Encode again (short form when it fits, else extended)."""
        head = bytes([self.cla, self.ins, self.p1, self.p2])
        short = (len(self.data) <= 255 and self.ne <= 256) and not self.extended
        if short:
            out = head
            if self.data:
                out += bytes([len(self.data)]) + self.data
            if self.ne:
                out += bytes([self.ne & 0xFF])
            return out
        out = head
        if self.data:
            out += b"\0" + struct.pack(">H", len(self.data)) + self.data
        if self.ne:
            if not self.data:
                out += b"\0"
            out += struct.pack(">H", self.ne & 0xFFFF)
        return out


class CardApplet(Protocol):
    """What the card OS needs from an applet (all methods are pure logic)."""

    aid: bytes

    def select(self, apdu: Apdu) -> bytes:
        """Become the current applet; return the SELECT answer's data."""

    def process(self, apdu: Apdu) -> bytes:
        """Handle a (de-chained) command; return data or raise :class:`ApduError`."""


class CardOS:
    """A YubiKey 5's smart-card side: applets by AID, chaining, response chaining.

    ``transmit`` never raises for bad input: malformed or unknown commands get a status
    word, as a card would answer.
    """

    def __init__(self, key: Any = None, applets: list[Any] | None = None,
                 atr: bytes | None = None, *, strict: bool = False,
                 transport: str = "nfc") -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown card transport {transport!r}")
        self.key = key
        self.strict = strict
        self.transport = transport
        if atr is None:
            atr = YUBIKEY_USB_ATR if transport == "usb" else YUBIKEY_NFC_ATR
        self.atr = atr
        if applets is None:
            # whoever assembles the key decides its applets (VirtualKey.card_applets)
            applets = key.card_applets(transport) if key is not None else []
        self.applets: list[Any] = applets
        self.current: Any = None
        self.powered = False
        self._chain: tuple[tuple[int, int, int, int], bytearray] | None = None
        self._pending = b""
        self._pending_sw = SW.OK
        self._pending_ins: tuple[int, ...] = ()

    # -- power ------------------------------------------------------------------------
    def power_on(self) -> bytes:
        """Power the card up; return its ATR. Nothing is selected afterwards."""
        self._clear()
        self.powered = True
        return self.atr

    def reset(self) -> bytes:
        """Warm reset: drop the selection and every applet's volatile state."""
        self._clear()
        self.powered = True
        return self.atr

    def power_off(self) -> None:
        """Remove power (like leaving the NFC field)."""
        self._clear()
        self.powered = False

    def _clear(self) -> None:
        if self.current is not None:
            self._deselect()
        for applet in self.applets:
            hook = getattr(applet, "card_reset", None)
            if hook is not None:
                hook()
        self._chain = None
        self._pending = b""

    def _deselect(self) -> None:
        hook = getattr(self.current, "deselect", None)
        if hook is not None:
            hook()
        self.current = None

    # -- commands -----------------------------------------------------------------------
    def transmit(self, raw: bytes) -> bytes:
        """Process one command APDU; return response data followed by SW1 SW2."""
        self.powered = True
        try:
            data, sw = self._transmit(bytes(raw))
        except ApduError as exc:
            data, sw = exc.data, exc.sw
        except Exception:
            # An applet bug must not take the card (and its transport) down: answer
            # "command aborted", as a card does. ``strict`` re-raises (for tests).
            if self.strict:
                raise
            logger.exception("card: applet failed on %s", bytes(raw[:4]).hex())
            self._chain = None
            data, sw = b"", SW.COMMAND_ABORTED
        return bytes(data) + struct.pack(">H", sw)

    def _transmit(self, raw: bytes) -> tuple[bytes, int]:
        if len(raw) > MAX_COMMAND:
            raise ApduError(SW.WRONG_LENGTH)
        apdu = Apdu.parse(raw)
        if apdu.cla == 0xFF:
            raise ApduError(SW.CLASS_NOT_SUPPORTED)

        # Response chaining: the host is fetching the rest of a long answer.
        if self._pending and apdu.ins in (INS_GET_RESPONSE, *self._pending_ins) \
                and not apdu.data and self._chain is None:
            return self._next_chunk(apdu.ne)
        self._pending = b""

        # Command chaining: collect the parts, answer 9000 until the last one.
        if apdu.chained:
            key = (apdu.cla & ~CLA_CHAINING, apdu.ins, apdu.p1, apdu.p2)
            if self._chain is None:
                self._chain = (key, bytearray())
            elif self._chain[0][:2] != key[:2]:
                self._chain = None
                raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
            if len(self._chain[1]) + len(apdu.data) > MAX_COMMAND:
                self._chain = None
                raise ApduError(SW.WRONG_LENGTH)
            self._chain[1].extend(apdu.data)
            return b"", SW.OK
        if self._chain is not None:
            key, buf = self._chain
            self._chain = None
            if key[:2] != (apdu.cla & ~CLA_CHAINING, apdu.ins):
                raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
            apdu = Apdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, bytes(buf) + apdu.data,
                        apdu.ne, apdu.extended)

        authority = self.authority
        if apdu.ins == INS_SELECT and apdu.p1 == 0x04 and (apdu.cla & 0x80) == 0:
            if authority is not None:
                authority.close_channel()
            data = self._select(apdu)
        elif authority is not None and authority.is_handshake(apdu):
            data = authority.handshake(apdu)
        elif self.current is None:
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED if apdu.ins != INS_SELECT
                            else SW.FILE_NOT_FOUND)
        elif authority is not None and authority.channel is not None:
            data = self._secured(authority, apdu)
        elif authority is not None and apdu.cla & 0x0C:  # secure messaging, no session
            raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
        else:
            data = self.current.process(apdu)
        return self._answer(data, apdu)

    @property
    def authority(self) -> Any:
        """The applet that opens secure channels (the Security Domain), if the key has one."""
        return next((a for a in self.applets if hasattr(a, "handshake")), None)

    def _secured(self, authority: Any, apdu: Apdu) -> bytes:
        """Run ``apdu`` through the session ``authority`` opened: unwrap it for the current
        applet and wrap its answer; a command failing the checks ends the session."""
        channel = authority.channel
        try:
            inner = channel.unwrap(apdu)
        except ApduError:
            authority.close_channel()
            raise
        try:
            data = self.current.process(inner)
        except ApduError as exc:
            raise ApduError(exc.sw, channel.wrap(exc.data, exc.sw)) from None
        return bytes(channel.wrap(data, SW.OK))

    def _select(self, apdu: Apdu) -> bytes:
        aid = apdu.data
        applet = self.find(aid)
        if applet is None:
            # A failed SELECT leaves the current applet as it was (like a YubiKey).
            raise ApduError(SW.FILE_NOT_FOUND)
        if self.current is not None and self.current is not applet:
            self._deselect()  # selecting the current applet again is not leaving it
        self.current = applet
        return applet.select(apdu)

    def find(self, aid: bytes) -> Any:
        """The applet whose AID equals ``aid`` or starts with it (>= 5 bytes), else None."""
        if len(aid) < 5:
            return None
        for applet in self.applets:
            if applet.aid == aid and self.enabled(applet):
                return applet
        for applet in self.applets:
            if applet.aid.startswith(aid) and self.enabled(applet):
                return applet
        return None

    def enabled(self, applet: Any) -> bool:
        """False if the management applet's capabilities enabled over this card OS's
        transport (NFC or USB) switch it off."""
        cap = int(getattr(applet, "capability", 0))
        if not cap:
            return True
        for other in self.applets:
            enabled = getattr(other, "enabled", None)
            if getattr(other, "aid", None) == MANAGEMENT_AID and enabled is not None:
                return bool(cap & enabled(self.transport))
        return True

    def _answer(self, data: bytes, apdu: Apdu) -> tuple[bytes, int]:
        limit = self._chunk_size(apdu)
        if len(data) <= limit:
            return data, SW.OK
        self._pending = data[limit:]
        self._pending_ins = tuple(getattr(self.current, "send_remaining_ins", ()))
        return data[:limit], self._more_sw()

    def _chunk_size(self, apdu: Apdu) -> int:
        if apdu.extended and apdu.ne > SHORT_CHUNK:
            return apdu.ne
        return SHORT_CHUNK

    def _more_sw(self) -> int:
        left = len(self._pending)
        return 0x6100 | (left if left < 256 else 0)

    def _next_chunk(self, ne: int) -> tuple[bytes, int]:
        size = ne if ne > SHORT_CHUNK else SHORT_CHUNK
        chunk, self._pending = self._pending[:size], self._pending[size:]
        if self._pending:
            return chunk, self._more_sw()
        return chunk, SW.OK
