"""The authenticator side of PIN/UV auth protocols 1 and 2 (CTAP 2.1 §6.5.6, §6.5.7)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hwtoken.emulator.applets.fido.ctap2.errors import ERR, Ctap2Error


class PinProtocolV1:
    """PIN/UV auth protocol one: SHA-256 KDF, AES-256-CBC zero IV, HMAC truncated to 16."""

    VERSION = 1
    SIG_LEN = 16

    def __init__(self) -> None:
        self._sk = ec.generate_private_key(ec.SECP256R1())

    def regenerate(self) -> None:
        """New key-agreement key pair (power-up, after a wrong PIN)."""
        self._sk = ec.generate_private_key(ec.SECP256R1())

    def key_agreement(self) -> dict[int, Any]:
        """The authenticator's public key as a COSE_Key (alg -25, ECDH-ES+HKDF-256)."""
        pn = self._sk.public_key().public_numbers()
        return {1: 2, 3: -25, -1: 1, -2: pn.x.to_bytes(32, "big"), -3: pn.y.to_bytes(32, "big")}

    def shared_secret(self, peer: Any) -> bytes:
        """ECDH with the platform's COSE_Key, then the protocol's KDF."""
        if not isinstance(peer, dict):
            raise Ctap2Error(ERR.CBOR_UNEXPECTED_TYPE)
        x, y = peer.get(-2), peer.get(-3)
        if peer.get(1) != 2 or peer.get(-1) != 1 or not isinstance(x, bytes) \
                or not isinstance(y, bytes) or len(x) != 32 or len(y) != 32:
            raise Ctap2Error(ERR.INVALID_PARAMETER)
        try:
            pub = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
            ).public_key()
            z = self._sk.exchange(ec.ECDH(), pub)
        except ValueError:
            raise Ctap2Error(ERR.INVALID_PARAMETER) from None
        return self.kdf(z)

    def kdf(self, z: bytes) -> bytes:
        return hashlib.sha256(z).digest()

    def encrypt(self, key: bytes, plaintext: bytes) -> bytes:
        enc = Cipher(algorithms.AES(key[-32:]), modes.CBC(bytes(16))).encryptor()
        return enc.update(plaintext) + enc.finalize()

    def decrypt(self, key: bytes, ciphertext: bytes) -> bytes:
        if not ciphertext or len(ciphertext) % 16:
            raise Ctap2Error(ERR.INVALID_PARAMETER)
        dec = Cipher(algorithms.AES(key[-32:]), modes.CBC(bytes(16))).decryptor()
        return dec.update(ciphertext) + dec.finalize()

    def authenticate(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key[:32], message, hashlib.sha256).digest()[: self.SIG_LEN]

    def verify(self, key: bytes, message: bytes, signature: Any) -> bool:
        """Constant-time check of ``signature`` (wrong length or type: False)."""
        if not isinstance(signature, bytes) or len(signature) != self.SIG_LEN:
            return False
        return hmac.compare_digest(self.authenticate(key, message), signature)


class PinProtocolV2(PinProtocolV1):
    """PIN/UV auth protocol two: HKDF keys, AES-256-CBC random IV, full HMAC-SHA-256."""

    VERSION = 2
    SIG_LEN = 32

    def kdf(self, z: bytes) -> bytes:
        def hkdf(info: bytes) -> bytes:
            return HKDF(hashes.SHA256(), 32, bytes(32), info).derive(z)

        return hkdf(b"CTAP2 HMAC key") + hkdf(b"CTAP2 AES key")

    def encrypt(self, key: bytes, plaintext: bytes) -> bytes:
        iv = secrets.token_bytes(16)
        enc = Cipher(algorithms.AES(key[-32:]), modes.CBC(iv)).encryptor()
        return iv + enc.update(plaintext) + enc.finalize()

    def decrypt(self, key: bytes, ciphertext: bytes) -> bytes:
        if len(ciphertext) < 32 or len(ciphertext) % 16:
            raise Ctap2Error(ERR.INVALID_PARAMETER)
        dec = Cipher(algorithms.AES(key[-32:]), modes.CBC(ciphertext[:16])).decryptor()
        return dec.update(ciphertext[16:]) + dec.finalize()


PROTOCOLS: tuple[type[PinProtocolV1], ...] = (PinProtocolV2, PinProtocolV1)
