"""GlobalPlatform secure messaging, card side: what the card OS applies to every applet once
a Security Domain opened a secure channel (SCP03, GPC 2.3 Amendment D; SCP11, Amendment F).

A :class:`SecureChannel` holds one session: the session keys (S-ENC, S-MAC, S-RMAC and, for
key loading, a DEK), the security level, the MAC chaining value and the encryption counter.

* **C-MAC**: the 8-byte MAC ends the command data; it is the AES-CMAC with S-MAC over the
  chaining value, the header (class byte with the secure-messaging bit, INS, P1, P2) and Lc
  (covering the MAC) -- short or extended as the command came, extended when the data is
  longer than 255 bytes (after command chaining), as yubikit computes it -- and the data.
  The full CMAC becomes the next chaining value.
* **C-DECRYPTION**: the data is AES-CBC with S-ENC, ICV = AES(S-ENC, counter), ISO 9797-1
  padding method 2. The counter counts every command of the session (from 1).
* **R-ENCRYPTION / R-MAC**: response data is encrypted with ICV = AES(S-ENC, 80 || counter)
  and followed by AES-CMAC(S-RMAC, chaining value || data || SW1 SW2)[:8]. An error status
  (anything but 9000, 62xx, 63xx) is answered bare.

A command that fails these checks answers ``6982`` and ends the session, as GP requires.
The channel objects are pure logic; the card OS (:mod:`hwtoken.emulator.iso7816`) unwraps
commands and wraps answers, and a :class:`ChannelAuthority` (the Security Domain) opens them.
"""

from __future__ import annotations

import enum
import hmac
import struct
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from hwtoken.emulator.iso7816 import SW, Apdu, ApduError

BLOCK = 16
MAC_LEN = 8
CLA_SECURE_MESSAGING = 0x04
CLA_SM_BITS = 0x0C
CLA_PROPRIETARY = 0x80

# SCP03 data derivation constants (Amendment D 6.2.1)
DERIVE_CARD_CRYPTOGRAM = 0x00
DERIVE_HOST_CRYPTOGRAM = 0x01
DERIVE_S_ENC = 0x04
DERIVE_S_MAC = 0x06
DERIVE_S_RMAC = 0x07

KCV_INPUT = b"\x01" * BLOCK  # AES key check values: the first 3 bytes of AES(key, 01..01)


class Level(enum.IntFlag):
    """Security level (EXTERNAL AUTHENTICATE P1; SCP11's key usage maps onto it)."""

    NONE = 0x00
    C_MAC = 0x01
    C_DECRYPTION = 0x02
    R_MAC = 0x10
    R_ENCRYPTION = 0x20


#: the levels a card accepts: decryption needs a MAC, R-ENC needs C-DEC and R-MAC
VALID_LEVELS = frozenset({0x00, 0x01, 0x03, 0x11, 0x13, 0x33})


def aes_cmac(key: bytes, *parts: bytes) -> bytes:
    """AES-CMAC over the concatenation of ``parts`` (16 bytes)."""
    mac = cmac.CMAC(algorithms.AES(key))
    for part in parts:
        mac.update(part)
    return mac.finalize()


def derive(key: bytes, constant: int, context: bytes, bits: int = 128) -> bytes:
    """SCP03 key derivation: NIST SP 800-108 counter mode with AES-CMAC (Amendment D
    6.2.2): label = 11 zero bytes || constant, separator 00, L (bits), counter 01, context."""
    data = b"\0" * 11 + struct.pack(">BBHB", constant, 0, bits, 1) + context
    return aes_cmac(key, data)[: bits // 8]


def kcv(key: bytes) -> bytes:
    """The 3-byte check value of an AES key."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - one block
    return (enc.update(KCV_INPUT) + enc.finalize())[:3]


def cbc(key: bytes, data: bytes, *, decrypt: bool, iv: bytes = b"\0" * BLOCK) -> bytes:
    """AES-CBC without padding (``data`` must be whole blocks)."""
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    op = cipher.decryptor() if decrypt else cipher.encryptor()
    return op.update(data) + op.finalize()


def pad(data: bytes) -> bytes:
    """ISO/IEC 9797-1 padding method 2: 80, then zeros to a whole block."""
    data += b"\x80"
    return data + b"\0" * (-len(data) % BLOCK)


def unpad(data: bytes) -> bytes | None:
    """Remove method-2 padding; None if it is not there."""
    stripped = data.rstrip(b"\0")
    if not stripped or stripped[-1] != 0x80 or len(data) - len(stripped) >= BLOCK:
        return None
    return stripped[:-1]


def is_protected_status(sw: int) -> bool:
    """True for the status words a secured response carries a MAC for (9000, warnings)."""
    return sw == SW.OK or sw >> 8 in (0x62, 0x63)


@dataclass(frozen=True)
class SessionKeys:
    """Session keys of one secure channel; ``dek`` decrypts keys that PUT KEY sends."""

    enc: bytes
    mac: bytes
    rmac: bytes
    dek: bytes | None = None


def mac_header(apdu: Apdu, length: int) -> bytes:
    """CLA INS P1 P2 Lc as the C-MAC covers them (``length`` includes the MAC)."""
    cla = (apdu.cla & ~0x10) | CLA_SECURE_MESSAGING  # never the chaining bit
    head = bytes([cla, apdu.ins, apdu.p1, apdu.p2])
    if apdu.extended or length > 255:
        return head + b"\0" + struct.pack(">H", length)
    return head + bytes([length])


class SecureChannel:
    """One secure-messaging session, as the card keeps it.

    ``protocol`` names how it was opened (``scp03``, ``scp11a``, ``scp11b``, ``scp11c``);
    ``oce_authenticated`` says whether the host proved a key the card trusts for managing
    the Security Domain (SCP03 and SCP11a do, SCP11b/c do not).
    """

    def __init__(self, protocol: str, keys: SessionKeys, level: int, mac_chain: bytes, *,
                 oce_authenticated: bool) -> None:
        self.protocol = protocol
        self.keys = keys
        self.level = Level(level)
        self.mac_chain = mac_chain
        self.oce_authenticated = oce_authenticated
        self.counter = 1  # of the next command
        self._response_counter = 0  # of the command being answered

    def _icv(self, counter: int, *, response: bool) -> bytes:
        block = bytes([0x80 if response else 0x00]) + counter.to_bytes(BLOCK - 1, "big")
        return cbc(self.keys.enc, block, decrypt=False)

    def unwrap(self, apdu: Apdu) -> Apdu:
        """The plain command inside ``apdu`` (checked and decrypted).

        Raises :class:`ApduError` ``6982`` when the command lacks the protection the level
        asks for or fails its checks; the caller then ends the session.
        """
        wrapped = bool(apdu.cla & CLA_SM_BITS)
        if not self.level & Level.C_MAC:
            if wrapped:
                raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
            return apdu
        if not wrapped or len(apdu.data) < MAC_LEN:
            raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
        body, mac = apdu.data[:-MAC_LEN], apdu.data[-MAC_LEN:]
        full = aes_cmac(self.keys.mac, self.mac_chain, mac_header(apdu, len(apdu.data)), body)
        if not hmac.compare_digest(full[:MAC_LEN], mac):
            raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
        self.mac_chain = full
        self._response_counter = self.counter
        self.counter += 1
        if body and self.level & Level.C_DECRYPTION:
            if len(body) % BLOCK:
                raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
            plain = unpad(cbc(self.keys.enc, body, decrypt=True,
                              iv=self._icv(self._response_counter, response=False)))
            if plain is None:
                raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
            body = plain
        return Apdu(apdu.cla & ~CLA_SM_BITS, apdu.ins, apdu.p1, apdu.p2, body, apdu.ne,
                    apdu.extended)

    def wrap(self, data: bytes, sw: int) -> bytes:
        """The response data of an answer with status ``sw``, encrypted and MACed as the
        level asks (nothing for an error status: it travels bare)."""
        if not is_protected_status(sw):
            return b""
        out = bytes(data)
        if out and self.level & Level.R_ENCRYPTION:
            out = cbc(self.keys.enc, pad(out), decrypt=False,
                      iv=self._icv(self._response_counter, response=True))
        if self.level & Level.R_MAC:
            out += aes_cmac(self.keys.rmac, self.mac_chain, out,
                            struct.pack(">H", sw))[:MAC_LEN]
        return out


class ChannelAuthority(Protocol):
    """What the card OS needs from the applet that opens secure channels (the Security
    Domain): the handshake commands, and the session they opened."""

    channel: SecureChannel | None

    def is_handshake(self, apdu: Apdu) -> bool:
        """True for a command that opens a session (INITIALIZE UPDATE, EXTERNAL/INTERNAL
        AUTHENTICATE, PERFORM SECURITY OPERATION), whichever applet is selected."""

    def handshake(self, apdu: Apdu) -> bytes:
        """Handle one handshake command; on success :attr:`channel` is the new session."""

    def close_channel(self) -> None:
        """End the session (SELECT, reset, a failed check)."""
