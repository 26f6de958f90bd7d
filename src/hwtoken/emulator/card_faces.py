"""Smart-card faces of applets whose logic lives elsewhere: OTP and FIDO.

These only translate ISO 7816 commands into calls on the key's applets (no second copy of
any protocol): the OTP slots are ``key.otp`` (``emulator/applets/otp/applet.py``), FIDO is
``key.fido`` (``emulator/applets/fido/applet.py``).
"""

from __future__ import annotations

import struct
import threading
from typing import Any

from hwtoken.emulator.iso7816 import SW, Apdu, ApduError

AID_OTP = bytes.fromhex("a0000005272001")
AID_FIDO = bytes.fromhex("a0000006472f0001")

INS_OTP_CONFIG = 0x01
INS_OTP_STATUS = 0x03

INS_NFCCTAP_MSG = 0x10
INS_NFCCTAP_GETRESPONSE = 0x11
U2F_INS = (0x01, 0x02, 0x03)
CAP_U2F, CAP_FIDO2 = 0x02, 0x200  # management capabilities (yubikit CAPABILITY)



class OtpCardApplet:
    """The OTP application over CCID/NFC: ``INS 01, P1 = slot command`` and status."""

    aid = AID_OTP
    capability = 0x01

    def __init__(self, key: Any) -> None:
        self.key = key

    def select(self, apdu: Apdu) -> bytes:
        return bytes(self.key.otp.status())

    def process(self, apdu: Apdu) -> bytes:
        if apdu.ins == INS_OTP_STATUS:
            return bytes(self.key.otp.status())
        if apdu.ins != INS_OTP_CONFIG:
            raise ApduError(SW.INVALID_INSTRUCTION)
        from hwtoken.emulator.applets.otp.applet import CommandRejected

        try:
            return bytes(self.key.otp.command(apdu.p1, apdu.data))
        except CommandRejected:
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED) from None


STATUS_PROCESSING = 0x01
STATUS_UPNEEDED = 0x02
SW_UPDATE = 0x9100  # NFCCTAP: "still working", data = one status byte
P1_GETRESPONSE_SUPPORTED = 0x80
P1_CANCEL = 0x11
_POLL_WAIT = 0.05


class _Pending:
    """A CTAP2 request running in a worker thread while the host polls for it."""

    def __init__(self, run: Any, request: bytes, channel: Any) -> None:
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.status = STATUS_PROCESSING
        self.result = b""

        def work() -> None:
            try:
                self.result = bytes(run(request, cancel=self.cancel, keepalive=self._up,
                                        channel=channel))
            finally:
                self.done.set()

        self.thread = threading.Thread(target=work, daemon=True, name="hwtoken-nfcctap")
        self.thread.start()

    def _up(self) -> None:
        self.status = STATUS_UPNEEDED


class FidoCardApplet:
    """FIDO over ISO 7816 (the NFC path): U2F APDUs and NFCCTAP_MSG (CTAP2).

    When the host says it can poll (NFCCTAP_MSG with P1 bit 0x80, as python-fido2 does),
    a request that waits for a touch answers ``9100`` + status (1 processing, 2 touch
    needed) and the host polls with NFCCTAP_GETRESPONSE (P1 ``11`` cancels it).
    """

    aid = AID_FIDO
    capability = 0x02 | 0x200

    def __init__(self, key: Any) -> None:
        self.key = key
        self._pending: _Pending | None = None
        self._session = 0  # a new card session per SELECT: CTAP2's "channel" over NFC

    def _enabled(self, capability: int) -> bool:
        """Whether ``capability`` (U2F 0x02, FIDO2 0x200) is enabled over NFC."""
        from hwtoken.emulator.applets.management import ManagementApplet

        if not self.key.profile.has("management"):
            return True
        return bool(ManagementApplet(self.key).enabled("nfc") & capability)

    def select(self, apdu: Apdu) -> bytes:
        """CTAP 2.1 NFC: "U2F_V2" while U2F works, "FIDO_2_0" when only CTAP2 does."""
        self._drop()
        self._session += 1
        u2f = self.key.fido.u2f_enabled and self._enabled(CAP_U2F)
        return b"U2F_V2" if u2f else b"FIDO_2_0"

    @property
    def channel(self) -> tuple[int, int]:
        return (id(self), self._session)

    def deselect(self) -> None:
        self._drop()

    card_reset = deselect

    def _drop(self) -> None:
        if self._pending is not None:
            self._pending.cancel.set()
            self._pending = None

    def _poll(self) -> bytes:
        pending = self._pending
        assert pending is not None
        if pending.done.wait(_POLL_WAIT):
            self._pending = None
            return pending.result
        raise ApduError(SW_UPDATE, bytes([pending.status]))

    def process(self, apdu: Apdu) -> bytes:
        if apdu.cla == 0x80 and apdu.ins in (INS_NFCCTAP_MSG, INS_NFCCTAP_GETRESPONSE) \
                and not self._enabled(CAP_FIDO2):
            raise ApduError(SW.INVALID_INSTRUCTION)  # FIDO2 disabled over NFC
        if apdu.cla == 0x00 and apdu.ins in U2F_INS and not self._enabled(CAP_U2F):
            raise ApduError(SW.INVALID_INSTRUCTION)  # U2F disabled over NFC
        if apdu.cla == 0x80 and apdu.ins == INS_NFCCTAP_MSG:
            if not apdu.data:
                raise ApduError(SW.WRONG_LENGTH)
            self._drop()
            if apdu.p1 & P1_GETRESPONSE_SUPPORTED:
                self._pending = _Pending(self.key.fido.ctap2, apdu.data, self.channel)
                return self._poll()
            return bytes(self.key.fido.ctap2(apdu.data, channel=self.channel))
        if apdu.cla == 0x80 and apdu.ins == INS_NFCCTAP_GETRESPONSE:
            if self._pending is None:
                raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
            if apdu.p1 == P1_CANCEL:
                self._pending.cancel.set()
            return self._poll()
        if apdu.cla == 0x00 and apdu.ins in U2F_INS:
            out = bytes(self.key.fido.u2f(apdu.to_bytes()))
            if len(out) < 2:
                raise ApduError(SW.COMMAND_ABORTED)
            sw = struct.unpack(">H", out[-2:])[0]
            if sw != SW.OK:
                raise ApduError(sw, out[:-2])
            return out[:-2]
        if apdu.cla & 0x80 == 0 and apdu.ins not in U2F_INS:
            raise ApduError(SW.INVALID_INSTRUCTION)
        raise ApduError(SW.CLASS_NOT_SUPPORTED)
