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


@pytest.mark.hwtoken(pin=PIN)
def test_resident_verify_required_key_recovered_with_ssh_keygen_K(plugged_key, tmp_path):
    """The key has a PIN (the marker); plugged_key.ssh_env() answers OpenSSH's PIN prompts
    through hwtoken-ssh-askpass: making a resident key that requires verification, getting
    it back with ssh-keygen -K, and signing with it, which carries user verification (an
    allowed_signers entry with verify-required accepts the signature)."""
    env = plugged_key.ssh_env()
    key = _keygen(plugged_key, tmp_path, "ed25519-sk", "-O", "resident", "-O",
                  "verify-required", "-O", "application=ssh:hwtoken", env=env)
    pub = (tmp_path / "id_ed25519-sk.pub").read_text().split()
    assert pub[0] == "sk-ssh-ed25519@openssh.com"
    out = tmp_path / "recovered"
    out.mkdir()
    proc = run(plugged_key, ["ssh-keygen", "-K", "-N", ""], env=env, cwd=out, timeout=60,
               stdin=subprocess.DEVNULL)
    found = [p for p in os.listdir(out) if p.endswith(".pub")]
    assert found == ["id_ed25519_sk_rk_hwtoken.pub"], proc.stderr
    recovered = (out / found[0]).read_text().split()
    assert recovered[:2] == pub[:2]  # the same public key, from the key's storage

    data = tmp_path / "data.txt"
    data.write_text("signed with user verification\n")
    run(plugged_key, ["ssh-keygen", "-Y", "sign", "-f", str(key), "-n", "file", str(data)],
        env=env, stdin=subprocess.DEVNULL)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text("tester " + " ".join(pub[:2]) + "\n")
    with data.open("rb") as fh:
        ok = subprocess.run([tool("ssh-keygen"), "-Y", "verify", "-f", str(allowed), "-I",
                             "tester", "-n", "file", "-s", f"{data}.sig"], stdin=fh,
                            capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "Good" in ok.stdout, ok.stderr
    assert sk_signature_flags(tmp_path / "data.txt.sig") == 0x05  # user present + verified


def sk_signature_flags(path) -> int:
    """The authenticator flags of an SSHSIG file's security-key signature (PROTOCOL.sshsig,
    PROTOCOL.u2f: string alg, string sig, byte flags, uint32 counter)."""
    import base64
    import struct

    lines = path.read_text().splitlines()
    blob = base64.b64decode("".join(lines[1:-1]))
    assert blob[:6] == b"SSHSIG"
    pos = 10  # magic, uint32 version

    def string(buf, at):
        (n,) = struct.unpack_from(">I", buf, at)
        return buf[at + 4:at + 4 + n], at + 4 + n

    for _ in range(4):  # public key, namespace, reserved, hash algorithm
        _, pos = string(blob, pos)
    signature, _ = string(blob, pos)
    alg, at = string(signature, 0)
    assert alg == b"sk-ssh-ed25519@openssh.com"
    _, at = string(signature, at)
    return signature[at]


@pytest.mark.hwtoken(pin=PIN)
def test_without_the_pin_openssh_cannot_use_a_verify_required_key(plugged_key, tmp_path):
    """No askpass answer, a wrong PIN: ssh-keygen -K gets nothing, and the key counts the
    wrong PIN (7 tries left of 8)."""
    plain = {k: v for k, v in plugged_key.env.items() if not k.startswith("SSH_ASKPASS")}
    proc = run(plugged_key, ["ssh-keygen", "-K", "-N", ""], env=plain, cwd=tmp_path,
               check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 255 and "Unable to load resident keys" in proc.stderr
    wrong = run(plugged_key, ["ssh-keygen", "-K", "-N", ""], env=plugged_key.ssh_env("999999"),
                cwd=tmp_path, check=False, stdin=subprocess.DEVNULL)
    assert wrong.returncode == 255 and "Unable to load resident keys" in wrong.stderr
    assert not list(tmp_path.glob("id_*_rk*"))
    from fido2.ctap2 import Ctap2
    from fido2.ctap2.pin import ClientPin

    from hwtoken.emulator import fido_device

    device = fido_device(plugged_key.key)
    try:
        assert ClientPin(Ctap2(device)).get_pin_retries()[0] == 7
    finally:
        device.close()


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
