"""Minimal PNG writing and reading for 8-bit greyscale images (zlib only, no Pillow).

Enough for the fob's screenshots: :func:`encode` writes what :func:`decode` reads back
(and what any viewer shows); :func:`decode` also accepts other 8-bit greyscale PNGs
without interlacing.
"""

from __future__ import annotations

import struct
import zlib

from hwtoken.errors import InvalidInput

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode(rows: list[bytes]) -> bytes:
    """A PNG of ``rows`` (each a bytes of grey levels 0..255, all the same length)."""
    height = len(rows)
    width = len(rows[0]) if rows else 0
    if not width or any(len(r) != width for r in rows):
        raise ValueError("rows must be non-empty and of equal length")
    raw = b"".join(b"\x00" + bytes(r) for r in rows)  # filter type 0 on every row
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b""))


def _unfilter(kind: int, line: bytearray, prev: bytes) -> None:
    for i in range(len(line)):
        a = line[i - 1] if i else 0
        b = prev[i]
        c = prev[i - 1] if i else 0
        if kind == 1:
            line[i] = (line[i] + a) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + b) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (a + b) // 2) & 0xFF
        elif kind == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            line[i] = (line[i] + pred) & 0xFF
        elif kind != 0:
            raise InvalidInput(f"PNG: unknown filter type {kind}")


def decode(data: bytes) -> list[bytes]:
    """The rows of an 8-bit greyscale, non-interlaced PNG (:class:`InvalidInput` otherwise)."""
    try:
        return _decode(data)
    except (struct.error, zlib.error, ValueError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput(f"not a valid PNG: {exc}") from None


def _decode(data: bytes) -> list[bytes]:
    if not data.startswith(_SIGNATURE):
        raise InvalidInput("not a PNG file")
    pos = len(_SIGNATURE)
    idat = b""
    width = height = 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if (depth, colour, interlace) != (8, 0, 0):
                raise InvalidInput("PNG: only 8-bit greyscale without interlacing is supported")
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if not width or not height or width * height > 1 << 24:
        raise InvalidInput("PNG: missing or implausible IHDR")
    # never inflate more than the image needs (a small file can inflate to gigabytes)
    raw = zlib.decompressobj().decompress(idat, height * (width + 1))
    if len(raw) < height * (width + 1):
        raise InvalidInput("PNG: image data is truncated")
    rows: list[bytes] = []
    prev = bytes(width)
    for y in range(height):
        start = y * (width + 1)
        line = bytearray(raw[start + 1:start + 1 + width])
        _unfilter(raw[start], line, prev)
        rows.append(bytes(line))
        prev = bytes(line)
    return rows
