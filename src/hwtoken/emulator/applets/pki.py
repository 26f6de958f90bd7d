"""A virtual key's attestation PKI, as PIV (slot F9) and OpenPGP (key ATT) use it.

A YubiKey leaves the factory with an attestation key and a certificate for it issued by a
Yubico CA; the key then signs certificates for keys it generated. Each virtual key gets
its own small PKI per applet instead: a self-signed root (its private key discarded after
issuing, like a vendor's that never leaves the factory) and the applet's attestation
certificate below it (``CA:TRUE`` and ``keyCertSign``, else OpenSSL rejects the chain).
Both are P-256, valid from a day ago to the end of 2099.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

ORGANIZATION = "hwtoken"
#: Yubico's arc for attestation extensions (``.3`` PIV, ``.5`` OpenPGP)
YUBICO_ARC = "1.3.6.1.4.1.41482"


@dataclass(frozen=True)
class Authority:
    """A new key's attestation PKI: the root certificate, and the attestation key and
    its certificate (issued by the root)."""

    root_cert: bytes  # DER
    key: ec.EllipticCurvePrivateKey
    cert: bytes  # DER


def name(cn: str) -> x509.Name:
    """``O=hwtoken, CN=cn``."""
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=False, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                         decipher_only=False)


def new_authority(root_cn: str, attestation_cn: str) -> Authority:
    """A self-signed root called ``root_cn`` and the attestation certificate
    ``attestation_cn`` it issues (both P-256)."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    not_before = now - datetime.timedelta(days=1)
    not_after = datetime.datetime(2099, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = name(root_cn)
    root = (x509.CertificateBuilder()
            .subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()),
                           critical=False)
            .sign(root_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(name(attestation_cn))
            .issuer_name(root_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    return Authority(root.public_bytes(Encoding.DER), key, cert.public_bytes(Encoding.DER))


def sign_args(key: Any) -> dict[str, Any]:
    """The keyword arguments of ``CertificateBuilder.sign`` for an attestation key."""
    if isinstance(key, rsa.RSAPrivateKey):
        return {"algorithm": hashes.SHA256(), "rsa_padding": padding.PKCS1v15()}
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return {"algorithm": None}
    return {"algorithm": hashes.SHA256()}


def der_integer(value: int) -> bytes:
    """A non-negative INTEGER in DER (the value of Yubico's integer extensions)."""
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # room for a sign bit
    while len(body) > 1 and body[0] == 0 and body[1] < 0x80:
        body = body[1:]
    return bytes([0x02, len(body)]) + body
