"""Strict decoding of CTAP2 request CBOR (the bytes come from an untrusted host).

``fido2.cbor.decode`` is written for trusted authenticator responses: it silently
truncates short byte strings and reads any simple value as a boolean. A key must reject
such input with ``CTAP2_ERR_INVALID_CBOR``, so requests are decoded here; responses are
encoded with ``fido2.cbor.encode`` (canonical CTAP2 CBOR).

Only the CTAP2 subset is accepted: unsigned/negative integers, byte and text strings,
arrays, maps, ``true``/``false`` (and ``null``, read as None); definite lengths only,
nesting limited to :data:`MAX_DEPTH`. Anything else raises :class:`CborError`.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 8


class CborError(ValueError):
    """The bytes are not well-formed CTAP2 CBOR."""


def _head(data: bytes, pos: int) -> tuple[int, int, int]:
    """(major type, argument, new position)."""
    try:
        ib = data[pos]
    except IndexError:
        raise CborError("truncated") from None
    mt, ai = ib >> 5, ib & 0x1F
    pos += 1
    if ai < 24:
        return mt, ai, pos
    if ai > 27:
        raise CborError("indefinite length or reserved additional information")
    n = 1 << (ai - 24)
    end = pos + n
    if end > len(data):
        raise CborError("truncated")
    return mt, int.from_bytes(data[pos:end], "big"), end


def _item(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise CborError("nested too deeply")
    mt, arg, pos = _head(data, pos)
    if mt == 0:
        return arg, pos
    if mt == 1:
        return -1 - arg, pos
    if mt in (2, 3):
        end = pos + arg
        if end > len(data):
            raise CborError("truncated string")
        raw = data[pos:end]
        if mt == 2:
            return bytes(raw), end
        try:
            return raw.decode("utf-8"), end
        except UnicodeDecodeError:
            raise CborError("text string is not UTF-8") from None
    if mt == 4:
        if arg > len(data) - pos:
            raise CborError("truncated array")
        items = []
        for _ in range(arg):
            value, pos = _item(data, pos, depth + 1)
            items.append(value)
        return items, pos
    if mt == 5:
        if arg * 2 > len(data) - pos:
            raise CborError("truncated map")
        out: dict[Any, Any] = {}
        for _ in range(arg):
            k, pos = _item(data, pos, depth + 1)
            if type(k) not in (int, str):
                raise CborError("map key must be an integer or a string")
            if k in out:
                raise CborError("duplicate map key")
            v, pos = _item(data, pos, depth + 1)
            out[k] = v
        return out, pos
    if mt == 7:
        if arg == 20:
            return False, pos
        if arg == 21:
            return True, pos
        if arg == 22:
            return None, pos
        raise CborError("unsupported simple value or float")
    raise CborError("tags are not allowed")


def decode(data: bytes) -> Any:
    """Decode exactly one CBOR item from ``data`` (trailing bytes are an error)."""
    data = bytes(data)
    value, pos = _item(data, 0, 0)
    if pos != len(data):
        raise CborError("trailing data after the CBOR item")
    return value
