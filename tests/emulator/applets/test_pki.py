"""The attestation PKI every virtual key gets (PIV slot F9, OpenPGP ATT): the extensions
OpenSSL checks a chain by, Yubico's DER integers, and the signing arguments per key type."""

from __future__ import annotations

import datetime
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from hwtoken.emulator.applets import pki


def test_root_and_attestation_certificates_may_sign_certificates_and_crls_only():
    authority = pki.new_authority("root", "attestation")
    for der in (authority.root_cert, authority.cert):
        ext = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.KeyUsage)
        # keyCertSign and cRLSign: BIT STRING 0x06 with one unused bit, and nothing else
        assert ext.critical and ext.value.public_bytes().hex() == "03020106"


def test_the_authority_is_valid_from_a_day_ago_in_utc(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # a local clock nine hours ahead of UTC
    time.tzset()
    try:
        _valid_from_a_day_ago()
    finally:
        monkeypatch.undo()
        time.tzset()


def _valid_from_a_day_ago() -> None:
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    cert = x509.load_der_x509_certificate(pki.new_authority("r", "a").cert)
    after = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    assert before - day <= cert.not_valid_before_utc <= after - day
    assert cert.not_valid_after_utc == datetime.datetime(2099, 12, 31, 23, 59, 59,
                                                         tzinfo=datetime.UTC)


@pytest.mark.parametrize(("value", "der"), [
    (0, "020100"), (1, "020101"), (0x7F, "02017f"), (0x80, "02020080"), (0xFF, "020200ff"),
    (0x100, "02020100"), (0x7FFF, "02027fff"), (0x8000, "0203008000"),
    (0x10000, "0203010000"), (2**64, "0209010000000000000000")])
def test_der_integers_are_minimal_with_room_for_the_sign(value, der):
    assert pki.der_integer(value).hex() == der


@pytest.mark.parametrize(("key", "expected"), [
    (ed25519.Ed25519PrivateKey.generate(), {"algorithm": None}),
    (ed448.Ed448PrivateKey.generate(), {"algorithm": None}),
])
def test_eddsa_keys_sign_without_a_hash(key, expected):
    assert pki.sign_args(key) == expected


def test_rsa_signs_pkcs1_with_sha256_and_ecdsa_with_sha256():
    rsa_args = pki.sign_args(rsa.generate_private_key(65537, 2048))
    assert sorted(rsa_args) == ["algorithm", "rsa_padding"]
    assert isinstance(rsa_args["algorithm"], hashes.SHA256)
    assert isinstance(rsa_args["rsa_padding"], padding.PKCS1v15)
    ec_args = pki.sign_args(ec.generate_private_key(ec.SECP256R1()))
    assert list(ec_args) == ["algorithm"] and isinstance(ec_args["algorithm"], hashes.SHA256)
