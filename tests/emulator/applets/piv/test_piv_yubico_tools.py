"""Yubico's C tools against the virtual key in a private pcscd: yubico-piv-tool and the
ykcs11 PKCS#11 module (Debian's 2.2.0 builds).

Both only know 3DES management keys, so the tests switch the key with ykman first, as a
user of a YubiKey 5.7 (AES-192 by default) must. ykcs11 ignores readers whose name does
not start with "Yubico": its test runs a second private pcscd that names its reader like a
YubiKey's.

Not covered: ``yubico-piv-tool -a selfsign-certificate`` (and ``request-certificate``).
In 2.2.0 built against OpenSSL 3 they fail before sending a single APDU (the tool swaps
the key's RSA/EC method, which OpenSSL 3's providers ignore; Yubico issue #388), on a
real YubiKey too. The certificates here come from ykman, and from OpenSSL's pkcs11 engine
in test_piv_opensc.py.
"""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from piv_support import HWTOKEN, MGMT, PIN, PUK, YKCS11, Programs, provision
from yubikit.piv import KEY_TYPE, SLOT

from hwtoken import paths
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.pcscd import READER_0, Pcscd
from hwtoken.emulator.transports.vpcd import VpcdLink

pytestmark = pytest.mark.system


def piv_tool(programs, *args: str):
    return programs.run("yubico-piv-tool", "-r", READER_0, *args)


def piv_tool_ok(programs, *args: str) -> str:
    r = piv_tool(programs, *args)
    assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def test_yubico_piv_tool(card, programs, piv_key):
    programs.ykman_ok("piv", "access", "change-management-key", "-a", "TDES", "-m", MGMT,
                      "-n", MGMT)
    status = piv_tool_ok(programs, "-a", "status")
    assert "Version:\t5.7.4" in status and f"Serial Number:\t{piv_key.serial}" in status
    assert "CHUID:\tNo data available" in status and "PIN tries left:\t3" in status
    piv_tool_ok(programs, f"-k{MGMT}", "-a", "set-chuid", "-a", "set-ccc")
    status = piv_tool_ok(programs, "-a", "status")
    assert "CHUID:\t3019d4e739da739ced39ce739d8368582108421084" in status
    assert "CCC:\tf015a000000116ff02" in status

    # generate, certify, import the certificate, sign with the card and check it
    piv_tool_ok(programs, f"-k{MGMT}", "-s", "9e", "-A", "ECCP256", "-a", "generate",
                "-o", "9e.pub.pem")
    programs.ykman_ok("piv", "certificates", "generate", "-m", MGMT, "-P", PIN,
                      "-s", "CN=door", "9e", "9e.pub.pem")
    programs.ykman_ok("piv", "certificates", "export", "9e", "9e.crt.pem")
    piv_tool_ok(programs, f"-k{MGMT}", "-s", "9e", "-a", "delete-certificate")
    piv_tool_ok(programs, f"-k{MGMT}", "-s", "9e", "-a", "import-certificate",
                "-i", "9e.crt.pem")
    out = piv_tool_ok(programs, "-s", "9e", "-a", "test-signature", "-i", "9e.crt.pem")
    assert "Successful ECDSA verification." in out
    piv_tool_ok(programs, f"-k{MGMT}", "-s", "82", "-A", "RSA2048", "-a", "generate",
                "-o", "82.pub.pem")
    programs.ykman_ok("piv", "certificates", "generate", "-m", MGMT, "-P", PIN,
                      "-s", "CN=retired", "82", "82.pub.pem")
    programs.ykman_ok("piv", "certificates", "export", "82", "82.crt.pem")
    out = piv_tool_ok(programs, "-s", "82", "-P", PIN, "-a", "verify-pin",
                      "-a", "test-signature", "-i", "82.crt.pem")
    assert "Successful RSA verification." in out

    # attestation, checked against the root `hwtoken emulate show` exports
    piv_tool_ok(programs, "-s", "9e", "-a", "attest", "-o", "9e.att.pem")
    piv_tool_ok(programs, "-s", "f9", "-a", "read-certificate", "-o", "f9.pem")
    (programs.home / "root.pem").write_text(
        programs.ok(HWTOKEN, "emulate", "show", "pivcard", "--piv-attestation-root"))
    assert programs.ok("openssl", "verify", "-CAfile", "root.pem", "-untrusted", "f9.pem",
                       "9e.att.pem").strip() == "9e.att.pem: OK"

    # PIN: block, unblock with the PUK
    for left in ("2 tries left", "1 tries left", "blocked"):
        r = piv_tool(programs, "-P", "000000", "-a", "verify-pin")
        assert r.returncode != 0 and left in r.stderr
    assert "blocked" in piv_tool(programs, "-P", PIN, "-a", "verify-pin").stderr
    piv_tool_ok(programs, "-P", PUK, "-N", "246802", "-a", "unblock-pin")
    piv_tool_ok(programs, "-P", "246802", "-a", "verify-pin")

    # reset: refused until PIN and PUK are both blocked
    r = piv_tool(programs, "-a", "reset")
    assert r.returncode != 0 and "are pincodes blocked" in r.stderr
    for _ in range(3):
        piv_tool(programs, "-P", "000000", "-a", "verify-pin")
        piv_tool(programs, "-P", "00000000", "-N", "11111111", "-a", "change-puk")
    piv_tool_ok(programs, "-a", "reset")
    status = piv_tool_ok(programs, "-a", "status")
    assert "CHUID:\tNo data available" in status and "Slot 9e" not in status
    info = programs.ykman("piv", "info").stdout
    assert "Management key algorithm: AES192" in info and "WARNING: Using default PIN!" in info
    # the attestation key survives a reset
    assert programs.ok("openssl", "verify", "-CAfile", "root.pem", "-untrusted", "f9.pem",
                       "9e.att.pem").strip() == "9e.att.pem: OK"
    piv_tool_ok(programs, "-s", "f9", "-a", "read-certificate", "-o", "f9-after.pem")
    assert (programs.home / "f9-after.pem").read_bytes() == \
        (programs.home / "f9.pem").read_bytes()


YUBICO_READER_NAME = "Yubico YubiKey OTP+FIDO+CCID"  # as a real YubiKey 5's reader


def test_ykcs11_signs_through_a_yubico_named_reader(tmp_path):
    key = VirtualKey.create(paths.virtual_key_path("ykcs11card"), serial=31337001)
    daemon = link = None
    try:
        publics = {}
        for slot, key_type, name in ((SLOT.AUTHENTICATION, KEY_TYPE.ECCP256, "01"),
                                     (SLOT.SIGNATURE, KEY_TYPE.RSA2048, "02")):
            publics[name] = provision(key, slot, key_type, f"CN=ykcs11 {name}")
        daemon = Pcscd(friendly_name=YUBICO_READER_NAME).start()
        link = VpcdLink(key, port=daemon.port).start()
        assert link.wait_connected(10), daemon.log_tail()
        home = tmp_path / "home"
        home.mkdir()
        programs = Programs(daemon, home)
        tool = ("pkcs11-tool", "--module", YKCS11)
        deadline = time.monotonic() + 15  # pcscd notices the card at its next poll
        while "YubiKey PIV #31337001" not in (slots := programs.run(*tool, "-L").stdout):
            assert time.monotonic() < deadline, slots
            time.sleep(0.2)
        assert f"{YUBICO_READER_NAME} 00 00" in slots
        objects = programs.ok(*tool, "-O")
        assert "X.509 Certificate for PIV Authentication" in objects
        assert "X.509 Certificate for PIV Attestation" in objects
        (home / "data.txt").write_bytes(b"ykcs11 through vpcd\n")
        for name, mech, extra in (("01", "ECDSA-SHA256", ("--signature-format", "openssl")),
                                  ("02", "SHA256-RSA-PKCS", ())):
            (home / f"{name}.pem").write_bytes(publics[name].public_bytes(
                Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
            programs.ok(*tool, "--login", "--pin", PIN, "--sign", "--id", name, "-m", mech,
                        *extra, "-i", "data.txt", "-o", f"{name}.sig")
            assert "Verified OK" in programs.ok("openssl", "dgst", "-sha256", "-verify",
                                                f"{name}.pem", "-signature", f"{name}.sig",
                                                "data.txt")
    finally:
        if link is not None:
            link.stop()
        if daemon is not None:
            daemon.stop()
        key.close()
