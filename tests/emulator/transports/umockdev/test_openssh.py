"""OpenSSH's security-key support (ssh-keygen, ssh-sk-helper, ssh, sshd) against a virtual
key plugged in via umockdev: the same libfido2 path as with a YubiKey in a USB port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
from umockdev_helpers import run, tool

PIN = "246810"


@pytest.fixture
def askpass(tmp_path):
    """SSH_ASKPASS that answers the key's PIN (OpenSSH asks for it when the key wants it)."""
    script = tmp_path / "askpass.sh"
    script.write_text(f"#!/bin/sh\necho {PIN}\n")
    script.chmod(0o700)
    env = dict(os.environ, SSH_ASKPASS=str(script), SSH_ASKPASS_REQUIRE="force",
               DISPLAY="none")
    return env


def _keygen(plugged, tmp_path, kind, *extra, env=None):
    key = tmp_path / f"id_{kind}"
    proc = run(plugged, ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key), *extra],
               env=env)
    assert key.exists() and (tmp_path / f"id_{kind}.pub").exists(), proc.stderr
    return key


def test_ecdsa_sk_key_signs_and_verifies(plugged_key, tmp_path):
    key = _keygen(plugged_key, tmp_path, "ecdsa-sk")
    pub = (tmp_path / "id_ecdsa-sk.pub").read_text()
    assert pub.startswith("sk-ecdsa-sha2-nistp256@openssh.com ")
    data = tmp_path / "data.txt"
    data.write_text("signed by a virtual key\n")
    run(plugged_key, ["ssh-keygen", "-Y", "sign", "-f", str(key), "-n", "file", str(data)])
    allowed = tmp_path / "allowed_signers"
    allowed.write_text("tester " + " ".join(pub.split()[:2]) + "\n")
    with data.open("rb") as fh:
        ok = subprocess.run([tool("ssh-keygen"), "-Y", "verify", "-f", str(allowed), "-I",
                             "tester", "-n", "file", "-s", f"{data}.sig"], stdin=fh,
                            capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert "Good" in ok.stdout
    data.write_text("tampered\n")
    with data.open("rb") as fh:
        bad = subprocess.run([tool("ssh-keygen"), "-Y", "verify", "-f", str(allowed), "-I",
                              "tester", "-n", "file", "-s", f"{data}.sig"], stdin=fh,
                             capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0


def test_resident_ed25519_sk_key_is_recovered_with_ssh_keygen_K(plugged_key, tmp_path,
                                                                askpass):
    run(plugged_key, ["fido2-token", "-S", plugged_key.hidraw], input=f"{PIN}\n{PIN}\n")
    key = _keygen(plugged_key, tmp_path, "ed25519-sk", "-O", "resident",
                  "-O", "application=ssh:hwtoken", env=askpass)
    pub = (tmp_path / "id_ed25519-sk.pub").read_text().split()
    assert pub[0] == "sk-ssh-ed25519@openssh.com"
    out = tmp_path / "recovered"
    out.mkdir()
    proc = run(plugged_key, ["ssh-keygen", "-K"], env=askpass, cwd=out, timeout=60)
    found = [p for p in os.listdir(out) if p.endswith(".pub")]
    assert found, proc.stderr
    recovered = (out / found[0]).read_text().split()
    assert recovered[:2] == pub[:2]  # the same public key, from the key's storage
    assert key.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(os.geteuid() != 0, reason="sshd needs root to switch users")
def test_ssh_login_to_a_local_sshd_with_the_sk_key(plugged_key, tmp_path):
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    key = _keygen(plugged_key, tmp_path, "ecdsa-sk")
    host_key = tmp_path / "host_ed25519"
    subprocess.run([tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                   check=True, timeout=30)
    auth = tmp_path / "authorized_keys"
    auth.write_text((tmp_path / "id_ecdsa-sk.pub").read_text())
    auth.chmod(0o600)
    port = _free_port()
    config = tmp_path / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
        f"AuthorizedKeysFile {auth}", f"PidFile {tmp_path / 'sshd.pid'}",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "UsePAM no", "StrictModes no", "PermitRootLogin yes",
        "AuthenticationMethods publickey", ""]))
    os.makedirs("/run/sshd", exist_ok=True)
    daemon = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert daemon.poll() is None, daemon.stdout.read()
            assert time.monotonic() < deadline, "sshd did not start"
            time.sleep(0.05)
        user = os.environ.get("USER") or "root"
        proc = run(plugged_key, ["ssh", "-F", "/dev/null", "-i", str(key), "-p", str(port),
                                 "-o", "StrictHostKeyChecking=no",
                                 "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
                                 "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                                 f"{user}@127.0.0.1", "echo logged-in-with-a-virtual-key"],
                   timeout=60)
        assert "logged-in-with-a-virtual-key" in proc.stdout
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(10)
