"""What a touched slot types: OATH-HOTP codes, Yubico OTPs, static passwords.

Everything here is pure: the counters come in as arguments and the caller persists them.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from hwtoken.emulator.applets.otp.config import Mode, SlotConfig
from hwtoken.emulator.applets.otp.constants import (
    CFG_OATH_FIXED_MODHEX1,
    CFG_OATH_FIXED_MODHEX2,
    Cfg,
    Tkt,
)
from hwtoken.emulator.applets.otp.frames import crc16
from hwtoken.otp import hotp_code

MODHEX_ALPHABET = "cbdefghijklnrtuv"


def modhex(data: bytes) -> str:
    """Modhex encoding (the YubiKey's keyboard-layout-proof hex)."""
    return "".join(MODHEX_ALPHABET[b >> 4] + MODHEX_ALPHABET[b & 0xF] for b in data)


def yubico_ticket(uid: bytes, use_ctr: int, tstp: int, session_ctr: int, rnd: int) -> bytes:
    """The 16-byte plaintext Yubico OTP ticket (with its complemented CRC)."""
    body = (uid[:6].ljust(6, b"\0") + struct.pack("<H", use_ctr & 0xFFFF)
            + struct.pack("<I", tstp & 0xFFFFFF)[:3] + bytes([session_ctr & 0xFF])
            + struct.pack("<H", rnd & 0xFFFF))
    return body + struct.pack("<H", ~crc16(body) & 0xFFFF)


def aes_encrypt_block(key: bytes, block: bytes) -> bytes:
    """AES-128 of one 16-byte block (the ticket encryption)."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - one block
    return enc.update(block) + enc.finalize()


def _wrap(cfg: SlotConfig, first: str, second: str) -> str:
    """Add the TAB/CR decorations the ticket flags ask for around the two parts."""
    out = "\t" if cfg.tkt & Tkt.TAB_FIRST else ""
    out += first
    if first and cfg.tkt & Tkt.APPEND_TAB1:
        out += "\t"
    out += second
    if cfg.tkt & Tkt.APPEND_TAB2:
        out += "\t"
    if cfg.tkt & Tkt.APPEND_CR:
        out += "\n"
    return out


def hotp_text(cfg: SlotConfig, counter: int) -> str:
    """What an OATH-HOTP slot types: [token id] code, with the configured decorations."""
    token = ""
    if cfg.fixed:
        flags = cfg.cfg & (CFG_OATH_FIXED_MODHEX1 | CFG_OATH_FIXED_MODHEX2)
        n_modhex = {0: 0, CFG_OATH_FIXED_MODHEX1: 1, CFG_OATH_FIXED_MODHEX2: 2}.get(
            flags, len(cfg.fixed))
        token = modhex(cfg.fixed[:n_modhex]) + cfg.fixed[n_modhex:].hex()
    return _wrap(cfg, token, hotp_code(cfg.hmac_key, counter, cfg.hotp_digits))


def yubico_otp_text(cfg: SlotConfig, ticket: bytes) -> str:
    """What a Yubico OTP slot types: modhex(public id) + modhex(AES(ticket))."""
    return _wrap(cfg, modhex(cfg.fixed), modhex(aes_encrypt_block(cfg.key, ticket)))


def static_ticket_text(cfg: SlotConfig) -> str:
    """A static ticket: the same encrypted ticket every time (half of it if SHORT_TICKET)."""
    otp = modhex(aes_encrypt_block(cfg.key, yubico_ticket(cfg.uid, 0, 0, 0, 0)))
    if cfg.cfg & Cfg.SHORT_TICKET:
        otp = otp[:16]
    return _wrap(cfg, modhex(cfg.fixed), otp)


def static_password_scancodes(cfg: SlotConfig) -> bytes:
    """Scan-code mode: fixed + uid + key hold HID usage codes (bit 7 = shift), 0 ends."""
    codes = cfg.fixed.ljust(16, b"\0") + cfg.uid + cfg.key
    end = codes.find(b"\0")
    return codes if end < 0 else codes[:end]


def yubico_otp_response(cfg: SlotConfig, challenge: bytes, use_ctr: int, tstp: int,
                        session_ctr: int, rnd: int) -> bytes:
    """Yubico OTP challenge-response: a ticket whose private id is the 6-byte challenge."""
    return aes_encrypt_block(cfg.key, yubico_ticket(challenge[:6], use_ctr, tstp,
                                                    session_ctr, rnd))


__all__ = ["Mode", "modhex", "yubico_ticket", "aes_encrypt_block", "hotp_text",
           "yubico_otp_text", "static_ticket_text", "static_password_scancodes",
           "yubico_otp_response"]
