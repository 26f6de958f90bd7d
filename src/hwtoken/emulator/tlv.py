"""BER-TLV as the smart-card applets (PIV, OpenPGP) use it: multi-byte tags (``7F49``,
``5F2F``), lengths up to 3 bytes.

Parsing is strict, because command data comes from the host: anything malformed raises
:class:`~hwtoken.emulator.iso7816.ApduError` with ``6A80`` (incorrect data).
"""

from __future__ import annotations

from hwtoken.emulator.iso7816 import SW, ApduError


def encode_tag(tag: int) -> bytes:
    """A tag number as its bytes (``0x7F49`` -> ``7F 49``)."""
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, value: bytes = b"") -> bytes:
    """One TLV."""
    return encode_tag(tag) + encode_length(len(value)) + bytes(value)


def read_header(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """The tag and length at ``offset``: (tag, length, offset of the value)."""
    n = len(data)
    i = offset
    if i >= n:
        raise ApduError(SW.INCORRECT_PARAMETERS)
    tag = data[i]
    i += 1
    if tag & 0x1F == 0x1F:  # multi-byte tag: more bytes while bit 8 is set
        while True:
            if i >= n or i - offset > 3:
                raise ApduError(SW.INCORRECT_PARAMETERS)
            tag = (tag << 8) | data[i]
            i += 1
            if not data[i - 1] & 0x80:
                break
    if i >= n:
        raise ApduError(SW.INCORRECT_PARAMETERS)
    ln = data[i]
    i += 1
    if ln & 0x80:
        k = ln & 0x7F
        if not 1 <= k <= 3 or i + k > n:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        ln = int.from_bytes(data[i:i + k], "big")
        i += k
    return tag, ln, i


def read_one(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """The TLV at ``offset``: (tag, value, offset after it)."""
    tag, ln, i = read_header(data, offset)
    if i + ln > len(data):
        raise ApduError(SW.INCORRECT_PARAMETERS)
    return tag, bytes(data[i:i + ln]), i + ln


def parse_headers(data: bytes) -> list[tuple[int, int]]:
    """A list of tags and lengths without values (OpenPGP's private key template
    ``7F48``): every (tag, length) in ``data``."""
    out = []
    i = 0
    while i < len(data):
        tag, ln, i = read_header(data, i)
        out.append((tag, ln))
    return out


def parse(data: bytes) -> list[tuple[int, bytes]]:
    """Every TLV in ``data`` (which must hold nothing else)."""
    out = []
    i = 0
    while i < len(data):
        tag, value, i = read_one(data, i)
        out.append((tag, value))
    return out


def parse_dict(data: bytes) -> dict[int, bytes]:
    """TLVs by tag; a repeated tag is malformed."""
    items = parse(data)
    result = dict(items)
    if len(result) != len(items):
        raise ApduError(SW.INCORRECT_PARAMETERS)
    return result


def unpack(tag: int, data: bytes) -> bytes:
    """The value of the single TLV ``data`` holds, which must carry ``tag``."""
    got, value, end = read_one(data)
    if got != tag or end != len(data):
        raise ApduError(SW.INCORRECT_PARAMETERS)
    return value
