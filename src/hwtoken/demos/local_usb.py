"""Demo: the virtual key as a local USB device for unmodified programs (umockdev).

Plugs a fresh key in through ``hwtoken.emulator.transports.umockdev`` and lets programs
that know nothing of hwtoken use it the way they use a YubiKey in a USB port: libfido2's
``fido2-token`` lists it, OpenSSH's ``ssh-keygen`` makes a FIDO-backed SSH key on it and
signs with it, and ``ssh-keygen -Y verify`` checks that signature.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from collections.abc import Callable


def run(echo: Callable[[str], None], workdir: pathlib.Path) -> None:
    from hwtoken.emulator import VirtualKey
    from hwtoken.emulator.key import lock_path
    from hwtoken.emulator.transports.umockdev import Testbed

    for tool in ("fido2-token", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing (make demo installs it)")
    path = workdir / "local-usb-demo.key"
    for leftover in (path, lock_path(path)):
        leftover.unlink(missing_ok=True)
    with VirtualKey.create(path) as key, Testbed() as tb:
        plugged = tb.plug(key)
        echo(f"virtual key serial {key.serial} plugged in as {', '.join(plugged.hidraw)} "
             f"and {plugged.usbfs} (no root, no kernel module)")
        listed = tb.run(["fido2-token", "-L"], capture_output=True, text=True, timeout=60)
        for line in listed.stdout.splitlines():
            echo(f"  $ fido2-token -L   ->  {line}")
        if "vendor=0x1050" not in listed.stdout:
            raise RuntimeError(f"fido2-token did not find the key: {listed.stderr}")
        ssh_key = workdir / "id_ecdsa_sk"
        for leftover in (ssh_key, ssh_key.with_suffix(".pub")):
            leftover.unlink(missing_ok=True)
        tb.run(["ssh-keygen", "-q", "-t", "ecdsa-sk", "-N", "", "-f", str(ssh_key)],
               check=True, capture_output=True, timeout=60)
        pub = ssh_key.with_name(ssh_key.name + ".pub").read_text().split()
        echo(f"  $ ssh-keygen -t ecdsa-sk  ->  {pub[0]} {pub[1][:32]}...")
        message = workdir / "message.txt"
        message.write_text("signed on a virtual security key\n")
        tb.run(["ssh-keygen", "-Y", "sign", "-f", str(ssh_key), "-n", "file", str(message)],
               check=True, capture_output=True, timeout=60)
    allowed = workdir / "allowed_signers"
    allowed.write_text(f"demo {pub[0]} {pub[1]}\n")
    with message.open("rb") as fh:
        verified = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", "demo",
                                   "-n", "file", "-s", f"{message}.sig"], stdin=fh,
                                  capture_output=True, text=True, timeout=60)
    echo(f"  $ ssh-keygen -Y verify  ->  {verified.stdout.strip() or verified.stderr.strip()}")
    if verified.returncode != 0:
        raise RuntimeError("the signature made on the virtual key did not verify")
