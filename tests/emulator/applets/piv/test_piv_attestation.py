"""PIV attestation: root -> F9 -> attestation certificate, checked by OpenSSL, with
Yubico's extensions parsed."""

from __future__ import annotations

import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from yubikit.piv import DEFAULT_MANAGEMENT_KEY, KEY_TYPE, PIN_POLICY, SLOT, TOUCH_POLICY, PivSession

from hwtoken.emulator.applets.piv.attestation import (
    OID_FIRMWARE,
    OID_FORM_FACTOR,
    OID_POLICY,
    OID_SERIAL,
)
from hwtoken.emulator.iso7816 import CardOS
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.transports.card_direct import DirectCardConnection


@pytest.fixture
def key(tmp_path):
    k = VirtualKey.create(tmp_path / "k.key", serial=12345678)
    yield k
    k.close()


def _pem(path, cert: x509.Certificate) -> str:
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    return str(path)


def _der_int(value: bytes) -> int:
    assert value[0] == 0x02 and value[1] == len(value) - 2
    return int.from_bytes(value[2:], "big", signed=True)


@pytest.mark.parametrize("key_type", [KEY_TYPE.ECCP256, KEY_TYPE.RSA2048, KEY_TYPE.ED25519,
                                      KEY_TYPE.X25519], ids=str)
def test_openssl_verifies_the_chain_and_extensions_parse(key, tmp_path, key_type):
    s = PivSession(DirectCardConnection(CardOS(key)))
    s.authenticate(DEFAULT_MANAGEMENT_KEY)
    s.generate_key(SLOT.SIGNATURE, key_type, PIN_POLICY.ONCE, TOUCH_POLICY.CACHED)
    leaf = s.attest_key(SLOT.SIGNATURE)
    f9 = s.get_certificate(SLOT.ATTESTATION)
    root = x509.load_der_x509_certificate(key.piv.attestation_root)
    leaf.verify_directly_issued_by(f9)
    f9.verify_directly_issued_by(root)
    assert f9.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert f9.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    r = subprocess.run(["openssl", "verify", "-CAfile", _pem(tmp_path / "root.pem", root),
                        "-untrusted", _pem(tmp_path / "f9.pem", f9),
                        _pem(tmp_path / "leaf.pem", leaf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip().endswith(": OK"), r.stderr
    ext = {e.oid: e.value.value for e in leaf.extensions}
    assert ext[OID_FIRMWARE] == bytes([5, 7, 4])
    assert _der_int(ext[OID_SERIAL]) == 12345678
    assert ext[OID_POLICY] == bytes([PIN_POLICY.ONCE, TOUCH_POLICY.CACHED])
    assert ext[OID_FORM_FACTOR] == b"\x01"
    assert leaf.subject.rfc4514_string() == "CN=YubiKey PIV Attestation 9c"
    assert leaf.issuer == f9.subject
    assert f9.subject.rfc4514_string() == "CN=hwtoken Virtual PIV Attestation 12345678,O=hwtoken"
    assert root.subject.rfc4514_string() == "CN=hwtoken Virtual PIV Root CA 12345678,O=hwtoken"
    # the F9 certificate's validity, as a YubiKey's attestations have (not "now")
    assert leaf.not_valid_before_utc == f9.not_valid_before_utc
    assert leaf.not_valid_after_utc == f9.not_valid_after_utc
    assert [e.critical for e in leaf.extensions] == [False] * 4
    # OpenSSL's own parse finds the same values
    lines = subprocess.run(["openssl", "asn1parse", "-in", str(tmp_path / "leaf.pem")],
                           capture_output=True, text=True, timeout=30).stdout.splitlines()
    dumps = {line.split(":")[-1]: nxt.split("[HEX DUMP]:")[-1]
             for line, nxt in zip(lines, lines[1:]) if "41482.3." in line}
    assert dumps == {"1.3.6.1.4.1.41482.3.3": "050704",
                     "1.3.6.1.4.1.41482.3.7": "020400BC614E",
                     "1.3.6.1.4.1.41482.3.8": "0203",
                     "1.3.6.1.4.1.41482.3.9": "01"}


def test_serial_extension_is_a_positive_der_integer(tmp_path):
    for serial in (1, 127, 128, 255, 2**31, 2**32 - 1):
        with VirtualKey.create(tmp_path / f"{serial}.key", serial=serial) as k:
            s = PivSession(DirectCardConnection(CardOS(k)))
            s.authenticate(DEFAULT_MANAGEMENT_KEY)
            s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256)
            leaf = s.attest_key(SLOT.AUTHENTICATION)
            assert _der_int(leaf.extensions.get_extension_for_oid(OID_SERIAL).value.value) \
                == serial


def test_an_imported_attestation_key_signs_from_then_on(key, tmp_path):
    """Replacing F9 (key and certificate), as an organisation with its own CA does."""
    import datetime

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa

    ca_key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Org PIV attestation")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(datetime.datetime(2024, 1, 1))
          .not_valid_after(datetime.datetime(2040, 1, 1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    s = PivSession(DirectCardConnection(CardOS(key)))
    s.authenticate(DEFAULT_MANAGEMENT_KEY)
    s.put_key(SLOT.ATTESTATION, ca_key)
    s.put_certificate(SLOT.ATTESTATION, ca)
    s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP384)
    leaf = s.attest_key(SLOT.AUTHENTICATION)
    leaf.verify_directly_issued_by(ca)
    assert leaf.issuer == ca.subject
    assert leaf.not_valid_before_utc == datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    assert leaf.not_valid_after_utc == ca.not_valid_after_utc
