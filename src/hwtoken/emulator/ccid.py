"""USB CCID (Chip/Smart Card Interface Devices, revision 1.1): a YubiKey's smart-card
interface as pure logic over the key's card OS.

No I/O: the USB device model (:mod:`hwtoken.emulator.usb`) joins each bulk-OUT transfer
into messages with :class:`MessageAssembler`, hands every message to :meth:`CcidSlot.handle`
and writes what it returns to the bulk-IN endpoint; :meth:`CcidSlot.slot_change` is the
interrupt-IN notification a host reads at plug.

The interface is a YubiKey 5's (libccid's readers/ file for 1050:0407 "YubiKey
OTP+FIDO+CCID" lists its class descriptor; :func:`class_descriptor`): one slot whose card is
always present, T=1 only, APDU-level exchange with short and extended APDUs (dwFeatures
0x000400FE), messages of at most 3072 bytes, no PIN pad, no escape commands.

Messages (CCID rev 1.1 section 6): a 10-byte header -- bMessageType, dwLength (little
endian), bSlot, bSeq, three message-specific bytes -- and dwLength bytes of data. Every
answer echoes bSlot and bSeq and carries bStatus (bmICCStatus in bits 0-1, bmCommandStatus
in bits 6-7) and bError. What the slot does:

* ``PC_to_RDR_IccPowerOn`` powers the card (a warm reset if it is on) and answers a
  DataBlock with the card OS's ATR; ``IccPowerOff`` and ``GetSlotStatus`` a SlotStatus;
* ``XfrBlock`` carries one command APDU (short or extended) and answers the response APDU.
  An APDU longer than a message is chained by wLevelParameter (01 begins, 03 continues,
  02 ends; each part answered by an empty DataBlock with bChainParameter 10) and so is a
  long answer (bChainParameter 01, 03, 02; the host asks for each next part with an empty
  XfrBlock of wLevelParameter 10), as libccid's ``CmdXfrBlockAPDU_extended`` expects;
* ``GetParameters``/``SetParameters``/``ResetParameters`` answer the T=1 protocol data
  structure (from the ATR: Fi/Di 13, LRC, BWI/CWI 1/5, IFSC 254);
* every other message -- Escape, IccClock, T0APDU, Secure, Mechanical, Abort,
  SetDataRateAndClockFrequency and unknown types -- fails with bError 00 "command not
  supported", in the answer type the message calls for (SlotStatus for unknown ones).

Malformed messages (short header, dwLength not matching the data, a slot other than 0,
bad parameters) are answered with bmCommandStatus "failed" and bError the offset of the
offending field, as the specification says; :meth:`CcidSlot.handle` never raises.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from hwtoken.emulator.iso7816 import MAX_COMMAND

log = logging.getLogger(__name__)

# -- descriptor (CCID rev 1.1 table 5.1-1), as a YubiKey 5 declares it ------------------------
USB_CLASS_CSCID = 0x0B  # Chip/SmartCard
CCID_DESCRIPTOR_TYPE = 0x21
BCD_CCID = 0x0100
VOLTAGE_5V_3V_1V8 = 0x07
PROTOCOL_T1 = 0x00000002
DEFAULT_CLOCK_KHZ = 4000
DATA_RATE_BPS = 307200
MAX_IFSD = 3062
FEATURE_AUTO_CONF_ATR = 0x00000002
FEATURE_AUTO_ACTIVATION = 0x00000004
FEATURE_AUTO_VOLTAGE = 0x00000008
FEATURE_AUTO_CLOCK = 0x00000010
FEATURE_AUTO_BAUD = 0x00000020
FEATURE_AUTO_PPS_PROP = 0x00000040
FEATURE_AUTO_PPS_CUR = 0x00000080
FEATURE_EXTENDED_APDU = 0x00040000
FEATURES = (FEATURE_AUTO_CONF_ATR | FEATURE_AUTO_ACTIVATION | FEATURE_AUTO_VOLTAGE
            | FEATURE_AUTO_CLOCK | FEATURE_AUTO_BAUD | FEATURE_AUTO_PPS_PROP
            | FEATURE_AUTO_PPS_CUR | FEATURE_EXTENDED_APDU)  # 0x000400FE
MAX_CCID_MESSAGE_LENGTH = 3072
CLASS_ECHO = 0xFF  # bClassGetResponse / bClassEnvelope: echo the APDU's class
MAX_BUSY_SLOTS = 1

# -- messages (section 6) -------------------------------------------------------------------
HEADER_SIZE = 10
PC_TO_RDR_SET_PARAMETERS = 0x61
PC_TO_RDR_ICC_POWER_ON = 0x62
PC_TO_RDR_ICC_POWER_OFF = 0x63
PC_TO_RDR_GET_SLOT_STATUS = 0x65
PC_TO_RDR_SECURE = 0x69
PC_TO_RDR_T0_APDU = 0x6A
PC_TO_RDR_ESCAPE = 0x6B
PC_TO_RDR_GET_PARAMETERS = 0x6C
PC_TO_RDR_RESET_PARAMETERS = 0x6D
PC_TO_RDR_ICC_CLOCK = 0x6E
PC_TO_RDR_XFR_BLOCK = 0x6F
PC_TO_RDR_MECHANICAL = 0x71
PC_TO_RDR_ABORT = 0x72
PC_TO_RDR_SET_DATA_RATE_AND_CLOCK_FREQUENCY = 0x73

RDR_TO_PC_DATA_BLOCK = 0x80
RDR_TO_PC_SLOT_STATUS = 0x81
RDR_TO_PC_PARAMETERS = 0x82
RDR_TO_PC_ESCAPE = 0x83
RDR_TO_PC_DATA_RATE_AND_CLOCK_FREQUENCY = 0x84
RDR_TO_PC_NOTIFY_SLOT_CHANGE = 0x50

#: the answer each command gets (section 6.1); an unknown command gets a SlotStatus
RESPONSE_TYPE = {
    PC_TO_RDR_ICC_POWER_ON: RDR_TO_PC_DATA_BLOCK,
    PC_TO_RDR_ICC_POWER_OFF: RDR_TO_PC_SLOT_STATUS,
    PC_TO_RDR_GET_SLOT_STATUS: RDR_TO_PC_SLOT_STATUS,
    PC_TO_RDR_XFR_BLOCK: RDR_TO_PC_DATA_BLOCK,
    PC_TO_RDR_GET_PARAMETERS: RDR_TO_PC_PARAMETERS,
    PC_TO_RDR_RESET_PARAMETERS: RDR_TO_PC_PARAMETERS,
    PC_TO_RDR_SET_PARAMETERS: RDR_TO_PC_PARAMETERS,
    PC_TO_RDR_ESCAPE: RDR_TO_PC_ESCAPE,
    PC_TO_RDR_ICC_CLOCK: RDR_TO_PC_SLOT_STATUS,
    PC_TO_RDR_T0_APDU: RDR_TO_PC_SLOT_STATUS,
    PC_TO_RDR_SECURE: RDR_TO_PC_DATA_BLOCK,
    PC_TO_RDR_MECHANICAL: RDR_TO_PC_SLOT_STATUS,
    PC_TO_RDR_ABORT: RDR_TO_PC_SLOT_STATUS,
    PC_TO_RDR_SET_DATA_RATE_AND_CLOCK_FREQUENCY: RDR_TO_PC_DATA_RATE_AND_CLOCK_FREQUENCY,
}

# bStatus
ICC_PRESENT_ACTIVE = 0x00
ICC_PRESENT_INACTIVE = 0x01
ICC_NOT_PRESENT = 0x02
COMMAND_OK = 0x00
COMMAND_FAILED = 0x01
COMMAND_TIME_EXTENSION = 0x02

# bError (section 6.2.6): the offset of a bad field, or one of these
CMD_NOT_SUPPORTED = 0x00
ERR_BAD_LENGTH = 1  # dwLength
ERR_BAD_SLOT = 5  # bSlot
ERR_BAD_POWER_SELECT = 7  # bPowerSelect
ERR_BAD_PROTOCOL = 7  # bProtocolNum
ERR_BAD_LEVEL_PARAMETER = 8  # wLevelParameter
CMD_ABORTED = 0xFF
ICC_MUTE = 0xFE
XFR_OVERRUN = 0xFC
HW_ERROR = 0xFB
CMD_SLOT_BUSY = 0xE0

# bPowerSelect: automatic, 5 V, 3 V, 1.8 V (all in bVoltageSupport)
POWER_SELECTS = (0, 1, 2, 3)

# wLevelParameter of an XfrBlock / bChainParameter of a DataBlock (APDU-level exchange)
CHAIN_BEGIN_AND_END = 0x00
CHAIN_BEGIN = 0x01
CHAIN_END = 0x02
CHAIN_CONTINUE = 0x03
CHAIN_EMPTY_CONTINUE = 0x10

# bmSlotICCState of NotifySlotChange (slot 0): bit 0 card present, bit 1 changed
SLOT_PRESENT = 0x01
SLOT_CHANGED = 0x02

# The T=1 protocol data structure (section 6.1.7), from the ATR (YUBIKEY_USB_ATR)
T1_PROTOCOL = 0x01
T1_PARAMETERS_SIZE = 7
TCCKS_T1 = 0x10  # bmTCCKST1 with LRC and the direct convention
DEFAULT_T1_PARAMETERS = bytes([
    0x13,       # bmFindexDindex: TA1 (Fi 372, Di 4)
    TCCKS_T1,   # bmTCCKST1
    0x00,       # bGuardTimeT1: TC1
    0x15,       # bmWaitingIntegersT1: TB3 (BWI 1, CWI 5)
    0x00,       # bClockStop: not allowed
    0xFE,       # bIFSC: TA3
    0x00,       # bNadValue
])


def class_descriptor() -> bytes:
    """The 54-byte CCID class descriptor of a YubiKey 5's smart-card interface."""
    return struct.pack(
        "<BBHBBIIIBIIBIIIIIBBHBB", 0x36, CCID_DESCRIPTOR_TYPE, BCD_CCID, 0, VOLTAGE_5V_3V_1V8,
        PROTOCOL_T1, DEFAULT_CLOCK_KHZ, DEFAULT_CLOCK_KHZ, 0, DATA_RATE_BPS, DATA_RATE_BPS, 0,
        MAX_IFSD, 0, 0, FEATURES, MAX_CCID_MESSAGE_LENGTH, CLASS_ECHO, CLASS_ECHO, 0, 0,
        MAX_BUSY_SLOTS)


def slot_change(present: bool = True, changed: bool = True) -> bytes:
    """RDR_to_PC_NotifySlotChange for slot 0 (two bytes on the interrupt endpoint)."""
    return bytes([RDR_TO_PC_NOTIFY_SLOT_CHANGE,
                  (SLOT_PRESENT if present else 0) | (SLOT_CHANGED if changed else 0)])


def answer(kind: int, slot: int, seq: int, status: int, error: int, specific: int,
           data: bytes = b"") -> bytes:
    """One RDR_to_PC message: header (bStatus, bError, the message-specific byte) + data."""
    return struct.pack("<BIBBBBB", kind, len(data), slot & 0xFF, seq & 0xFF, status & 0xFF,
                       error & 0xFF, specific & 0xFF) + bytes(data)


def status_byte(icc: int, command: int = COMMAND_OK) -> int:
    return (command << 6) | icc


class CcidError(Exception):
    """A command fails: the answer carries bmCommandStatus "failed" and ``error``."""

    def __init__(self, error: int) -> None:
        super().__init__(f"bError={error:#04x}")
        self.error = error


class CcidSlot:
    """The one slot of the key's CCID interface; its card is ``card`` (a ``CardOS``).

    Holds what CCID adds to the card: whether it is powered, the T=1 parameters, and the
    parts of a chained command or answer. The caller serialises calls (one message at a
    time, under the key's lock as for any card OS request).
    """

    def __init__(self, card: Any, *, max_message_length: int = MAX_CCID_MESSAGE_LENGTH) -> None:
        if max_message_length <= HEADER_SIZE:
            raise ValueError("a CCID message must have room for data")
        self.card = card
        self.max_message_length = max_message_length
        self.powered = False
        self.parameters = DEFAULT_T1_PARAMETERS
        self._command: bytearray | None = None  # a chained command APDU so far
        self._response: bytes | None = None  # the rest of a chained answer

    @property
    def icc_status(self) -> int:
        return ICC_PRESENT_ACTIVE if self.powered else ICC_PRESENT_INACTIVE

    @property
    def room(self) -> int:
        """Data bytes one message carries."""
        return self.max_message_length - HEADER_SIZE

    # -- what the interface sends without being asked -------------------------------------------
    def slot_change(self) -> bytes:
        """RDR_to_PC_NotifySlotChange for the interrupt endpoint: a card is present (and
        has just arrived), as a key sends it at plug."""
        return slot_change()

    def time_extension(self, message: bytes, multiplier: int = 1) -> bytes:
        """The answer that asks the host to wait longer for ``message``'s (bmCommandStatus
        "time extension", bError the BWT multiplier), sent while the card works."""
        kind, slot, seq = _echo(message)
        return answer(RESPONSE_TYPE.get(kind, RDR_TO_PC_SLOT_STATUS), slot, seq,
                      status_byte(self.icc_status, COMMAND_TIME_EXTENSION),
                      max(1, min(multiplier, 0xFF)), 0)

    def busy(self, message: bytes) -> bytes:
        """The answer to ``message`` arriving while the slot still works on another."""
        kind, slot, seq = _echo(message)
        return self._failed(kind, slot, seq, CMD_SLOT_BUSY)

    # -- messages ----------------------------------------------------------------------------
    def handle(self, message: bytes) -> bytes:
        """One bulk-OUT message in, its bulk-IN answer out (never raises)."""
        message = bytes(message)
        kind, slot, seq = _echo(message)
        try:
            return self._handle(message)
        except CcidError as exc:
            return self._failed(kind, slot, seq, exc.error)
        except Exception:  # a bug must not take the interface down: a hardware error
            log.exception("ccid: failed on message type %#04x", kind)
            self._command = self._response = None
            return self._failed(kind, slot, seq, HW_ERROR)

    def reset(self) -> None:
        """The host reset the device (or it was unplugged): the card is off."""
        self._command = self._response = None
        self.parameters = DEFAULT_T1_PARAMETERS
        if self.powered:
            self.card.power_off()
        self.powered = False

    def _failed(self, kind: int, slot: int, seq: int, error: int) -> bytes:
        rtype = RESPONSE_TYPE.get(kind, RDR_TO_PC_SLOT_STATUS)
        icc = ICC_NOT_PRESENT if error == ERR_BAD_SLOT else self.icc_status
        specific = T1_PROTOCOL if rtype == RDR_TO_PC_PARAMETERS else 0
        return answer(rtype, slot, seq, status_byte(icc, COMMAND_FAILED), error, specific)

    def _handle(self, message: bytes) -> bytes:
        if len(message) < HEADER_SIZE:
            raise CcidError(ERR_BAD_LENGTH)
        kind, length, slot, seq, b7, b8, b9 = struct.unpack_from("<BIBBBBB", message)
        if length != len(message) - HEADER_SIZE or len(message) > self.max_message_length:
            raise CcidError(ERR_BAD_LENGTH)
        if slot != 0:
            raise CcidError(ERR_BAD_SLOT)
        data = message[HEADER_SIZE:]
        if kind == PC_TO_RDR_XFR_BLOCK:
            return self._xfr_block(slot, seq, b8 | (b9 << 8), data)
        if kind == PC_TO_RDR_ICC_POWER_ON:
            return self._power_on(slot, seq, b7, data)
        if kind in (PC_TO_RDR_ICC_POWER_OFF, PC_TO_RDR_GET_SLOT_STATUS):
            if data:
                raise CcidError(ERR_BAD_LENGTH)
            if kind == PC_TO_RDR_ICC_POWER_OFF:
                self._command = self._response = None
                if self.powered:
                    self.card.power_off()
                self.powered = False
            return answer(RDR_TO_PC_SLOT_STATUS, slot, seq, status_byte(self.icc_status), 0, 0)
        if kind in (PC_TO_RDR_GET_PARAMETERS, PC_TO_RDR_RESET_PARAMETERS):
            if data:
                raise CcidError(ERR_BAD_LENGTH)
            if kind == PC_TO_RDR_RESET_PARAMETERS:
                self.parameters = DEFAULT_T1_PARAMETERS
            return self._parameters(slot, seq)
        if kind == PC_TO_RDR_SET_PARAMETERS:
            self.parameters = _t1_parameters(b7, data)
            return self._parameters(slot, seq)
        raise CcidError(CMD_NOT_SUPPORTED)

    def _parameters(self, slot: int, seq: int) -> bytes:
        return answer(RDR_TO_PC_PARAMETERS, slot, seq, status_byte(self.icc_status), 0,
                      T1_PROTOCOL, self.parameters)

    def _power_on(self, slot: int, seq: int, power_select: int, data: bytes) -> bytes:
        if data:
            raise CcidError(ERR_BAD_LENGTH)
        if power_select not in POWER_SELECTS:
            raise CcidError(ERR_BAD_POWER_SELECT)
        self._command = self._response = None
        atr = self.card.reset() if self.powered else self.card.power_on()
        self.powered = True
        return answer(RDR_TO_PC_DATA_BLOCK, slot, seq, status_byte(ICC_PRESENT_ACTIVE), 0,
                      CHAIN_BEGIN_AND_END, bytes(atr))

    def _xfr_block(self, slot: int, seq: int, level: int, data: bytes) -> bytes:
        if not self.powered:
            raise CcidError(ICC_MUTE)
        if level == CHAIN_EMPTY_CONTINUE:  # the host fetches the next part of an answer
            if self._response is None or data:
                self._response = None
                raise CcidError(ERR_BAD_LEVEL_PARAMETER)
            return self._answer_part(slot, seq, self._response, first=False)
        self._response = None
        if level == CHAIN_BEGIN_AND_END:
            self._command = None
            apdu = data
        elif level == CHAIN_BEGIN:
            self._command = bytearray(data)
            return self._empty(slot, seq)
        elif level in (CHAIN_CONTINUE, CHAIN_END):
            if self._command is None:
                raise CcidError(ERR_BAD_LEVEL_PARAMETER)
            if len(self._command) + len(data) > MAX_COMMAND:
                self._command = None
                raise CcidError(XFR_OVERRUN)
            self._command.extend(data)
            if level == CHAIN_CONTINUE:
                return self._empty(slot, seq)
            apdu, self._command = bytes(self._command), None
        else:
            self._command = None
            raise CcidError(ERR_BAD_LEVEL_PARAMETER)
        return self._answer_part(slot, seq, bytes(self.card.transmit(apdu)), first=True)

    def _empty(self, slot: int, seq: int) -> bytes:
        """The answer to one part of a chained command: send the next."""
        return answer(RDR_TO_PC_DATA_BLOCK, slot, seq, status_byte(self.icc_status), 0,
                      CHAIN_EMPTY_CONTINUE)

    def _answer_part(self, slot: int, seq: int, rest: bytes, *, first: bool) -> bytes:
        part, rest = rest[:self.room], rest[self.room:]
        if first:
            chain = CHAIN_BEGIN if rest else CHAIN_BEGIN_AND_END
        else:
            chain = CHAIN_CONTINUE if rest else CHAIN_END
        self._response = rest if rest else None
        return answer(RDR_TO_PC_DATA_BLOCK, slot, seq, status_byte(self.icc_status), 0, chain,
                      part)


def _echo(message: bytes) -> tuple[int, int, int]:
    """bMessageType, bSlot and bSeq of a (possibly short) message, for its answer."""
    kind = message[0] if message else 0
    slot = message[5] if len(message) > 5 else 0
    seq = message[6] if len(message) > 6 else 0
    return kind, slot, seq


def _t1_parameters(protocol: int, data: bytes) -> bytes:
    """Check a SetParameters' T=1 protocol data structure; the offset of a bad field is
    the error (T=0 is not offered: bProtocolNum is wrong)."""
    if protocol != T1_PROTOCOL:
        raise CcidError(ERR_BAD_PROTOCOL)
    if len(data) != T1_PARAMETERS_SIZE:
        raise CcidError(ERR_BAD_LENGTH)
    if data[1] & 0xFC != TCCKS_T1:  # LRC or CRC, either convention
        raise CcidError(HEADER_SIZE + 1)
    if data[4] > 3:  # bClockStop
        raise CcidError(HEADER_SIZE + 4)
    if not 0 < data[5] < 0xFF:  # bIFSC
        raise CcidError(HEADER_SIZE + 5)
    return bytes(data)


class MessageAssembler:
    """Joins a bulk-OUT pipe's transfers into CCID messages.

    A message ends when its header's dwLength is all there, or when a transfer ends in a
    short packet (shorter than ``packet_size``): what was sent so far is then a message of
    its own, malformed, and the slot answers it with an error. A header that announces more
    than ``max_length`` bytes is handed on at once (to be answered with an error) rather
    than buffered, so at most ``max_length`` bytes are ever held.
    """

    def __init__(self, packet_size: int = 64,
                 max_length: int = MAX_CCID_MESSAGE_LENGTH) -> None:
        if packet_size <= 0 or max_length < HEADER_SIZE:
            raise ValueError("bad packet size or message length")
        self.packet_size = packet_size
        self.max_length = max_length
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message held."""
        return len(self._buf)

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, transfer: bytes) -> list[bytes]:
        """The messages that ``transfer`` completes, in order."""
        out: list[bytes] = []
        data = memoryview(bytes(transfer))
        short = len(data) % self.packet_size != 0 or not data
        while data:
            room = self.max_length - len(self._buf)
            self._buf.extend(data[:room])
            data = data[room:]
            while len(self._buf) >= HEADER_SIZE:
                need = HEADER_SIZE + struct.unpack_from("<I", self._buf, 1)[0]
                if need > self.max_length:  # too long to hold: answered with an error
                    out.append(bytes(self._buf))
                    self._buf.clear()
                    data = data[:0]  # the rest of this transfer belongs to that message
                    break
                if len(self._buf) < need:
                    break
                out.append(bytes(self._buf[:need]))
                del self._buf[:need]
        if short and self._buf:
            out.append(bytes(self._buf))
            self._buf.clear()
        return out
