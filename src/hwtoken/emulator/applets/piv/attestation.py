"""PIV attestation as a YubiKey does it: a key in slot F9 signs certificates for keys
the card generated.

Each virtual key gets its own small PKI when PIV is first set up: a self-signed root (its
private key discarded after issuing, like a vendor's that never leaves the factory) and
the F9 intermediate (``CA:TRUE`` and ``keyCertSign``, else OpenSSL rejects the chain). An
attestation certificate carries Yubico's extensions (``1.3.6.1.4.1.41482.3``): ``.3``
firmware version (3 bytes), ``.7`` serial number (DER INTEGER), ``.8`` PIN and touch
policy (2 bytes), ``.9`` form factor (1 byte), with the F9 certificate's validity.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from hwtoken.emulator.applets.piv.keys import PrivateKey, PublicKey

OID_FIRMWARE = x509.ObjectIdentifier("1.3.6.1.4.1.41482.3.3")
OID_SERIAL = x509.ObjectIdentifier("1.3.6.1.4.1.41482.3.7")
OID_POLICY = x509.ObjectIdentifier("1.3.6.1.4.1.41482.3.8")
OID_FORM_FACTOR = x509.ObjectIdentifier("1.3.6.1.4.1.41482.3.9")

ORGANIZATION = "hwtoken"


@dataclass(frozen=True)
class Authority:
    """A new key's attestation PKI: the root certificate, and the F9 key and certificate."""

    root_cert: bytes  # DER
    f9_key: ec.EllipticCurvePrivateKey
    f9_cert: bytes  # DER


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=False, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                         decipher_only=False)


def new_authority(serial: int, application: str = "PIV") -> Authority:
    """A self-signed root and the F9 intermediate it issues (both P-256); ``application``
    names them (the Security Domain's SCP authority is made the same way)."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    not_before = now - datetime.timedelta(days=1)
    not_after = datetime.datetime(2099, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"hwtoken Virtual {application} Root CA {serial}")
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
    f9_key = ec.generate_private_key(ec.SECP256R1())
    f9 = (x509.CertificateBuilder()
          .subject_name(_name(f"hwtoken Virtual {application} Attestation {serial}"))
          .issuer_name(root_name)
          .public_key(f9_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(not_before).not_valid_after(not_after)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_ca_usage(), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(f9_key.public_key()),
                         critical=False)
          .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
              root_key.public_key()), critical=False)
          .sign(root_key, hashes.SHA256()))
    return Authority(root.public_bytes(Encoding.DER), f9_key, f9.public_bytes(Encoding.DER))


def _sign_args(key: PrivateKey) -> dict[str, object]:
    if isinstance(key, rsa.RSAPrivateKey):
        return {"algorithm": hashes.SHA256(), "rsa_padding": padding.PKCS1v15()}
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return {"algorithm": None}
    return {"algorithm": hashes.SHA256()}


def attest(*, signer: PrivateKey, signer_cert: bytes, public_key: PublicKey, slot: int,
           serial: int, version: tuple[int, int, int], pin_policy: int, touch_policy: int,
           form_factor: int) -> bytes:
    """The attestation certificate (DER) for the generated key ``public_key`` in ``slot``,
    issued by the F9 key ``signer`` whose certificate is ``signer_cert``."""
    issuer = x509.load_der_x509_certificate(signer_cert)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(
                   NameOID.COMMON_NAME, f"YubiKey PIV Attestation {slot:02x}")]))
               .issuer_name(issuer.subject)
               .public_key(public_key)  # type: ignore[arg-type]
               .serial_number(x509.random_serial_number())
               .not_valid_before(issuer.not_valid_before_utc)
               .not_valid_after(issuer.not_valid_after_utc)
               .add_extension(x509.UnrecognizedExtension(OID_FIRMWARE, bytes(version)),
                              critical=False)
               .add_extension(x509.UnrecognizedExtension(OID_SERIAL, _der_integer(serial)),
                              critical=False)
               .add_extension(x509.UnrecognizedExtension(
                   OID_POLICY, bytes([pin_policy, touch_policy])), critical=False)
               .add_extension(x509.UnrecognizedExtension(OID_FORM_FACTOR, bytes([form_factor])),
                              critical=False))
    cert = builder.sign(signer, **_sign_args(signer))  # type: ignore[arg-type]
    return cert.public_bytes(Encoding.DER)


def _der_integer(value: int) -> bytes:
    """A non-negative INTEGER in DER (the serial number extension's value)."""
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # room for a sign bit
    while len(body) > 1 and body[0] == 0 and body[1] < 0x80:
        body = body[1:]
    return bytes([0x02, len(body)]) + body
