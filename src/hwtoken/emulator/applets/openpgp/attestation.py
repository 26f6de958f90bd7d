"""OpenPGP attestation as a YubiKey 5 does it: the ATT key signs a certificate for a key
the card generated (Yubico's GET ATTESTATION, ``80 FB``), which then takes the place of
that key's cardholder certificate.

Each virtual key gets its own PKI when OpenPGP is first set up (:mod:`..pki`): a root and
the ATT certificate (DO ``FC``) it issues. An attestation certificate carries Yubico's
OpenPGP extensions (``1.3.6.1.4.1.41482.5``): ``.1`` cardholder name (UTF8String),
``.2`` key source (INTEGER, 1 = generated), ``.3`` firmware version (3 bytes), ``.4`` the
key's fingerprint (20 bytes), ``.5`` its generation time (4 bytes), ``.6`` the signature
counter (INTEGER, SIG key only), ``.7`` serial number (INTEGER), ``.8`` its touch policy
(1 byte), ``.9`` form factor (1 byte), with the ATT certificate's validity.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from hwtoken.emulator.applets import pki
from hwtoken.emulator.applets.openpgp.keys import PrivateKey, PublicKey

ARC = f"{pki.YUBICO_ARC}.5"
OID_CARDHOLDER_NAME = x509.ObjectIdentifier(f"{ARC}.1")
OID_SOURCE = x509.ObjectIdentifier(f"{ARC}.2")
OID_FIRMWARE = x509.ObjectIdentifier(f"{ARC}.3")
OID_FINGERPRINT = x509.ObjectIdentifier(f"{ARC}.4")
OID_GENERATION_TIME = x509.ObjectIdentifier(f"{ARC}.5")
OID_SIGNATURE_COUNTER = x509.ObjectIdentifier(f"{ARC}.6")
OID_SERIAL = x509.ObjectIdentifier(f"{ARC}.7")
OID_UIF = x509.ObjectIdentifier(f"{ARC}.8")
OID_FORM_FACTOR = x509.ObjectIdentifier(f"{ARC}.9")
SOURCE_GENERATED = 1


def new_authority(serial: int) -> pki.Authority:
    """The OpenPGP attestation PKI of the key with ``serial``: a root and the ATT
    certificate."""
    return pki.new_authority(f"hwtoken Virtual OpenPGP Root CA {serial}",
                             f"hwtoken Virtual OpenPGP Attestation {serial}")


@dataclass(frozen=True)
class Attested:
    """What an attestation certificate states about a key and the card it is on."""

    slot: str  # "SIG", "DEC", "AUT"
    public_key: PublicKey
    cardholder_name: bytes
    fingerprint: bytes
    generated_at: int
    signature_counter: int | None  # for the SIG key only
    uif: int
    serial: int
    version: tuple[int, int, int]
    form_factor: int


def _utf8_string(raw: bytes) -> bytes:
    text = raw.decode("utf-8", "replace").encode()
    return bytes([0x0C]) + _der_length(len(text)) + text


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def attest(*, signer: PrivateKey, signer_cert: bytes, what: Attested) -> bytes:
    """The attestation certificate (DER) for ``what``, issued by the ATT key ``signer``
    whose certificate is ``signer_cert``."""
    issuer = x509.load_der_x509_certificate(signer_cert)
    extensions: list[tuple[x509.ObjectIdentifier, bytes]] = [
        (OID_CARDHOLDER_NAME, _utf8_string(what.cardholder_name)),
        (OID_SOURCE, pki.der_integer(SOURCE_GENERATED)),
        (OID_FIRMWARE, bytes(what.version)),
        (OID_FINGERPRINT, what.fingerprint),
        (OID_GENERATION_TIME, what.generated_at.to_bytes(4, "big")),
    ]
    if what.signature_counter is not None:
        extensions.append((OID_SIGNATURE_COUNTER, pki.der_integer(what.signature_counter)))
    extensions += [(OID_SERIAL, pki.der_integer(what.serial)),
                   (OID_UIF, bytes([what.uif])),
                   (OID_FORM_FACTOR, bytes([what.form_factor]))]
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(
                   NameOID.COMMON_NAME, f"YubiKey OPGP Attestation {what.slot}")]))
               .issuer_name(issuer.subject)
               .public_key(what.public_key)  # type: ignore[arg-type]
               .serial_number(x509.random_serial_number())
               .not_valid_before(issuer.not_valid_before_utc)
               .not_valid_after(issuer.not_valid_after_utc))
    for oid, value in extensions:
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
    cert = builder.sign(signer, **pki.sign_args(signer))  # type: ignore[arg-type]
    return cert.public_bytes(Encoding.DER)
