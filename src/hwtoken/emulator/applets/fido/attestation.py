"""Attestation for the virtual key: a P-256 attestation key and its certificate chain.

A new key gets its own small "batch" PKI: a self-signed CA certificate and an attestation
certificate issued by it that meets the packed attestation requirements of WebAuthn
(§8.2.1: C, O, OU="Authenticator Attestation", CN; basic constraints CA:false; the FIDO
AAGUID extension 1.3.6.1.4.1.45724.1.1.4, non-critical) plus the U2F transports
extension 1.3.6.1.4.1.45724.2.1.1. The same key and certificate serve U2F registration.

Everything lives in the key's ``fido`` store section under ``"attestation"``:
``{"key": PKCS#8 DER, "chain": [attestation cert DER, CA cert DER]}``. The CA private key
is discarded after issuing, like a vendor's batch key that never leaves the factory.

Keys whose profile offers enterprise attestation (CTAP 2.1 §7.1) also get an *enterprise*
attestation key and certificate from the same CA, under ``"enterprise"``: its subject
carries the key's serial number, so it identifies this very authenticator, which is what
an enterprise RP asks for and an ordinary (batch) attestation must never reveal.
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
    from hwtoken.emulator.context import KeyContext

SECTION = "fido"
FIELD = "attestation"
ENTERPRISE = "enterprise"

OID_AAGUID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
OID_U2F_TRANSPORTS = x509.ObjectIdentifier("1.3.6.1.4.1.45724.2.1.1")
# BIT STRING with bit 2 (USB) set: 5 unused bits, 0b0010_0000.
U2F_TRANSPORTS_USB = bytes([0x03, 0x02, 0x05, 0x20])

ORGANIZATION = "hwtoken"
COUNTRY = "SE"

_cache: weakref.WeakKeyDictionary[Any, dict[bool, ec.EllipticCurvePrivateKey]] = (
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
    made = _generate(aaguid, serial, enterprise=False)
    return made["key"], made["chain"]


def _generate(aaguid: bytes, serial: int, *, enterprise: bool) -> dict[str, Any]:
    """``{"key", "chain"}`` for a new batch CA's attestation certificate, with
    ``{"enterprise": {"key", "chain"}}`` from the same CA if asked."""
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

    def leaf(subject: x509.Name) -> tuple[bytes, bytes]:
        return _issue(subject, aaguid, ca_name, ca_key, not_before, not_after)

    key_der, cert_der = leaf(_name(f"hwtoken Virtual Key Attestation {serial}",
                                   "Authenticator Attestation"))
    ca_der = ca_cert.public_bytes(serialization.Encoding.DER)
    made: dict[str, Any] = {"key": key_der, "chain": [cert_der, ca_der]}
    if enterprise:
        ent_subject = x509.Name([
            *_name(f"hwtoken Virtual Key Enterprise Attestation {serial}",
                   "Authenticator Attestation"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, str(serial))])
        ent_key, ent_cert = leaf(ent_subject)
        made[ENTERPRISE] = {"key": ent_key, "chain": [ent_cert, ca_der]}
    return made


def _issue(subject: x509.Name, aaguid: bytes, ca_name: x509.Name,
           ca_key: ec.EllipticCurvePrivateKey, not_before: datetime.datetime,
           not_after: datetime.datetime) -> tuple[bytes, bytes]:
    """A new P-256 attestation key and its certificate from the batch CA (both DER)."""
    att_key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(att_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if any(aaguid):  # a U2F-only model has no AAGUID, and its certificate names none
        builder = builder.add_extension(
            x509.UnrecognizedExtension(OID_AAGUID, bytes([0x04, 0x10]) + aaguid),
            critical=False)
    att_cert = (
        builder
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
    return key_der, att_cert.public_bytes(serialization.Encoding.DER)


def ensure_attestation(key: KeyContext) -> None:
    """Give ``key`` an attestation key and chain if it has none yet (and the enterprise
    ones if its profile offers enterprise attestation). Does not commit: a new key is
    committed by its creator, and :func:`_entry` commits what it adds to an older one."""
    section = key.store.section(SECTION)
    want_enterprise = bool(getattr(key.profile, "enterprise_attestation", False))
    if FIELD not in section:
        section[FIELD] = _generate(key.aaguid, key.serial, enterprise=want_enterprise)
    elif want_enterprise and ENTERPRISE not in section[FIELD]:
        made = _generate(key.aaguid, key.serial, enterprise=True)
        section[FIELD][ENTERPRISE] = made[ENTERPRISE]


def _entry(key: KeyContext, enterprise: bool) -> dict[str, Any]:
    section = key.store.section(SECTION)
    stored = section.get(FIELD)
    if stored is None or (enterprise and ENTERPRISE not in stored):
        ensure_attestation(key)
        key.store.commit()  # made now: keep it, or the next load would make another
        stored = section[FIELD]
    if enterprise:
        if ENTERPRISE not in stored:
            raise ValueError("this key's profile has no enterprise attestation")
        return dict(stored[ENTERPRISE])
    return dict(stored)


def attestation_key(key: KeyContext, *, enterprise: bool = False,
                    ) -> ec.EllipticCurvePrivateKey:
    """The P-256 private key that signs ``key``'s (enterprise) attestation statements."""
    cached = _cache.get(key)
    if cached is None:
        cached = _cache[key] = {}
    loaded = cached.get(enterprise)
    if loaded is None:
        der = bytes(_entry(key, enterprise)["key"])
        loaded_key = serialization.load_der_private_key(der, password=None)
        if not isinstance(loaded_key, ec.EllipticCurvePrivateKey):  # pragma: no cover
            raise ValueError("attestation key is not an EC key")
        loaded = cached[enterprise] = loaded_key
    return loaded


def attestation_chain(key: KeyContext, *, enterprise: bool = False) -> list[bytes]:
    """The x5c chain, leaf first: ``[attestation cert DER, CA cert DER]``."""
    return [bytes(c) for c in _entry(key, enterprise)["chain"]]


def attestation_certificate(key: KeyContext, *, enterprise: bool = False) -> bytes:
    """The attestation certificate (DER), as U2F REGISTER returns it."""
    return attestation_chain(key, enterprise=enterprise)[0]


def attestation_root(key: KeyContext) -> bytes:
    """The CA certificate (DER) a relying party can trust for this key."""
    return attestation_chain(key)[-1]


def sign(key: KeyContext, data: bytes, *, enterprise: bool = False) -> bytes:
    """An ES256 (DER ECDSA/SHA-256) signature over ``data`` with the attestation key."""
    return attestation_key(key, enterprise=enterprise).sign(data, ec.ECDSA(hashes.SHA256()))
