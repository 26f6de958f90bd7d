"""`ykman openpgp` against the virtual key as a card in a private pcscd (vpcd)."""

from __future__ import annotations

import pytest
from cryptography import x509
from openpgp_support import ADMIN_PIN, HWTOKEN, PIN, SERIAL
from yubikit.openpgp import KEY_REF, OID, OpenPgpSession

from hwtoken.emulator.applets.openpgp import attestation
from hwtoken.emulator.iso7816 import CardOS
from hwtoken.emulator.transports.card_direct import DirectCardConnection

pytestmark = pytest.mark.system


@pytest.fixture
def keys_on_card(pgp_key):
    """``pgp_key`` with a P-384 SIG and an Ed25519 AUT key generated on it, through yubikit
    in-process before the card is inserted (fast; ykman generates no OpenPGP keys)."""
    session = OpenPgpSession(DirectCardConnection(CardOS(pgp_key)))
    session.verify_admin(ADMIN_PIN)
    public = session.generate_ec_key(KEY_REF.SIG, OID.SECP384R1)
    session.generate_ec_key(KEY_REF.AUT, OID.Ed25519)
    pgp_key.power_cycle()
    return public


def test_ykman_info_and_openpgp_info(card, ykman):
    info = ykman.ok("info")
    assert any(line.split()[:2] == ["OpenPGP", "Enabled"] for line in info.splitlines())
    out = ykman.ok("openpgp", "info")
    assert "OpenPGP version:            3.4" in out
    assert "Application version:        5.7.4" in out
    assert "PIN tries remaining:        3" in out
    assert "Reset code tries remaining: 0" in out
    assert "Require PIN for signature:  Once" in out
    assert "Signature key" not in out  # no keys yet


def test_set_touch_shows_in_info_and_fixed_stays(keys_on_card, card, ykman):
    ykman.ok("openpgp", "keys", "set-touch", "sig", "cached", "-a", ADMIN_PIN, "-f")
    ykman.ok("openpgp", "keys", "set-touch", "aut", "fixed", "-a", ADMIN_PIN, "-f")
    out = ykman.ok("openpgp", "info")
    sig_block = out.split("Signature key:")[1].split("Authentication key:")[0]
    assert "Touch policy: Cached" in sig_block
    assert "Touch policy: On (fixed)" in out.split("Authentication key:")[1]
    r = ykman.run("openpgp", "keys", "set-touch", "aut", "off", "-a", ADMIN_PIN, "-f")
    assert r.returncode != 0 and "FIXED" in r.stderr
    r = ykman.run("openpgp", "keys", "set-touch", "dec", "on", "-a", "wrong-admin", "-f")
    assert r.returncode != 0
    assert "Admin PIN tries remaining:  2" in ykman.ok("openpgp", "info")


def test_attestation_chain_verifies_with_openssl(keys_on_card, card, ykman, pgp_key):
    import subprocess

    ykman.ok("openpgp", "keys", "attest", "-P", PIN, "sig", "sig-attestation.pem")
    ykman.ok("openpgp", "certificates", "export", "att", "att.pem")
    root = subprocess.run([HWTOKEN, "emulate", "show", "pgpcard",
                           "--openpgp-attestation-root"], capture_output=True, text=True,
                          timeout=60, check=True).stdout
    (ykman.home / "root.pem").write_text(root)
    out = subprocess.run(["openssl", "verify", "-CAfile", "root.pem", "-untrusted", "att.pem",
                          "sig-attestation.pem"], cwd=ykman.home, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "sig-attestation.pem: OK", out
    leaf = x509.load_pem_x509_certificate((ykman.home / "sig-attestation.pem").read_bytes())
    assert leaf.public_key() == keys_on_card
    ext = {e.oid: e.value.value for e in leaf.extensions}
    assert ext[attestation.OID_SERIAL] == b"\x02\x04" + SERIAL.to_bytes(4, "big")
    assert ext[attestation.OID_SOURCE] == b"\x02\x01\x01"  # generated on the card
    # the attestation replaced the SIG key's certificate
    exported = ykman.ok("openpgp", "certificates", "export", "sig", "-")
    assert x509.load_pem_x509_certificate(exported.encode()) == leaf
    r = ykman.run("openpgp", "keys", "attest", "-P", "000000", "aut", "aut.pem")
    assert r.returncode != 0 and "Attestation failed" in r.stderr


def test_access_change_pin_and_set_retries(card, ykman):
    ykman.ok("openpgp", "access", "change-pin", "-P", PIN, "-n", "654321")
    r = ykman.run("openpgp", "access", "change-pin", "-P", PIN, "-n", "111111")
    assert r.returncode == 1 and r.stderr == "ERROR: Invalid PIN/PUK, 2 remaining\n"
    ykman.ok("openpgp", "access", "change-pin", "-P", "654321", "-n", "7654321")
    ykman.ok("openpgp", "access", "set-retries", "5", "4", "6", "-a", ADMIN_PIN, "-f")
    out = ykman.ok("openpgp", "info")
    assert "PIN tries remaining:        5" in out
    assert "Reset code tries remaining: 0" in out  # no resetting code is set
    assert "Admin PIN tries remaining:  6" in out
    ykman.ok("openpgp", "access", "change-reset-code", "-a", ADMIN_PIN, "-r", "87654321")
    assert "Reset code tries remaining: 4" in ykman.ok("openpgp", "info")
    ykman.ok("openpgp", "access", "unblock-pin", "-r", "87654321", "-n", "135790")
    ykman.ok("openpgp", "access", "change-pin", "-P", "135790", "-n", PIN)


def test_reset_asks_and_keeps_the_attestation_key(keys_on_card, card, ykman):
    r = ykman.run("openpgp", "reset", input="")  # stdin is no terminal: no answer, no reset
    assert r.returncode != 0 and "Aborted" in r.stderr
    assert "Signature key" in ykman.ok("openpgp", "info")
    att = ykman.ok("openpgp", "certificates", "export", "att", "-")
    out = ykman.ok("openpgp", "reset", "-f")
    assert "Reset complete" in out
    info = ykman.ok("openpgp", "info")
    assert "Signature key" not in info and "PIN tries remaining:        3" in info
    assert ykman.ok("openpgp", "certificates", "export", "att", "-") == att
    ykman.ok("openpgp", "access", "change-pin", "-P", PIN, "-n", "246810")
