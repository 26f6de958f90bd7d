"""`ykman hsmauth`, `ykman sd` and ykman's `--scp*` options, the real program, against the
virtual key as a card in a private pcscd (vpcd)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_public_key
from yubikit.core.smartcard.scp import StaticKeys
from yubikit.hsmauth import _password_to_key

from hwtoken.emulator.pcscd import READER_0

pytestmark = pytest.mark.system

YKMAN = str(Path(sys.executable).with_name("ykman"))
ZERO_KEY = "00" * 16
NEW_KEY = "11111111111111111111111111111112"
SCP03 = ":".join(["01" * 16] * 3)


def ykman(pcscd, home: Path, *args: str, input: str | None = None):
    env = pcscd.client_env()
    env["HOME"] = str(home)
    env.pop("XDG_CONFIG_HOME", None)
    return subprocess.run([YKMAN, "--reader", READER_0, *args], env=env, input=input,
                          capture_output=True, text=True, timeout=120, cwd=home)


def ok(pcscd, home, *args, **kw) -> str:
    r = ykman(pcscd, home, *args, **kw)
    assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r.stdout


def test_hsmauth_credentials_session_keys_and_management_key(pcscd, linked, tmp_path):
    info = ok(pcscd, tmp_path, "hsmauth", "info")
    assert re.search(r"YubiHSM Auth version:\s+5\.7\.4\n", info), info
    assert re.search(r"Management key retries remaining:\s+8/8", info), info
    ok(pcscd, tmp_path, "hsmauth", "credentials", "derive", "sym", "-c", "pw", "-d", "pwd",
       "-m", ZERO_KEY, "-t")
    out = ok(pcscd, tmp_path, "hsmauth", "credentials", "generate", "asym", "-c", "pw",
             "-m", ZERO_KEY)
    listing = ok(pcscd, tmp_path, "hsmauth", "credentials", "list")
    assert re.search(r"sym\s+Symmetric\s+On\s+8", listing), listing
    assert re.search(r"asym\s+Asymmetric\s+Off\s+8", listing), listing
    pem = ok(pcscd, tmp_path, "hsmauth", "credentials", "export", "asym", "-")
    public = load_pem_public_key(pem.encode())
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    r = ykman(pcscd, tmp_path, "hsmauth", "credentials", "export", "sym", "-")
    assert r.returncode == 1 and "Unable to export public key" in r.stderr  # symmetric

    # CALCULATE as raw APDU: the session keys a YubiHSM 2 derives for this context
    context = bytes(range(16))
    pw = b"pw".ljust(16, b"\0")
    data = (b"\x71\x03sym" + b"\x77\x10" + context + b"\x73\x10" + pw)
    out = ok(pcscd, tmp_path, "apdu", "-a", "hsmauth", "00030000:" + data.hex() + "=9000")
    keys = StaticKeys(*_password_to_key("pwd")).derive(context)
    for k in keys[:3]:  # ykman prints the answer as a hex dump, 16 bytes a line
        assert " ".join(f"{b:02X}" for b in k) in out, out

    ok(pcscd, tmp_path, "hsmauth", "access", "change-management-password", "-m", ZERO_KEY,
       "-n", NEW_KEY)
    r = ykman(pcscd, tmp_path, "hsmauth", "credentials", "delete", "sym", "-f", "-m",
              ZERO_KEY)
    assert r.returncode == 1 and "7 attempts remaining" in r.stderr  # (ykman's wording)
    assert re.search(r"retries remaining:\s+7/8", ok(pcscd, tmp_path, "hsmauth", "info"))
    ok(pcscd, tmp_path, "hsmauth", "credentials", "delete", "sym", "-f", "-m", NEW_KEY)
    assert "sym " not in ok(pcscd, tmp_path, "hsmauth", "credentials", "list")


def test_hsmauth_reset_asks_and_needs_force_without_a_terminal(pcscd, linked, tmp_path):
    ok(pcscd, tmp_path, "hsmauth", "credentials", "derive", "keep", "-c", "pw", "-d", "pwd",
       "-m", ZERO_KEY)
    r = ykman(pcscd, tmp_path, "hsmauth", "reset", input="")
    assert r.returncode == 1 and "Aborted" in r.stderr
    assert "keep" in ok(pcscd, tmp_path, "hsmauth", "credentials", "list")
    assert "Reset complete." in ok(pcscd, tmp_path, "hsmauth", "reset", "-f")
    assert "keep" not in ok(pcscd, tmp_path, "hsmauth", "credentials", "list")


def _scp_ca(vkey, home: Path) -> Path:
    """The key's SCP CA (what `hwtoken emulate show NAME --scp-ca` prints)."""
    root = x509.load_der_x509_certificate(
        bytes(vkey.store.section("securitydomain")["authority"]["root_cert"]))
    path = home / "scp-ca.pem"
    path.write_bytes(root.public_bytes(Encoding.PEM))
    return path


def test_sd_info_and_every_applet_over_scp11b_checked_against_the_card_ca(pcscd, linked, vkey,
                                                                         tmp_path):
    info = ok(pcscd, tmp_path, "sd", "info")
    assert "SCP03 (KID=0x01-0x03, KVN=0xFF)" in info and "Default key set" in info
    assert "SCP11b (KID=0x13, KVN=0x01)" in info and "CA Key Identifier" in info
    assert "CN=hwtoken Virtual SCP11 Key 1301 7654321" in info
    ca = _scp_ca(vkey, tmp_path)
    for args in (("oath", "accounts", "list"), ("piv", "info"), ("hsmauth", "info"),
                 ("sd", "info")):
        ok(pcscd, tmp_path, "--scp-ca", str(ca), "--scp-sd", "0x13", "1", *args)
    ok(pcscd, tmp_path, "--scp-ca", str(ca), "oath", "accounts", "add", "over-scp",
       "JBSWY3DPEHPK3PXP")  # SCP11b found by the CA's key identifier
    assert "over-scp" in ok(pcscd, tmp_path, "oath", "accounts", "list")
    other = tmp_path / "other.pem"
    from hwtoken.emulator.applets.piv.attestation import new_authority

    other.write_bytes(x509.load_der_x509_certificate(new_authority(1).root_cert)
                      .public_bytes(Encoding.PEM))
    r = ykman(pcscd, tmp_path, "--scp-ca", str(other), "--scp-sd", "0x13", "1", "sd", "info")
    assert r.returncode != 0  # a chain that does not lead to that CA is refused


def test_sd_key_management_over_scp03_and_reset(pcscd, linked, tmp_path):
    r = ykman(pcscd, tmp_path, "sd", "keys", "generate", "scp11a", "3", "-")
    assert r.returncode == 1 and "requires authentication" in r.stderr
    ok(pcscd, tmp_path, "--scp-sd", "1", "0", "sd", "keys", "import", "scp03", "2", SCP03)
    pem = ok(pcscd, tmp_path, "--scp", SCP03, "sd", "keys", "generate", "scp11a", "3", "-")
    assert load_pem_public_key(pem.encode())
    ok(pcscd, tmp_path, "--scp", SCP03, "sd", "keys", "delete", "--force", "scp11b", "0")
    info = ok(pcscd, tmp_path, "--scp", SCP03, "sd", "info")
    assert "KVN=0x02" in info and "Imported key set" in info and "SCP11a" in info
    assert "SCP11b" not in info and "KVN=0xFF" not in info
    ok(pcscd, tmp_path, "--scp", SCP03, "oath", "accounts", "list")  # any applet, SCP03
    r = ykman(pcscd, tmp_path, "--scp-sd", "1", "0", "sd", "info")  # default keys: gone
    assert r.returncode != 0
    r = ykman(pcscd, tmp_path, "sd", "reset", input="")
    assert r.returncode == 1 and "Aborted" in r.stderr
    assert "Reset complete" in ok(pcscd, tmp_path, "sd", "reset", "-f")
    info = ok(pcscd, tmp_path, "sd", "info")
    assert "KVN=0xFF" in info and "SCP11b (KID=0x13, KVN=0x01)" in info and "SCP11a" not in info
