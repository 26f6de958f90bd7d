"""Yubico OTP, as a validation server reads it: modhex, public IDs, and a typed OTP checked
against the AES key and private ID it was programmed with.

A Yubico OTP is the key's public ID (modhex, 12 characters here) followed by 32 modhex
characters: a 16-byte ticket encrypted with AES-128 (ECB, one block). The ticket holds the
private ID (6 bytes), the use counter (2, little-endian), a timestamp (3), the session
counter (1), a random number (2) and a CRC-16 (ISO 13239) over the whole ticket, which
leaves the residue 0xF0B8.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

MODHEX = "cbdefghijklnrtuv"
PRIVATE_ID_SIZE = 6
AES_KEY_SIZE = 16
SECRET_SIZE = PRIVATE_ID_SIZE + AES_KEY_SIZE  # what the inventory seals for a Yubico OTP slot
PUBLIC_ID_SIZE = 6
CRC_RESIDUE = 0xF0B8


def modhex_encode(data: bytes) -> str:
    return "".join(MODHEX[b >> 4] + MODHEX[b & 0xF] for b in data)


def modhex_decode(text: str) -> bytes:
    """Modhex -> bytes; ValueError if ``text`` is not modhex of whole bytes."""
    text = text.lower()
    if len(text) % 2 or any(c not in MODHEX for c in text):
        raise ValueError("not modhex")
    return bytes(MODHEX.index(text[i]) << 4 | MODHEX.index(text[i + 1])
                 for i in range(0, len(text), 2))


def serial_public_id(serial: int) -> str:
    """The public ID ykman's ``--serial-public-id`` gives a key: ``ff 00`` and the serial
    as 4 bytes big-endian, in modhex (``vvcc`` + 8 characters)."""
    if not 0 <= serial < 1 << 32:
        raise ValueError("a serial public ID needs a serial of 4 bytes")
    return modhex_encode(b"\xff\x00" + serial.to_bytes(4, "big"))


def random_public_id() -> str:
    """A random public ID in the ``vv`` range (first byte 0xFF), which Yubico keeps free of
    the IDs it programs at the factory (``cc``)."""
    return modhex_encode(b"\xff" + secrets.token_bytes(PUBLIC_ID_SIZE - 1))


def crc16(data: bytes) -> int:
    """CRC-16 ISO 13239 as YubiKeys compute it (initial 0xFFFF, polynomial 0x8408)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


@dataclass(frozen=True)
class Ticket:
    """A decrypted Yubico OTP whose CRC checked."""

    public_id: str
    private_id: bytes
    use_counter: int
    session_counter: int
    timestamp: int


def decrypt(otp: str, aes_key: bytes) -> Ticket | None:
    """The ticket in ``otp`` decrypted with ``aes_key``; None if ``otp`` is not a Yubico
    OTP or its CRC does not check (another key, or typing garbled it)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    otp = otp.strip().lower()
    if len(otp) < 32:
        return None
    try:
        block = modhex_decode(otp[-32:])
        modhex_decode(otp[:-32])
    except ValueError:
        return None
    decryptor = Cipher(algorithms.AES(aes_key), modes.ECB()).decryptor()  # noqa: S305 - the format
    ticket = decryptor.update(block) + decryptor.finalize()
    if crc16(ticket) != CRC_RESIDUE:
        return None
    return Ticket(public_id=otp[:-32], private_id=ticket[:6],
                  use_counter=int.from_bytes(ticket[6:8], "little"),
                  session_counter=ticket[11], timestamp=int.from_bytes(ticket[8:11], "little"))


def matches(otp: str, public_id: str, secret: bytes) -> bool:
    """True if ``otp`` was typed by a slot holding ``secret`` (private ID + AES key) under
    ``public_id``."""
    if len(secret) != SECRET_SIZE:
        return False
    ticket = decrypt(otp, secret[PRIVATE_ID_SIZE:])
    return (ticket is not None and ticket.public_id == public_id.lower()
            and hmac.compare_digest(ticket.private_id, secret[:PRIVATE_ID_SIZE]))
