"""OpenSC against the virtual key as a PIV card in a private pcscd: opensc-tool,
pkcs11-tool through opensc-pkcs11.so (signatures checked by openssl), and OpenSSL's
pkcs11 engine signing a certificate with the card's key."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from piv_support import OPENSC_PKCS11, PIN, provision
from yubikit.piv import KEY_TYPE, SLOT

pytestmark = pytest.mark.system

PKCS11_TOOL = ("pkcs11-tool", "--module", OPENSC_PKCS11)


@pytest.fixture
def provisioned(piv_key, programs):
    """9a: P-256 (PIN once), 9c: RSA-2048 (PIN always), both with certificates."""
    for slot, key_type, name in ((SLOT.AUTHENTICATION, KEY_TYPE.ECCP256, "9a"),
                                 (SLOT.SIGNATURE, KEY_TYPE.RSA2048, "9c")):
        public = provision(piv_key, slot, key_type, f"CN=opensc {name}")
        (programs.home / f"{name}.pub.pem").write_bytes(
            public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return piv_key


def test_opensc_tool_names_a_piv_card(card, programs):
    r = programs.run("opensc-tool", "-n")
    assert r.returncode == 0 and r.stdout.strip() == "Personal Identity Verification Card"


def test_pkcs11_objects_and_signatures_verified_by_openssl(provisioned, card, programs):
    listing = programs.ok(*PKCS11_TOOL, "-O")
    assert "subject:    DN: CN=opensc 9a" in listing
    assert "subject:    DN: CN=opensc 9c" in listing
    assert "Public Key Object; RSA 2048 bits" in listing
    (programs.home / "data.txt").write_bytes(b"signed by a virtual PIV card\n")
    programs.ok(*PKCS11_TOOL, "--login", "--pin", PIN, "--sign", "--id", "01",
                "-m", "ECDSA-SHA256", "--signature-format", "openssl",
                "-i", "data.txt", "-o", "ecdsa.sig")
    assert "Verified OK" in programs.ok("openssl", "dgst", "-sha256", "-verify", "9a.pub.pem",
                                        "-signature", "ecdsa.sig", "data.txt")
    # 9c needs the PIN right before each use: OpenSC logs in again (context-specific)
    programs.ok(*PKCS11_TOOL, "--login", "--pin", PIN, "--sign", "--id", "02",
                "-m", "SHA256-RSA-PKCS", "-i", "data.txt", "-o", "rsa.sig")
    assert "Verified OK" in programs.ok("openssl", "dgst", "-sha256", "-verify", "9c.pub.pem",
                                        "-signature", "rsa.sig", "data.txt")
    r = programs.run(*PKCS11_TOOL, "--login", "--pin", "000000", "--sign", "--id", "01",
                     "-m", "ECDSA-SHA256", "-i", "data.txt", "-o", "bad.sig")
    assert r.returncode != 0 and "CKR_PIN_INCORRECT" in r.stderr


def test_pkcs11_tool_test_suite(provisioned, card, programs):
    out = programs.ok(*PKCS11_TOOL, "--login", "--pin", PIN, "--test")
    assert "RSA-PKCS: OK" in out and "SHA256-RSA-PKCS: OK" in out
    assert "RSA-PKCS-OAEP" in out  # decryption through the card's raw RSA
    assert "FAILED" not in out.upper().replace("C_GENERATERANDOM FAILED", "")


def test_openssl_pkcs11_engine_signs_a_certificate(provisioned, card, programs):
    programs.ok("openssl", "req", "-new", "-x509", "-engine", "pkcs11", "-keyform", "engine",
                "-key", f"pkcs11:object=PIV AUTH key;type=private;pin-value={PIN}",
                "-subj", "/CN=engine", "-days", "7", "-sha256", "-out", "engine.pem",
                env={"PKCS11_MODULE_PATH": OPENSC_PKCS11})
    cert = x509.load_pem_x509_certificate((programs.home / "engine.pem").read_bytes())
    assert cert.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo) \
        == (programs.home / "9a.pub.pem").read_bytes()
    assert programs.ok("openssl", "verify", "-CAfile", "engine.pem", "engine.pem").strip() \
        == "engine.pem: OK"
