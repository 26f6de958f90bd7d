"""Session keys for a YubiHSM 2 session, computed from a stored credential.

* **Symmetric** (AES-128, SCP03 as the YubiHSM 2 speaks it): the context is host challenge
  || HSM challenge (16 bytes); S-ENC = KDF(K-ENC, 04), S-MAC = KDF(K-MAC, 06),
  S-RMAC = KDF(K-MAC, 07) with the SCP03 KDF. A card cryptogram, when given, must equal
  KDF(S-MAC, 00, 64 bits).
* **Asymmetric** (EC P-256, the YubiHSM 2's SCP11-like handshake): the YubiKey is the host
  ("OCE"). GET CHALLENGE gave the HSM an ephemeral public key EPK-OCE; the context is
  EPK-OCE || EPK-HSM (130 bytes). With ShSee = ECDH(ESK-OCE, EPK-HSM) and
  ShSss = ECDH(SK-OCE, PK-HSM), X9.63 KDF (SHA-256, shared info 3C 88 10) gives 4 keys:
  the first checks the HSM's receipt, CMAC(EPK-HSM || EPK-OCE); the rest are the session
  keys.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hwtoken.emulator.iso7816 import SW, ApduError
from hwtoken.emulator.scp import (
    DERIVE_CARD_CRYPTOGRAM,
    DERIVE_S_ENC,
    DERIVE_S_MAC,
    DERIVE_S_RMAC,
    aes_cmac,
    derive,
)

SYMMETRIC_CONTEXT_LEN = 16
CARD_CRYPTOGRAM_LEN = 8
POINT_LEN = 65  # uncompressed P-256 point
RECEIPT_LEN = 16
SHARED_INFO = bytes([0x3C, 0x88, 0x10])  # key usage, AES, 16-byte keys


def symmetric(key_enc: bytes, key_mac: bytes, context: bytes,
              card_cryptogram: bytes | None) -> bytes:
    """S-ENC || S-MAC || S-RMAC; ``6A80`` for a context of the wrong size, ``6984`` for a
    card cryptogram that does not match."""
    if len(context) != SYMMETRIC_CONTEXT_LEN:
        raise ApduError(SW.INCORRECT_PARAMETERS)
    s_mac = derive(key_mac, DERIVE_S_MAC, context)
    if card_cryptogram is not None:
        if len(card_cryptogram) != CARD_CRYPTOGRAM_LEN:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        expected = derive(s_mac, DERIVE_CARD_CRYPTOGRAM, context, 64)
        if not hmac.compare_digest(expected, card_cryptogram):
            raise ApduError(SW.DATA_INVALID)
    return derive(key_enc, DERIVE_S_ENC, context) + s_mac + derive(key_mac, DERIVE_S_RMAC,
                                                                      context)


def public_point(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The uncompressed point of ``key``'s public key."""
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def load_point(point: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from host bytes (``6A80`` if it is not one)."""
    if len(point) != POINT_LEN:
        raise ApduError(SW.INCORRECT_PARAMETERS)
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise ApduError(SW.INCORRECT_PARAMETERS) from None


def private_key(scalar: bytes) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from its 32-byte scalar (``6A80`` if out of range)."""
    try:
        return ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())
    except ValueError:
        raise ApduError(SW.INCORRECT_PARAMETERS) from None


def asymmetric(sk_oce: bytes, esk_oce: ec.EllipticCurvePrivateKey, context: bytes,
               pk_hsm: bytes, receipt: bytes) -> bytes:
    """S-ENC || S-MAC || S-RMAC of an asymmetric credential (its private scalar ``sk_oce``)
    after the HSM answered the ephemeral key ``esk_oce``.

    ``6985`` if the context does not start with that ephemeral key, ``6A80`` for malformed
    input, ``6984`` if the HSM's receipt does not verify.
    """
    if len(context) != 2 * POINT_LEN or len(receipt) != RECEIPT_LEN:
        raise ApduError(SW.INCORRECT_PARAMETERS)
    epk_oce, epk_hsm = context[:POINT_LEN], context[POINT_LEN:]
    if not hmac.compare_digest(epk_oce, public_point(esk_oce)):
        raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
    shsee = esk_oce.exchange(ec.ECDH(), load_point(epk_hsm))
    shsss = private_key(sk_oce).exchange(ec.ECDH(), load_point(pk_hsm))
    keys = X963KDF(hashes.SHA256(), 4 * 16, SHARED_INFO).derive(shsee + shsss)
    if not hmac.compare_digest(aes_cmac(keys[:16], epk_hsm, epk_oce), receipt):
        raise ApduError(SW.DATA_INVALID)
    return keys[16:]
