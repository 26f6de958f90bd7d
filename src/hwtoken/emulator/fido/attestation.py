"""Attestation for the virtual key: a P-256 attestation key and its certificate chain.

A new key gets its own small "batch" PKI: a self-signed CA certificate and an attestation
certificate issued by it that meets the packed attestation requirements of WebAuthn
(§8.2.1: C, O, OU="Authenticator Attestation", CN; basic constraints CA:false; the FIDO
AAGUID extension 1.3.6.1.4.1.45724.1.1.4, non-critical) plus the U2F transports
extension 1.3.6.1.4.1.45724.2.1.1. The same key and certificate serve U2F registration.

Everything lives in the key's ``fido`` store section under ``"attestation"``:
``{"key": PKCS#8 DER, "chain": [attestation cert DER, CA cert DER]}``. The CA private key
is discarded after issuing, like a vendor's batch key that never leaves the factory.
"""

from __future__ import annotations

import datetime
import weakref
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.key import VirtualKey

SECTION = "fido"
FIELD = "attestation"

OID_AAGUID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
OID_U2F_TRANSPORTS = x509.ObjectIdentifier("1.3.6.1.4.1.45724.2.1.1")
# BIT STRING with bit 2 (USB) set: 5 unused bits, 0b0010_0000.
U2F_TRANSPORTS_USB = bytes([0x03, 0x02, 0x05, 0x20])

ORGANIZATION = "hwtoken"
COUNTRY = "SE"

_cache: weakref.WeakKeyDictionary[Any, ec.EllipticCurvePrivateKey] = (
    weakref.WeakKeyDictionary()
)


def _name(cn: str, ou: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, COUNTRY),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def generate_attestation(aaguid: bytes, serial: int) -> tuple[bytes, list[bytes]]:
    """A new attestation key (PKCS#8 DER) and chain ``[leaf DER, CA DER]`` for ``aaguid``."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    not_before = now - datetime.timedelta(days=1)
    not_after = datetime.datetime(2099, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"hwtoken Virtual Key CA {serial}", "Virtual Key Batch CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    att_key = ec.generate_private_key(ec.SECP256R1())
    att_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"hwtoken Virtual Key Attestation {serial}",
                            "Authenticator Attestation"))
        .issuer_name(ca_name)
        .public_key(att_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.UnrecognizedExtension(OID_AAGUID, bytes([0x04, 0x10]) + aaguid),
                       critical=False)
        .add_extension(x509.UnrecognizedExtension(OID_U2F_TRANSPORTS, U2F_TRANSPORTS_USB),
                       critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_der = att_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_der, [
        att_cert.public_bytes(serialization.Encoding.DER),
        ca_cert.public_bytes(serialization.Encoding.DER),
    ]


def ensure_attestation(key: VirtualKey) -> None:
    """Give ``key`` an attestation key and chain if it has none yet (does not commit)."""
    section = key.store.section(SECTION)
    if FIELD not in section:
        key_der, chain = generate_attestation(key.aaguid, key.serial)
        section[FIELD] = {"key": key_der, "chain": chain}


def attestation_key(key: VirtualKey) -> ec.EllipticCurvePrivateKey:
    """The P-256 private key that signs ``key``'s attestation statements."""
    cached = _cache.get(key)
    if cached is None:
        ensure_attestation(key)
        der = bytes(key.store.section(SECTION)[FIELD]["key"])
        loaded = serialization.load_der_private_key(der, password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):  # pragma: no cover
            raise ValueError("attestation key is not an EC key")
        cached = _cache[key] = loaded
    return cached


def attestation_chain(key: VirtualKey) -> list[bytes]:
    """The x5c chain, leaf first: ``[attestation cert DER, CA cert DER]``."""
    ensure_attestation(key)
    return [bytes(c) for c in key.store.section(SECTION)[FIELD]["chain"]]


def attestation_certificate(key: VirtualKey) -> bytes:
    """The attestation certificate (DER), as U2F REGISTER returns it."""
    return attestation_chain(key)[0]


def attestation_root(key: VirtualKey) -> bytes:
    """The CA certificate (DER) a relying party can trust for this key."""
    return attestation_chain(key)[-1]


def sign(key: VirtualKey, data: bytes) -> bytes:
    """An ES256 (DER ECDSA/SHA-256) signature over ``data`` with the attestation key."""
    return attestation_key(key).sign(data, ec.ECDSA(hashes.SHA256()))
