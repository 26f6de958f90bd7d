"""SSH login with the virtual key's PIV authentication key, through OpenSC's PKCS#11
module: ssh-keygen -D exports it, ssh -I logs in to a private sshd on 127.0.0.1.

The sshd has its own config, host key, port and authorized_keys (nothing of the system's
is read), and runs in a mount namespace of its own with a fresh /run (for its privilege
separation directory); it is stopped after the test.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

import pytest
from piv_support import OPENSC_PKCS11, PIN, provision
from yubikit.piv import KEY_TYPE, SLOT

pytestmark = pytest.mark.system

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def private_sshd(workdir: Path, authorized_keys: Path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(workdir / "host_key")], check=True, timeout=30)
    port = _free_port()
    config = workdir / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {workdir / 'host_key'}\n"
        f"AuthorizedKeysFile {authorized_keys}\nPidFile {workdir / 'sshd.pid'}\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "PermitRootLogin prohibit-password\n")
    log = open(workdir / "sshd.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"mount -t tmpfs tmpfs /run && mkdir -m 755 /run/sshd && exec {SSHD} -D -e "
         f"-f '{config}'"], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, (workdir / "sshd.log").read_text()
            assert time.monotonic() < deadline, "sshd did not listen within 15 s"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


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
