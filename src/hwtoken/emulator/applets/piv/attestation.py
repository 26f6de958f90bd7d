"""PIV attestation as a YubiKey does it: a key in slot F9 signs certificates for keys
the card generated.

Each virtual key gets its own PKI when PIV is first set up (:mod:`..pki`): a root and the
F9 certificate it issues. An attestation certificate carries Yubico's extensions
(``1.3.6.1.4.1.41482.3``): ``.3`` firmware version (3 bytes), ``.7`` serial number (DER
INTEGER), ``.8`` PIN and touch policy (2 bytes), ``.9`` form factor (1 byte), with the F9
certificate's validity.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from hwtoken.emulator.applets import pki
from hwtoken.emulator.applets.piv.keys import PrivateKey, PublicKey

OID_FIRMWARE = x509.ObjectIdentifier(f"{pki.YUBICO_ARC}.3.3")
OID_SERIAL = x509.ObjectIdentifier(f"{pki.YUBICO_ARC}.3.7")
OID_POLICY = x509.ObjectIdentifier(f"{pki.YUBICO_ARC}.3.8")
OID_FORM_FACTOR = x509.ObjectIdentifier(f"{pki.YUBICO_ARC}.3.9")


def new_authority(serial: int) -> pki.Authority:
    """The PIV attestation PKI of the key with ``serial``: a root and the F9 certificate."""
    return pki.new_authority(f"hwtoken Virtual PIV Root CA {serial}",
                             f"hwtoken Virtual PIV Attestation {serial}")


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
               .add_extension(x509.UnrecognizedExtension(OID_SERIAL, pki.der_integer(serial)),
                              critical=False)
               .add_extension(x509.UnrecognizedExtension(
                   OID_POLICY, bytes([pin_policy, touch_policy])), critical=False)
               .add_extension(x509.UnrecognizedExtension(OID_FORM_FACTOR, bytes([form_factor])),
                              critical=False))
    cert = builder.sign(signer, **pki.sign_args(signer))  # type: ignore[arg-type]
    return cert.public_bytes(Encoding.DER)
