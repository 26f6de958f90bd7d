"""SSH login with the virtual key's PIV authentication key, through OpenSC's PKCS#11
module: ssh-keygen -D exports it, ssh -I logs in to a private sshd on 127.0.0.1.

The sshd is :func:`sshd_support.private_sshd` (its own config, host key and port).
"""

from __future__ import annotations

import pytest
from piv_support import OPENSC_PKCS11, PIN, provision
from sshd_support import private_sshd
from yubikit.piv import KEY_TYPE, SLOT

pytestmark = pytest.mark.system


@pytest.fixture
def ssh_card_key(piv_key):
    """``piv_key`` with a P-256 key and certificate in 9a, provisioned before the card
    is inserted (see :func:`provision`)."""
    provision(piv_key, SLOT.AUTHENTICATION, KEY_TYPE.ECCP256, "CN=ssh user")
    return piv_key


def test_ssh_login_with_the_piv_key_through_opensc(ssh_card_key, card, programs, tmp_path):
    exported = programs.run("ssh-keygen", "-D", OPENSC_PKCS11)
    assert exported.returncode == 0, exported.stderr
    auth_lines = [line for line in exported.stdout.splitlines() if "PIV AUTH" in line]
    assert len(auth_lines) == 1 and auth_lines[0].startswith("ecdsa-sha2-nistp256 ")
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(auth_lines[0] + "\n")
    askpass = tmp_path / "askpass"
    asked = tmp_path / "asked"
    askpass.write_text(f"#!/bin/sh\necho \"$1\" >> '{asked}'\necho {PIN}\n")
    askpass.chmod(0o700)
    sshd_dir = tmp_path / "sshd"
    sshd_dir.mkdir()
    with private_sshd(sshd_dir, authorized) as port:
        r = programs.run(
            "ssh", "-F", "/dev/null", "-p", str(port), "-I", OPENSC_PKCS11,
            "-o", "IdentityAgent=none", "-o", "PasswordAuthentication=no",
            "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={tmp_path / 'kh'}",
            "-o", "ConnectTimeout=10", "root@127.0.0.1", "echo", "logged-in-with-piv",
            env={"SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"}, input="")
    assert r.returncode == 0, r.stderr + (sshd_dir / "sshd.log").read_text()
    assert r.stdout.strip() == "logged-in-with-piv"
    assert "PIN" in asked.read_text()  # ssh asked for the card's PIN, and it was used
