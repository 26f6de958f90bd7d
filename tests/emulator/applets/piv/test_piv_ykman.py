"""`ykman piv` against the virtual key as a card in a private pcscd (vpcd)."""

from __future__ import annotations

import pytest
from cryptography import x509
from piv_support import HWTOKEN, MGMT, PIN, PUK

from hwtoken.emulator.applets.piv.attestation import OID_FIRMWARE, OID_POLICY, OID_SERIAL

pytestmark = pytest.mark.system


def test_info_and_ykman_sees_piv(card, programs):
    r = programs.ykman("info")
    assert r.returncode == 0, r.stderr
    assert any(line.split()[:2] == ["PIV", "Enabled"] for line in r.stdout.splitlines())
    r = programs.ykman("piv", "info")
    assert r.returncode == 0, r.stderr
    assert "PIV version:              5.7.4" in r.stdout
    assert "PIN tries remaining:      3/3" in r.stdout
    assert "Management key algorithm: AES192" in r.stdout


def test_generate_certificates_move_delete(card, programs):
    for slot, algorithm, cn in (("9a", "ECCP256", "alice"), ("9c", "RSA2048", "signer"),
                                ("9d", "ED25519", "edwards")):
        programs.ykman_ok("piv", "keys", "generate", "-a", algorithm, "-m", MGMT, slot,
                          f"{slot}.pem")
        programs.ykman_ok("piv", "certificates", "generate", "-m", MGMT, "-P", PIN,
                          "-s", f"CN={cn}", slot, f"{slot}.pem")
    info = programs.ykman("piv", "info").stdout
    for slot, algorithm, cn in (("9A", "ECCP256", "alice"), ("9C", "RSA2048", "signer"),
                                ("9D", "ED25519", "edwards")):
        block = info.split(f"Slot {slot}")[1].split("\n\n")[0]
        assert f"Private key type: {algorithm}" in block and f"Subject DN:       CN={cn}" in block
    keys_info = programs.ykman("piv", "keys", "info", "9c").stdout
    assert "PIN required for use:   ALWAYS" in keys_info and "GENERATED" in keys_info
    programs.ykman_ok("piv", "keys", "move", "-m", MGMT, "9a", "82")
    assert "ECCP256" in programs.ykman("piv", "keys", "info", "82").stdout
    r = programs.ykman("piv", "keys", "info", "9a")
    assert r.returncode != 0 and "No key stored" in r.stderr
    r = programs.ykman("piv", "keys", "move", "-m", MGMT, "82", "9c")
    assert r.returncode != 0 and "DEST slot is not empty" in r.stderr
    programs.ykman_ok("piv", "keys", "delete", "-m", MGMT, "82")
    r = programs.ykman("piv", "keys", "delete", "-m", MGMT, "82")
    assert r.returncode != 0 and "No key stored in slot" in r.stderr


def test_pin_puk_unblock_and_reset(card, programs, piv_key):
    programs.ykman_ok("piv", "access", "change-pin", "-P", PIN, "-n", "135790")
    programs.ykman_ok("piv", "access", "change-puk", "-p", PUK, "-n", "24681357")
    for _ in range(3):
        r = programs.ykman("piv", "access", "change-pin", "-P", "000000", "-n", "111111")
        assert r.returncode != 0
    assert "PIN is blocked" in programs.ykman("piv", "access", "change-pin", "-P", "135790",
                                              "-n", "111111").stderr
    programs.ykman_ok("piv", "access", "unblock-pin", "-p", "24681357", "-n", "112233")
    assert "PIN tries remaining:      3/3" in programs.ykman("piv", "info").stdout
    programs.ykman_ok("piv", "keys", "generate", "-a", "ECCP256", "-m", MGMT, "9e", "9e.pem")
    programs.ykman_ok("piv", "reset", "--force")
    info = programs.ykman("piv", "info").stdout
    assert "WARNING: Using default PIN!" in info and "Slot 9E" not in info
    assert "Management key algorithm: AES192" in info


def test_attestation_chain_verifies_with_openssl(card, programs, piv_key):
    ok = programs.ok
    programs.ykman_ok("piv", "keys", "generate", "-a", "ECCP384", "--touch-policy", "CACHED",
                      "-m", MGMT, "9a", "9a.pem")
    programs.ykman_ok("piv", "keys", "attest", "9a", "attestation.pem")
    programs.ykman_ok("piv", "certificates", "export", "f9", "f9.pem")
    root = ok(HWTOKEN, "emulate", "show", "pivcard", "--piv-attestation-root")
    (programs.home / "root.pem").write_text(root)
    out = ok("openssl", "verify", "-CAfile", "root.pem", "-untrusted", "f9.pem",
             "attestation.pem")
    assert out.strip() == "attestation.pem: OK"
    leaf = x509.load_pem_x509_certificate((programs.home / "attestation.pem").read_bytes())
    ext = {e.oid: e.value.value for e in leaf.extensions}
    assert ext[OID_FIRMWARE] == bytes([5, 7, 4])
    assert int.from_bytes(ext[OID_SERIAL][2:], "big") == piv_key.serial
    assert ext[OID_POLICY] == bytes([2, 3])  # PIN once (9a's default), touch cached
    public = x509.load_pem_x509_certificate((programs.home / "attestation.pem").read_bytes())
    assert public.public_key().key_size == 384
