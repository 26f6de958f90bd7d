"""The BER-TLV codec of the smart-card applets, byte by byte: tags of one to four bytes,
the short and long length forms, and 6A80 for everything malformed or truncated."""

from __future__ import annotations

import pytest

from hwtoken.emulator import tlv
from hwtoken.emulator.iso7816 import SW, ApduError


class Bounded(bytes):
    """Bytes that fail the test after ``budget`` indexing/slicing operations: a parser that
    does not move on from a TLV it has read fails instead of reading it forever."""

    def __new__(cls, data: bytes, budget: int) -> Bounded:
        self = super().__new__(cls, data)
        self.budget = budget
        return self

    def __getitem__(self, key):
        self.budget -= 1
        if self.budget < 0:
            raise AssertionError("the parser keeps reading the same bytes")
        return super().__getitem__(key)


def bounded(hexstr: str) -> Bounded:
    """The bytes ``hexstr`` spells, for the parsers that loop: with a budget of reads no
    parser that moves on needs (a few per byte)."""
    raw = bytes.fromhex(hexstr)
    return Bounded(raw, budget=4 * len(raw) + 4)


def rejected(call, *args) -> None:
    with pytest.raises(ApduError) as err:
        call(*args)
    assert err.value.sw == SW.INCORRECT_PARAMETERS == 0x6A80
    assert str(err.value) == "SW=6A80"


# -- encoding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("tag, raw", [(0x00, "00"), (0x01, "01"), (0x53, "53"), (0xFF, "ff"),
                                      (0x7F49, "7f49"), (0x5FC105, "5fc105"),
                                      (0x5F818203, "5f818203"),
                                      # any number, BER tag or not, in as few bytes as it needs
                                      (0x100, "0100"), (0x10000, "010000"),
                                      (0x1000000, "01000000"), (0xFFFFFFF, "0fffffff")])
def test_encode_tag(tag, raw):
    assert tlv.encode_tag(tag) == bytes.fromhex(raw)


@pytest.mark.parametrize("n, raw", [(0, "00"), (0x7F, "7f"), (0x80, "8180"), (0xFF, "81ff"),
                                    (0x100, "820100"), (0xFFFF, "82ffff"),
                                    (0x10000, "83010000")])
def test_encode_length(n, raw):
    assert tlv.encode_length(n) == bytes.fromhex(raw)


def test_tlv_encodes_tag_length_and_value():
    assert tlv.tlv(0x53) == bytes.fromhex("5300")
    assert tlv.tlv(0x7F49, b"\x01\x02") == bytes.fromhex("7f49020102")
    assert tlv.tlv(0x53, bytes(200)) == bytes.fromhex("5381c8") + bytes(200)


# -- read_header ------------------------------------------------------------------------------
def test_read_header_starts_at_the_beginning_by_default():
    assert tlv.read_header(bytes.fromhex("5301aa")) == (0x53, 1, 2)


def test_read_header_at_an_offset():
    data = bytes.fromhex("0000 7f4903 010203")
    assert tlv.read_header(data, 2) == (0x7F49, 3, 5)
    data = bytes.fromhex("aabbccdd 5fc10500")
    assert tlv.read_header(data, 4) == (0x5FC105, 0, 8)
    data = bytes.fromhex("0102 53820100")
    assert tlv.read_header(data, 2) == (0x53, 0x100, 6)


def test_multi_byte_tags_of_up_to_four_bytes():
    assert tlv.read_header(bytes.fromhex("5f2f01")) == (0x5F2F, 1, 3)
    assert tlv.read_header(bytes.fromhex("5f818203 05")) == (0x5F818203, 5, 5)
    assert tlv.read_header(bytes.fromhex("ff 5f818203 05"), 1) == (0x5F818203, 5, 6)


def test_a_tag_of_five_bytes_is_rejected():
    rejected(tlv.read_header, bytes.fromhex("5f81828304 00"))
    rejected(tlv.read_header, bytes.fromhex("ff 5f81828304 00"), 1)


@pytest.mark.parametrize("data, offset", [
    ("", 0),            # nothing at all
    ("5301", 2),        # offset at the end
    ("53", 0),          # a tag without a length
    ("7f", 0),          # a multi-byte tag cut after its first byte
    ("5f81", 0),        # ... and after a byte that announces another
    ("7f49", 0),        # a complete multi-byte tag without a length
    ("0053", 1),        # a tag without a length at an offset
])
def test_truncated_headers_are_rejected(data, offset):
    rejected(tlv.read_header, bytes.fromhex(data), offset)


@pytest.mark.parametrize("raw, length, end", [
    ("5381 80", 0x80, 3), ("5381 ff", 0xFF, 3), ("5382 0100", 0x100, 4),
    ("5382 ffff", 0xFFFF, 4), ("5383 010000", 0x10000, 5), ("5383 123456", 0x123456, 5),
    ("537f", 0x7F, 2)])
def test_long_form_lengths(raw, length, end):
    assert tlv.read_header(bytes.fromhex(raw) + bytes(4)) == (0x53, length, end)
    assert tlv.read_header(bytes.fromhex(raw)) == (0x53, length, end)


@pytest.mark.parametrize("raw", [
    "5380",                 # a long form of no bytes
    "5384 00000001 00",     # four length bytes: more than an applet can take
    "5385 0000000001 00",
    "5381",                 # long forms cut short
    "5382 01",
    "5383 0100",
    "7f4982 01",
])
def test_bad_or_truncated_long_form_lengths_are_rejected(raw):
    rejected(tlv.read_header, bytes.fromhex(raw))


# -- read_one, unpack -------------------------------------------------------------------------
def test_read_one():
    data = bytes.fromhex("5302aabb 7f4901cc")
    assert tlv.read_one(data) == (0x53, b"\xaa\xbb", 4)
    assert tlv.read_one(data, 4) == (0x7F49, b"\xcc", 8)
    assert tlv.read_one(bytes.fromhex("5300")) == (0x53, b"", 2)


@pytest.mark.parametrize("raw", ["5305 01", "5301", "538180" + "00" * 0x7F, "7f4902 aa"])
def test_read_one_rejects_a_value_cut_short(raw):
    rejected(tlv.read_one, bytes.fromhex(raw))


def test_unpack():
    assert tlv.unpack(0x7C, bytes.fromhex("7c03 800100")) == bytes.fromhex("800100")


def test_unpack_rejects_another_tag_or_trailing_bytes():
    rejected(tlv.unpack, 0x53, bytes.fromhex("5401aa"))          # another tag, nothing after
    rejected(tlv.unpack, 0x53, bytes.fromhex("5301aa 00"))       # the tag, a byte after
    rejected(tlv.unpack, 0x53, bytes.fromhex("5301aa 5300"))


# -- parse, parse_headers, parse_dict ---------------------------------------------------------
def test_parse_reads_every_tlv_once():
    data = bounded("5301aa 7f4900 5c03 5fc105")
    expected = [(0x53, b"\xaa"), (0x7F49, b""), (0x5C, bytes.fromhex("5fc105"))]
    assert tlv.parse(data) == expected


def test_parse_rejects_trailing_garbage():
    rejected(tlv.parse, bounded("5301aa 53"))


def test_parse_headers_reads_every_header_once():
    data = bounded("9103 928180 5f48820100 7f4900")
    expected = [(0x91, 3), (0x92, 0x80), (0x5F48, 0x100), (0x7F49, 0)]
    assert tlv.parse_headers(data) == expected


def test_bounded_bytes_notice_a_parser_that_does_not_move_on():
    """The budget above is no ceiling that could never be reached."""
    data = Bounded(bytes.fromhex("5301aa 5300"), budget=20)
    with pytest.raises(AssertionError, match="keeps reading"):
        while True:
            tlv.read_one(data, 0)


def test_parse_dict():
    assert tlv.parse_dict(bounded("5301aa 5400")) == {0x53: b"\xaa", 0x54: b""}
    assert tlv.parse_dict(bounded("")) == {}


def test_parse_dict_rejects_a_repeated_tag():
    rejected(tlv.parse_dict, bounded("5301aa 5400 5301aa"))
