"""ISO 7816 card OS: APDU encodings, SELECT, chaining, GET RESPONSE; fuzzed parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwtoken.emulator.iso7816 import SW, Apdu, ApduError, CardOS


class Echo:
    """A test applet that echoes data, or returns ``n`` bytes for INS 0x02."""

    aid = bytes.fromhex("f000000001")

    def __init__(self):
        self.seen = []

    def select(self, apdu):
        return b"echo"

    def process(self, apdu):
        self.seen.append(apdu)
        if apdu.ins == 0x02:
            return bytes(i & 0xFF for i in range(int.from_bytes(apdu.data, "big")))
        return apdu.data


def sw(resp: bytes) -> int:
    return int.from_bytes(resp[-2:], "big")


@pytest.mark.parametrize("raw, expected", [
    ("00a40400", Apdu(0, 0xA4, 4, 0)),
    ("00b0000000", Apdu(0, 0xB0, 0, 0, b"", 256)),
    ("00b0000010", Apdu(0, 0xB0, 0, 0, b"", 16)),
    ("00a4040003aabbcc", Apdu(0, 0xA4, 4, 0, bytes.fromhex("aabbcc"))),
    ("00a4040003aabbcc00", Apdu(0, 0xA4, 4, 0, bytes.fromhex("aabbcc"), 256)),
    ("00b00000000100", Apdu(0, 0xB0, 0, 0, b"", 256, True)),
    ("00b00000000000", Apdu(0, 0xB0, 0, 0, b"", 65536, True)),
    ("0001000000000201020000", Apdu(0, 1, 0, 0, b"\x01\x02", 65536, True)),
    ("000100000000020102", Apdu(0, 1, 0, 0, b"\x01\x02", 0, True)),
])
def test_parse_cases(raw, expected):
    assert Apdu.parse(bytes.fromhex(raw)) == expected


@pytest.mark.parametrize("raw", ["", "00", "00a404", "00a4040003aabb", "00a4040003aabbccdd00",
                                 "0001000000000301"])
def test_parse_rejects_wrong_lengths(raw):
    with pytest.raises(ApduError) as exc:
        Apdu.parse(bytes.fromhex(raw))
    assert exc.value.sw == SW.WRONG_LENGTH


@given(st.binary(max_size=300))
@settings(max_examples=400)
def test_parse_fuzz_never_crashes(raw):
    try:
        apdu = Apdu.parse(raw)
    except ApduError as exc:
        assert exc.sw == SW.WRONG_LENGTH
        return
    # what parses re-encodes to something that parses to the same command
    again = Apdu.parse(apdu.to_bytes())
    assert (again.cla, again.ins, again.p1, again.p2, again.data) == \
        (apdu.cla, apdu.ins, apdu.p1, apdu.p2, apdu.data)


def test_select_unknown_aid_and_no_selection():
    card = CardOS(None, [Echo()])
    assert sw(card.transmit(bytes.fromhex("00a4040005f000000002"))) == SW.FILE_NOT_FOUND
    assert sw(card.transmit(bytes.fromhex("0001000000"))) == SW.CONDITIONS_NOT_SATISFIED
    assert card.transmit(bytes.fromhex("00a4040005f000000001")) == b"echo\x90\x00"


def test_command_chaining_joins_parts():
    echo = Echo()
    card = CardOS(None, [echo])
    card.transmit(bytes.fromhex("00a4040005f000000001"))
    assert card.transmit(bytes.fromhex("1001000002aabb")) == b"\x90\x00"
    assert card.transmit(bytes.fromhex("1001000001cc")) == b"\x90\x00"
    assert card.transmit(bytes.fromhex("0001000001dd")) == bytes.fromhex("aabbccdd9000")
    assert len(echo.seen) == 1 and echo.seen[0].cla == 0


def test_chaining_with_another_ins_is_refused():
    card = CardOS(None, [Echo()])
    card.transmit(bytes.fromhex("00a4040005f000000001"))
    card.transmit(bytes.fromhex("1001000001aa"))
    assert sw(card.transmit(bytes.fromhex("0003000001bb"))) == SW.CONDITIONS_NOT_SATISFIED


def test_long_answer_comes_through_61xx_and_get_response():
    card = CardOS(None, [Echo()])
    card.transmit(bytes.fromhex("00a4040005f000000001"))
    resp = card.transmit(bytes.fromhex("0002000002025800"))  # 600 bytes
    assert resp[-2] == 0x61 and len(resp) == 258
    data = resp[:-2]
    while sw(resp) >> 8 == 0x61:
        resp = card.transmit(bytes.fromhex("00c0000000"))
        data += resp[:-2]
    assert sw(resp) == SW.OK
    assert data == bytes(i & 0xFF for i in range(600))


def test_extended_le_gets_it_in_one_piece():
    card = CardOS(None, [Echo()])
    card.transmit(bytes.fromhex("00a4040005f000000001"))
    resp = card.transmit(bytes.fromhex("00020000000002025800 00".replace(" ", "")))
    assert sw(resp) == SW.OK and len(resp) == 602


def test_pending_answer_is_dropped_by_another_command():
    card = CardOS(None, [Echo()])
    card.transmit(bytes.fromhex("00a4040005f000000001"))
    assert card.transmit(bytes.fromhex("0002000002025800"))[-2] == 0x61
    card.transmit(bytes.fromhex("0001000001aa"))
    # GET RESPONSE now goes to the applet (it echoes nothing), not the old answer
    assert card.transmit(bytes.fromhex("00c0000000")) == b"\x90\x00"


def test_reset_forgets_selection():
    card = CardOS(None, [Echo()])
    card.transmit(bytes.fromhex("00a4040005f000000001"))
    card.reset()
    assert sw(card.transmit(bytes.fromhex("0001000001aa"))) == SW.CONDITIONS_NOT_SATISFIED


@given(st.lists(st.binary(max_size=270), max_size=12))
@settings(max_examples=200)
def test_card_os_fuzz_always_answers_with_a_status_word(commands):
    card = CardOS(None, [Echo()])
    card.power_on()
    for raw in [bytes.fromhex("00a4040005f000000001"), *commands]:
        resp = card.transmit(raw)
        assert len(resp) >= 2
