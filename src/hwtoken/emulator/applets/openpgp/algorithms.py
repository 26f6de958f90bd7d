"""Algorithm attributes (DOs C1-C3, DA): which key type each slot holds, as OpenPGP card
3.4 encodes it, and the list a YubiKey 5.7 accepts (DO FA, algorithm information).

RSA is ``01 | n bits (2) | e bits (2) | import format``; ECC is ``algorithm id | curve OID``
(without the OID's tag and length), optionally followed by an import format byte (00, or
FF: the import carries the public key too), which is accepted and dropped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric import ec

from hwtoken.emulator.applets.openpgp.constants import ATT, DEC, SLOTS, KeySlot
from hwtoken.emulator.iso7816 import SW, ApduError

ALGO_RSA = 0x01
ALGO_ECDH = 0x12
ALGO_ECDSA = 0x13
ALGO_EDDSA = 0x16
RSA_SIZES = (2048, 3072, 4096)
RSA_E_BITS = 17  # what the card announces (65537 needs 17 bits)
RSA_FORMAT_STANDARD = 0  # e, p, q


def oid_body(dotted: str) -> bytes:
    """The DER content octets of an OBJECT IDENTIFIER."""
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for value in parts[2:]:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


@dataclass(frozen=True)
class Curve:
    """An elliptic curve the card knows: its OID and the size of a scalar, in bytes."""

    name: str
    oid: bytes
    size: int
    #: ``ec`` (short Weierstrass: ECDSA/ECDH), ``ed25519`` (EdDSA), ``x25519`` (ECDH)
    kind: str

    def ec_curve(self) -> ec.EllipticCurve:
        return _EC_CURVES[self.name]()


_EC_CURVES = {
    "secp256r1": ec.SECP256R1, "secp256k1": ec.SECP256K1, "secp384r1": ec.SECP384R1,
    "secp521r1": ec.SECP521R1, "brainpoolP256r1": ec.BrainpoolP256R1,
    "brainpoolP384r1": ec.BrainpoolP384R1, "brainpoolP512r1": ec.BrainpoolP512R1,
}
SECP256R1 = Curve("secp256r1", oid_body("1.2.840.10045.3.1.7"), 32, "ec")
SECP256K1 = Curve("secp256k1", oid_body("1.3.132.0.10"), 32, "ec")
SECP384R1 = Curve("secp384r1", oid_body("1.3.132.0.34"), 48, "ec")
SECP521R1 = Curve("secp521r1", oid_body("1.3.132.0.35"), 66, "ec")
BRAINPOOL_P256R1 = Curve("brainpoolP256r1", oid_body("1.3.36.3.3.2.8.1.1.7"), 32, "ec")
BRAINPOOL_P384R1 = Curve("brainpoolP384r1", oid_body("1.3.36.3.3.2.8.1.1.11"), 48, "ec")
BRAINPOOL_P512R1 = Curve("brainpoolP512r1", oid_body("1.3.36.3.3.2.8.1.1.13"), 64, "ec")
WEIERSTRASS = (SECP256R1, SECP256K1, SECP384R1, SECP521R1, BRAINPOOL_P256R1, BRAINPOOL_P384R1,
               BRAINPOOL_P512R1)
ED25519 = Curve("ed25519", oid_body("1.3.6.1.4.1.11591.15.1"), 32, "ed25519")
X25519 = Curve("x25519", oid_body("1.3.6.1.4.1.3029.1.5.1"), 32, "x25519")
CURVES = (*WEIERSTRASS, ED25519, X25519)
_CURVE_BY_OID = {c.oid: c for c in CURVES}


@dataclass(frozen=True)
class Attributes:
    """One slot's key type: RSA of ``rsa_bits`` or ``algorithm`` on ``curve``."""

    algorithm: int
    rsa_bits: int = 0
    e_bits: int = RSA_E_BITS
    curve: Curve | None = None

    @classmethod
    def rsa(cls, bits: int) -> Attributes:
        return cls(ALGO_RSA, bits)

    @classmethod
    def ecc(cls, algorithm: int, curve: Curve) -> Attributes:
        return cls(algorithm, curve=curve)

    @property
    def is_rsa(self) -> bool:
        return self.algorithm == ALGO_RSA

    @property
    def byte_len(self) -> int:
        """The length of an RSA modulus, or of a scalar on the curve."""
        if self.curve is None:
            return self.rsa_bits // 8
        return self.curve.size

    def __bytes__(self) -> bytes:
        if self.curve is None:
            return struct.pack(">BHHB", ALGO_RSA, self.rsa_bits, self.e_bits,
                               RSA_FORMAT_STANDARD)
        return bytes([self.algorithm]) + self.curve.oid

    @classmethod
    def parse(cls, data: bytes) -> Attributes:
        """Attributes a host PUTs; anything this card cannot hold raises ``6A80``."""
        if not data:
            raise ApduError(SW.WRONG_LENGTH)
        if data[0] == ALGO_RSA:
            if len(data) not in (5, 6):
                raise ApduError(SW.INCORRECT_PARAMETERS)
            bits, e_bits = struct.unpack(">HH", data[1:5])
            fmt = data[5] if len(data) == 6 else RSA_FORMAT_STANDARD
            # gpg asks for e of 32 bits when it turns an ECC slot into RSA
            if bits not in RSA_SIZES or not RSA_E_BITS <= e_bits <= 32 \
                    or fmt != RSA_FORMAT_STANDARD:
                raise ApduError(SW.INCORRECT_PARAMETERS)
            return cls(ALGO_RSA, bits, e_bits)
        if data[0] not in (ALGO_ECDH, ALGO_ECDSA, ALGO_EDDSA):
            raise ApduError(SW.INCORRECT_PARAMETERS)
        oid = data[1:]
        curve = _CURVE_BY_OID.get(oid)
        if curve is None and oid[-1:] in (b"\x00", b"\xff"):  # an import format byte
            curve = _CURVE_BY_OID.get(oid[:-1])
        if curve is None:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        return cls(data[0], curve=curve)

    @property
    def key_type(self) -> Attributes:
        """The key type alone (an RSA exponent's announced size aside)."""
        return replace(self, e_bits=RSA_E_BITS)

    def fits(self, slot: KeySlot) -> bool:
        """Whether ``slot`` may hold a key of this type (on a YubiKey 5.7)."""
        return self.key_type in supported(slot)


def supported(slot: KeySlot) -> tuple[Attributes, ...]:
    """What the card accepts for ``slot``, in algorithm information's order: RSA, then
    ECDSA (signing slots) or ECDH (decryption) on each curve, then the 25519 curve."""
    rsa = tuple(Attributes.rsa(bits) for bits in RSA_SIZES)
    if slot is DEC:
        return (*rsa, *(Attributes.ecc(ALGO_ECDH, c) for c in WEIERSTRASS),
                Attributes.ecc(ALGO_ECDH, X25519))
    ecdsa = tuple(Attributes.ecc(ALGO_ECDSA, c) for c in WEIERSTRASS)
    if slot is ATT:
        return (*rsa, *ecdsa)
    return (*rsa, *ecdsa, Attributes.ecc(ALGO_EDDSA, ED25519))


def default() -> Attributes:
    """A new or reset card's attributes for SIG, DEC and AUT: RSA 2048."""
    return Attributes.rsa(2048)


def algorithm_information() -> list[tuple[int, bytes]]:
    """DO FA's entries: (attributes DO of a slot, attributes) for every choice."""
    return [(slot.attributes_do, bytes(a)) for slot in SLOTS for a in supported(slot)]
