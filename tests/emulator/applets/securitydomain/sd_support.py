"""Helpers for the Security Domain tests: a key's card OS through yubikit, and an OCE's
certificate authority (CA-KLOC, KA-KLOC, the OCE's key agreement certificate)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from yubikit.core import TRANSPORT

from hwtoken.emulator.iso7816 import CardOS
from hwtoken.emulator.transports.card_direct import DirectCardConnection


def connect(key, transport: str = "usb") -> DirectCardConnection:
    """yubikit's connection to a new card OS of ``key`` (strict: an applet bug raises)."""
    card = CardOS(key, strict=True, transport=transport)
    return DirectCardConnection(card, TRANSPORT.USB if transport == "usb" else TRANSPORT.NFC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=False, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=not ca,
                         key_cert_sign=ca, crl_sign=False, encipher_only=False,
                         decipher_only=False)


def _cert(subject: str, public, issuer: str, signer, *, ca: bool, serial: int):
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
            .public_key(public).serial_number(serial)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(_usage(ca=ca), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(signer, hashes.SHA256()))


@dataclass
class Oce:
    """An off-card entity: its CA (whose public key the card keeps as CA-KLOC), an
    intermediate, and its own key agreement key and certificate."""

    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    ka: x509.Certificate
    sk: ec.EllipticCurvePrivateKey
    leaf: x509.Certificate

    @property
    def chain(self) -> list[x509.Certificate]:
        """What the OCE sends, leaf last (the CA itself stays home)."""
        return [self.ka, self.leaf]

    @property
    def ski(self) -> bytes:
        return self.ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def make_oce(first_serial: int = 1000) -> Oce:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ka_key = ec.generate_private_key(ec.SECP256R1())
    sk = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("CA-KLOC", ca_key.public_key(), "CA-KLOC", ca_key, ca=True, serial=first_serial)
    ka = _cert("KA-KLOC", ka_key.public_key(), "CA-KLOC", ca_key, ca=True,
               serial=first_serial + 1)
    leaf = _cert("OCE ECKA", sk.public_key(), "KA-KLOC", ka_key, ca=False,
                 serial=first_serial + 2)
    return Oce(ca_key, ca, ka, sk, leaf)
