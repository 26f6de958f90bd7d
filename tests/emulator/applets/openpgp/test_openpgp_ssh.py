"""SSH with the card's authentication key through gpg-agent's SSH support: ``ssh-add -L``
lists it, and ``ssh`` logs in with it to a private sshd on 127.0.0.1 (the PIN comes from a
test pinentry, as gpg-agent asks a person for it)."""

from __future__ import annotations

import subprocess

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from openpgp_support import ADMIN_PIN, SERIAL, GnuPG
from sshd_support import private_sshd
from yubikit.openpgp import KEY_REF, OID, OpenPgpSession

from hwtoken.emulator.iso7816 import CardOS
from hwtoken.emulator.pcscd import READER_0
from hwtoken.emulator.transports.card_direct import DirectCardConnection

pytestmark = pytest.mark.system


@pytest.fixture
def aut_keys(pgp_key):
    """An Ed25519 AUT key and a P-256 SIG key generated on ``pgp_key`` in-process, before
    the card is inserted; the AUT public key."""
    session = OpenPgpSession(DirectCardConnection(CardOS(pgp_key)))
    session.verify_admin(ADMIN_PIN)
    public = session.generate_ec_key(KEY_REF.AUT, OID.Ed25519)
    session.generate_ec_key(KEY_REF.SIG, OID.SECP256R1)
    pgp_key.power_cycle()
    return public


@pytest.fixture
def agent(pcscd, card):
    """gpg-agent with --enable-ssh-support for the card; killed by PID afterwards."""
    gpg = GnuPG(pcscd.client_env(), READER_0, ssh=True)
    launched = subprocess.run(["gpgconf", "--launch", "gpg-agent"], env=gpg.env,
                              capture_output=True, text=True, timeout=30)
    assert launched.returncode == 0, launched.stderr
    socket = subprocess.run(["gpgconf", "--list-dirs", "agent-ssh-socket"], env=gpg.env,
                            capture_output=True, text=True, timeout=30, check=True)
    gpg.env["SSH_AUTH_SOCK"] = socket.stdout.strip()
    yield gpg
    gpg.close()


def test_ssh_add_lists_the_card_key_and_ssh_logs_in(aut_keys, agent, tmp_path):
    listed = subprocess.run(["ssh-add", "-L"], env=agent.env, capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0, listed.stderr
    expected = aut_keys.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    assert listed.stdout.splitlines() == [f"{expected} cardno:0006 {SERIAL}"]
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(listed.stdout)
    sshd_dir = tmp_path / "sshd"
    sshd_dir.mkdir()
    with private_sshd(sshd_dir, authorized) as port:
        r = subprocess.run(
            ["ssh", "-F", "/dev/null", "-p", str(port), "-o", "BatchMode=yes",
             "-o", f"IdentityAgent={agent.env['SSH_AUTH_SOCK']}",
             "-o", "PasswordAuthentication=no", "-o", "StrictHostKeyChecking=no",
             "-o", f"UserKnownHostsFile={tmp_path / 'kh'}", "-o", "ConnectTimeout=10",
             "root@127.0.0.1", "echo", "logged-in-with-openpgp"],
            env=agent.env, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr + (sshd_dir / "sshd.log").read_text()
    assert r.stdout.strip() == "logged-in-with-openpgp"
    asked = agent.pinentry.with_name(agent.pinentry.name + ".log").read_text()
    assert "GETPIN" in asked  # gpg-agent asked for the card's PIN, and it was used
