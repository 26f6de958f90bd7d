"""A private sshd on 127.0.0.1 for the tests that log in with a card's key (PIV through
OpenSC's PKCS#11 module, OpenPGP through gpg-agent's SSH support).

The sshd has its own config, host key, port and authorized_keys (nothing of the system's
is read), and runs in a mount namespace of its own with a fresh /run (for its privilege
separation directory); it is stopped when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def private_sshd(workdir: Path, authorized_keys: Path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(workdir / "host_key")], check=True, timeout=30)
    port = free_port()
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
