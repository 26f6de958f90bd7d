"""The CCID slot (USB CCID rev 1.1) over the key's card OS: messages in, answers out.

The descriptor is checked against what libccid's readers/ file lists for a real YubiKey 5
(1050:0407); the exchanges follow libccid's ``CmdXfrBlockAPDU_extended`` (chaining with
wLevelParameter / bChainParameter). pcscd and libccid themselves talk to the slot in
tests/emulator/transports/umockdev/test_ccid_pcscd.py.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwtoken.emulator import VirtualKey
from hwtoken.emulator.ccid import (
    DEFAULT_T1_PARAMETERS,
    HEADER_SIZE,
    MAX_CCID_MESSAGE_LENGTH,
    RESPONSE_TYPE,
    CcidSlot,
    MessageAssembler,
    class_descriptor,
)
from hwtoken.emulator.iso7816 import SW, YUBIKEY_USB_ATR, Apdu, ApduError, CardOS

SELECT_MANAGEMENT = bytes.fromhex("00a4040008a000000527471117")
SELECT_FIDO = bytes.fromhex("00a4040008a0000006472f0001")
SELECT_OATH = bytes.fromhex("00a4040007a0000005272101")
RDR_TO_PC = {0x80, 0x81, 0x82, 0x83, 0x84}


def msg(kind: int, data: bytes = b"", *, seq: int = 0, slot: int = 0, b7: int = 0,
        b8: int = 0, b9: int = 0) -> bytes:
    return struct.pack("<BIBBBBB", kind, len(data), slot, seq, b7, b8, b9) + data


def xfr(apdu: bytes, *, seq: int = 0, level: int = 0) -> bytes:
    return msg(0x6F, apdu, seq=seq, b8=level & 0xFF, b9=level >> 8)


def parse(answer: bytes) -> dict:
    kind, length, slot, seq, status, error, specific = struct.unpack_from("<BIBBBBB", answer)
    assert length == len(answer) - HEADER_SIZE
    return {"kind": kind, "slot": slot, "seq": seq, "status": status, "error": error,
            "specific": specific, "data": answer[HEADER_SIZE:]}


@pytest.fixture
def key(tmp_path):
    with VirtualKey.create(tmp_path / "k.key", serial=7654321) as k:
        yield k


@pytest.fixture
def slot(key):
    return CcidSlot(CardOS(key, transport="usb"))


@pytest.fixture(scope="module")
def fuzz_key(tmp_path_factory):
    with VirtualKey.create(tmp_path_factory.mktemp("ccid") / "k.key", serial=1234) as k:
        yield k


class Blob:
    """A test applet: echoes a command's data, or answers ``n`` bytes for INS 0x10."""

    aid = bytes.fromhex("f0000000010203")

    def __init__(self) -> None:
        self.commands: list[bytes] = []

    def select(self, apdu: Apdu) -> bytes:
        return b""

    def process(self, apdu: Apdu) -> bytes:
        self.commands.append(apdu.data)
        if apdu.ins == 0x10:
            n = int.from_bytes(apdu.data, "big")
            return bytes(i & 0xFF for i in range(n))
        if apdu.ins == 0x20:
            return apdu.data[:16]
        raise ApduError(SW.INVALID_INSTRUCTION)


def test_class_descriptor_is_a_yubikey_5s():
    d = class_descriptor()
    assert len(d) == 54 and d[:2] == b"\x36\x21"
    assert struct.unpack_from("<H", d, 2)[0] == 0x0100  # bcdCCID 1.00
    assert (d[4], d[5]) == (0, 0x07)  # one slot; 5 V, 3 V, 1.8 V
    assert struct.unpack_from("<I", d, 6)[0] == 0x02  # T=1
    assert struct.unpack_from("<II", d, 10) == (4000, 4000)  # 4 MHz
    assert struct.unpack_from("<II", d, 19) == (307200, 307200)
    assert (d[18], d[27]) == (0, 0)  # no clock or data-rate lists
    assert struct.unpack_from("<I", d, 28)[0] == 3062  # dwMaxIFSD
    assert struct.unpack_from("<I", d, 40)[0] == 0x000400FE  # short and extended APDUs
    assert struct.unpack_from("<I", d, 44)[0] == 3072  # dwMaxCCIDMessageLength
    assert (d[48], d[49]) == (0xFF, 0xFF)  # bClassGetResponse/Envelope: echo
    assert (struct.unpack_from("<H", d, 50)[0], d[52], d[53]) == (0, 0, 1)


def test_power_on_answers_the_usb_atr_and_echoes_seq(slot):
    a = parse(slot.handle(msg(0x65, seq=3)))  # GetSlotStatus: present, not powered
    assert (a["kind"], a["seq"], a["status"], a["error"]) == (0x81, 3, 0x01, 0)
    a = parse(slot.handle(msg(0x62, seq=4, b7=0)))
    assert (a["kind"], a["seq"], a["status"], a["specific"]) == (0x80, 4, 0x00, 0)
    assert a["data"] == YUBIKEY_USB_ATR
    assert YUBIKEY_USB_ATR[1] & 0xF0 != 0x80  # yubikit reads "not NFC" from it
    assert parse(slot.handle(msg(0x65, seq=5)))["status"] == 0x00  # active
    a = parse(slot.handle(msg(0x62, seq=6, b7=1)))  # again (5 V): a warm reset
    assert a["status"] == 0 and a["data"] == YUBIKEY_USB_ATR
    a = parse(slot.handle(msg(0x63, seq=7)))
    assert (a["kind"], a["seq"], a["status"]) == (0x81, 7, 0x01)


def test_xfr_block_reaches_the_usb_card_os(slot, key):
    slot.handle(msg(0x62))
    a = parse(slot.handle(xfr(SELECT_MANAGEMENT, seq=9)))
    assert (a["kind"], a["seq"], a["status"], a["specific"]) == (0x80, 9, 0, 0)
    assert a["data"] == b"5.7.4\x90\x00"
    # over USB, FIDO is the HID interface's: not a smart-card application (as a YubiKey 5)
    assert parse(slot.handle(xfr(SELECT_FIDO)))["data"] == b"\x6a\x82"
    assert CardOS(key).transmit(SELECT_FIDO)[-2:] == b"\x90\x00"  # over NFC it is one
    assert parse(slot.handle(xfr(SELECT_OATH)))["data"][-2:] == b"\x90\x00"


def test_usb_card_os_follows_the_usb_enabled_applications(key):
    from yubikit.core import TRANSPORT
    from yubikit.management import CAPABILITY, DeviceConfig, ManagementSession

    from hwtoken.emulator.transports.card_direct import DirectCardConnection

    usb = CAPABILITY.OTP | CAPABILITY.U2F | CAPABILITY.FIDO2 | CAPABILITY.PIV
    ManagementSession(DirectCardConnection(CardOS(key))).write_device_config(
        DeviceConfig({TRANSPORT.USB: usb}))
    assert CardOS(key, transport="usb").transmit(SELECT_OATH) == b"\x6a\x82"
    assert CardOS(key, transport="nfc").transmit(SELECT_OATH)[-2:] == b"\x90\x00"


def test_long_answers_are_chained_as_libccid_asks_for_them(key):
    blob = Blob()
    slot = CcidSlot(CardOS(key, applets=[blob], transport="usb"))
    slot.handle(msg(0x62))
    slot.handle(xfr(b"\x00\xa4\x04\x00\x07" + Blob.aid))
    n = 7000  # more than two messages' worth (3062 bytes of data each)
    a = parse(slot.handle(xfr(bytes([0, 0x10, 0, 0, 0, 0, 2]) + n.to_bytes(2, "big")
                               + b"\x00\x00", seq=1)))
    assert a["specific"] == 0x01 and len(a["data"]) == MAX_CCID_MESSAGE_LENGTH - HEADER_SIZE
    got, chains = bytearray(a["data"]), [a["specific"]]
    while chains[-1] in (0x01, 0x03):
        a = parse(slot.handle(xfr(b"", seq=len(chains) + 1, level=0x10)))
        assert a["seq"] == len(chains) + 1 and a["status"] == 0
        got += a["data"]
        chains.append(a["specific"])
    assert chains == [0x01, 0x03, 0x02]
    assert bytes(got) == bytes(i & 0xFF for i in range(n)) + b"\x90\x00"
    a = parse(slot.handle(xfr(b"", level=0x10)))  # nothing more to fetch
    assert (a["status"], a["error"]) == (0x40, 8)


def test_long_commands_are_chained_in_parts(key):
    blob = Blob()
    slot = CcidSlot(CardOS(key, applets=[blob], transport="usb"))
    slot.handle(msg(0x62))
    slot.handle(xfr(b"\x00\xa4\x04\x00\x07" + Blob.aid))
    data = bytes(range(256)) * 20  # 5120 bytes: an extended case 3 APDU
    apdu = b"\x00\x20\x00\x00\x00" + len(data).to_bytes(2, "big") + data
    room = MAX_CCID_MESSAGE_LENGTH - HEADER_SIZE
    parts = [apdu[i:i + room] for i in range(0, len(apdu), room)]
    assert len(parts) == 2
    first = parse(slot.handle(xfr(parts[0], level=0x01)))
    assert (first["specific"], first["data"]) == (0x10, b"")
    last = parse(slot.handle(xfr(parts[1], level=0x02)))
    assert last["data"] == data[:16] + b"\x90\x00"
    assert blob.commands[-1] == data
    a = parse(slot.handle(xfr(b"\x01\x02", level=0x03)))  # no chain begun
    assert (a["status"], a["error"]) == (0x40, 8)
    a = parse(slot.handle(xfr(b"", level=0x04)))  # no such wLevelParameter
    assert (a["status"], a["error"]) == (0x40, 8)


def test_parameters_are_t1s_from_the_atr(slot):
    a = parse(slot.handle(msg(0x6C, seq=2)))
    assert (a["kind"], a["seq"], a["specific"], a["data"]) == (0x82, 2, 1, DEFAULT_T1_PARAMETERS)
    assert DEFAULT_T1_PARAMETERS[0] == YUBIKEY_USB_ATR[2]  # TA1
    new = bytes([0x11, 0x10, 0x00, 0x45, 0x00, 0x20, 0x00])
    a = parse(slot.handle(msg(0x61, new, b7=1)))
    assert (a["status"], a["data"]) == (0x01, new)  # done; the card is not powered
    assert parse(slot.handle(msg(0x6C)))["data"] == new
    assert parse(slot.handle(msg(0x6D)))["data"] == DEFAULT_T1_PARAMETERS
    t0 = parse(slot.handle(msg(0x61, bytes(5), b7=0)))  # T=0: not offered
    assert (t0["kind"], t0["status"], t0["error"]) == (0x82, 0x41, 7)
    bad = parse(slot.handle(msg(0x61, bytes([0x11, 0x40, 0, 0x45, 0, 0x20, 0]), b7=1)))
    assert bad["error"] == 11  # bmTCCKST1
    assert parse(slot.handle(msg(0x61, new[:6], b7=1)))["error"] == 1


@pytest.mark.parametrize(("kind", "answer_kind"), [
    (0x6B, 0x83),  # Escape
    (0x6E, 0x81),  # IccClock
    (0x6A, 0x81),  # T0APDU
    (0x69, 0x80),  # Secure (no PIN pad)
    (0x71, 0x81),  # Mechanical
    (0x72, 0x81),  # Abort
    (0x73, 0x84),  # SetDataRateAndClockFrequency
    (0x99, 0x81),  # unknown
])
def test_other_commands_are_not_supported(slot, kind, answer_kind):
    a = parse(slot.handle(msg(kind, b"\x01\x02", seq=0x42)))
    assert (a["kind"], a["seq"]) == (answer_kind, 0x42)
    assert (a["status"], a["error"]) == (0x41, 0x00)  # failed, card present; not supported


def test_malformed_messages_are_answered_with_errors(slot):
    a = parse(slot.handle(b"\x62\x00\x00"))  # shorter than a header
    assert (a["kind"], a["status"], a["error"]) == (0x80, 0x41, 1)
    a = parse(slot.handle(msg(0x65, seq=5)[:-1] + b"\x00\x00"))  # dwLength says 0, 1 sent
    assert (a["kind"], a["seq"], a["error"]) == (0x81, 5, 1)
    a = parse(slot.handle(msg(0x65, seq=6, slot=1)))  # no slot 1
    assert (a["slot"], a["seq"], a["status"], a["error"]) == (1, 6, 0x42, 5)
    a = parse(slot.handle(xfr(SELECT_MANAGEMENT, seq=7)))  # not powered
    assert (a["kind"], a["seq"], a["status"], a["error"]) == (0x80, 7, 0x41, 0xFE)
    a = parse(slot.handle(msg(0x62, b7=9)))  # bPowerSelect
    assert a["error"] == 7
    a = parse(slot.handle(msg(0x63, b"\x00")))
    assert a["error"] == 1
    big = msg(0x6F, bytes(MAX_CCID_MESSAGE_LENGTH))
    assert parse(slot.handle(big))["error"] == 1


def test_busy_time_extension_and_slot_change(slot):
    m = xfr(SELECT_MANAGEMENT, seq=0x21)
    a = parse(slot.busy(m))
    assert (a["kind"], a["seq"], a["status"], a["error"]) == (0x80, 0x21, 0x41, 0xE0)
    slot.handle(msg(0x62))
    a = parse(slot.time_extension(m))
    assert (a["kind"], a["seq"], a["status"], a["error"]) == (0x80, 0x21, 0x80, 1)
    assert slot.slot_change() == b"\x50\x03"


def test_an_applet_bug_is_a_hardware_error_not_an_exception(key):
    class Broken:
        def power_on(self):
            raise RuntimeError("boom")

    a = parse(CcidSlot(Broken()).handle(msg(0x62, seq=3)))
    assert (a["kind"], a["seq"], a["status"], a["error"]) == (0x80, 3, 0x41, 0xFB)


def _well_formed(answer: bytes, message: bytes) -> None:
    a = parse(answer)
    assert a["kind"] in RDR_TO_PC
    if len(message) > 6:
        assert (a["slot"], a["seq"]) == (message[5], message[6])
    if message and a["status"] & 0xC0 == 0x40:
        assert a["kind"] == RESPONSE_TYPE.get(message[0], 0x81)
    assert len(answer) <= MAX_CCID_MESSAGE_LENGTH


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_fuzz_any_bytes_get_a_well_formed_answer(fuzz_key, data):
    slot = CcidSlot(CardOS(fuzz_key, transport="usb"))
    _well_formed(slot.handle(data), data)


_kinds = st.sampled_from([0x61, 0x62, 0x63, 0x65, 0x6B, 0x6C, 0x6D, 0x6F, 0x72, 0x00, 0xFF])
_messages = st.builds(
    lambda kind, slot, seq, b7, level, data, fix: (
        struct.pack("<BIBBBBB", kind, len(data) if fix else len(data) ^ 1, slot, seq, b7,
                    level & 0xFF, level >> 8) + data),
    _kinds, st.sampled_from([0, 0, 0, 1]), st.integers(0, 255), st.integers(0, 4),
    st.sampled_from([0, 0, 0, 1, 2, 3, 0x10, 0x55]),
    st.one_of(st.just(SELECT_MANAGEMENT), st.just(SELECT_OATH), st.binary(max_size=40)),
    st.booleans())


@settings(max_examples=150)
@given(st.lists(_messages, max_size=12))
def test_fuzz_message_sequences_never_break_the_slot(fuzz_key, messages):
    slot = CcidSlot(CardOS(fuzz_key, transport="usb"))
    for m in messages:
        _well_formed(slot.handle(m), m)
    slot.handle(msg(0x62))  # whatever came before, the card still answers
    assert parse(slot.handle(xfr(SELECT_MANAGEMENT)))["data"].endswith(b"\x90\x00")


@settings(max_examples=200)
@given(st.lists(st.binary(min_size=0, max_size=200), min_size=1, max_size=6))
def test_assembler_yields_what_was_sent_split_into_packets(payloads):
    messages = [msg(0x6F, p, seq=i) for i, p in enumerate(payloads)]
    asm = MessageAssembler(64)
    out = []
    for m in messages:  # one transfer per message, as a host sends them
        out += asm.feed(m)
    assert out == messages and asm.pending == 0
    for m in messages:  # the same, one 64-byte packet at a time (a message ending on a
        packets = [m[i:i + 64] for i in range(0, len(m), 64)]  # packet boundary needs
        got = [x for p in packets for x in asm.feed(p)]  # no zero-length packet: dwLength
        assert got == [m]  # says it is complete)


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=4000), max_size=6))
def test_fuzz_assembler_holds_at_most_one_message(transfers):
    asm = MessageAssembler(64, max_length=MAX_CCID_MESSAGE_LENGTH)
    for t in transfers:
        for m in asm.feed(t):
            assert m  # never an empty message
        assert asm.pending < MAX_CCID_MESSAGE_LENGTH
