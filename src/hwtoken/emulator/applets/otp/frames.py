"""CRC-16 (ISO 13239), the 70-byte frame and its split into 8-byte feature reports.

A host sends a frame as up to ten feature reports of 7 data bytes plus a byte carrying
``SLOT_WRITE_FLAG | seq``; all-zero reports other than the first and last may be skipped.
The frame is ``payload[64] slot[1] crc[2, little-endian] filler[3]``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hwtoken.emulator.applets.otp.constants import (
    CRC_OK_RESIDUAL,
    FEATURE_RPT_DATA_SIZE,
    FRAME_SIZE,
    SLOT_DATA_SIZE,
)


class FrameError(ValueError):
    """A frame (or config) failed its length or CRC check."""


def crc16(data: bytes) -> int:
    """CRC-16/ISO-13239 as YubiKeys compute it (init 0xFFFF, poly 0x8408, no final xor)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            lsb = crc & 1
            crc >>= 1
            if lsb:
                crc ^= 0x8408
    return crc


def check_crc(data: bytes) -> bool:
    """True if ``data`` ends with its own complemented CRC (the residual check)."""
    return crc16(data) == CRC_OK_RESIDUAL


def append_crc(data: bytes) -> bytes:
    """``data`` followed by its complemented CRC, little-endian (how responses are sent)."""
    return data + struct.pack("<H", ~crc16(data) & 0xFFFF)


@dataclass(frozen=True)
class Frame:
    """A decoded 70-byte frame: the command (``slot`` byte) and its 64-byte payload."""

    command: int
    payload: bytes

    @classmethod
    def parse(cls, raw: bytes) -> Frame:
        """Decode 70 bytes; :class:`FrameError` if the size or the payload CRC is wrong."""
        if len(raw) != FRAME_SIZE:
            raise FrameError(f"frame must be {FRAME_SIZE} bytes, got {len(raw)}")
        payload = bytes(raw[:SLOT_DATA_SIZE])
        command = raw[SLOT_DATA_SIZE]
        (crc,) = struct.unpack_from("<H", raw, SLOT_DATA_SIZE + 1)
        if crc != crc16(payload):
            raise FrameError("frame CRC mismatch")
        return cls(command, payload)

    def to_bytes(self) -> bytes:
        """The 70-byte wire form."""
        payload = self.payload.ljust(SLOT_DATA_SIZE, b"\0")
        return payload + struct.pack("<BH", self.command, crc16(payload)) + b"\0\0\0"


def response_reports(data: bytes) -> list[bytes]:
    """Split a response (already carrying its CRC) into 7-byte chunks, zero padded."""
    chunks = []
    for i in range(0, len(data), FEATURE_RPT_DATA_SIZE):
        chunks.append(data[i:i + FEATURE_RPT_DATA_SIZE].ljust(FEATURE_RPT_DATA_SIZE, b"\0"))
    return chunks
