"""Demo: provision three virtual keys, survive a crash, export for a validation server.

The run is killed with SIGKILL right after the second key is programmed (fault
injection); ``resume`` finds that key's pending record, checks the key, and completes it.
The export is read back with python-pskc, and each key's HMAC response (through
python-yubico) matches its exported secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pathlib
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable


def run(echo: Callable[[str], None], workdir: pathlib.Path) -> None:
    import pskc

    exe = pathlib.Path(sys.executable).with_name("hwtoken")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "hwtoken"]
    state = workdir / "provision-state"
    inventory = f"sqlite:///{workdir / 'inventory.db'}"
    env = dict(os.environ, HWTOKEN_STATE_DIR=str(state),
               HWTOKEN_INVENTORY_PASSPHRASE=secrets.token_urlsafe(16))
    env.pop("HWTOKEN_FAULT", None)

    def hw(*args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
        e = dict(env, HWTOKEN_FAULT=fault) if fault else env
        return subprocess.run([*cmd, *args], capture_output=True, text=True, env=e,
                              stdin=subprocess.DEVNULL, timeout=60)

    crashed = hw("provision", "run", "-i", inventory, "-m", "chalresp", "--virtual", "3",
                 fault="after:program@2")
    if crashed.returncode != -signal.SIGKILL:
        raise RuntimeError(f"the fault was not injected: {crashed.stderr.strip()}")
    echo("provision run --virtual 3: key 1 done, then SIGKILL right after key 2 was "
         "programmed")
    echo("  status: " + hw("provision", "status", "-i", inventory).stdout.splitlines()[1]
         .strip())
    resumed = hw("provision", "resume", "-i", inventory)
    if resumed.returncode != 0:
        raise RuntimeError(f"resume failed: {resumed.stdout}{resumed.stderr}")
    echo("provision resume: " + resumed.stdout.splitlines()[0].strip()
         + " (the key already held the recorded secret)")
    rerun = hw("provision", "run", "-i", inventory, "-m", "chalresp", "--virtual", "3")
    echo("provision run again: " + rerun.stdout.splitlines()[-1].strip()
         + " (keys 1-2 refused: already in the inventory)")
    out = workdir / "batch.pskc"
    exported = hw("provision", "export", "-i", inventory, "--format", "pskc", "-o", str(out))
    if exported.returncode != 0:
        raise RuntimeError(f"export failed: {exported.stderr.strip()}")
    echo(exported.stdout.strip() + f" (mode {oct(out.stat().st_mode & 0o777)})")

    from hwtoken import paths
    from hwtoken.provision.model import Mode, Spec
    from hwtoken.provision.programmers import programmer_for
    from hwtoken.provision.protocol import Device
    from hwtoken.provision.sources import pool_name, virtual_serial

    paths.set_state_dir(state)  # the demo's keys, not the user's
    try:
        names = {virtual_serial(pool_name(i)): pool_name(i) for i in (1, 2, 3)}
        spec = Spec(Mode.CHALRESP)
        for key in pskc.PSKC(str(out)).keys:
            serial = int(key.serial)
            dev = Device(serial, f"emu:{names[serial]}")
            challenge = secrets.token_bytes(32)
            with programmer_for(spec, dev).connect(dev) as conn:
                got = conn.calculate(spec, challenge)
            ok = got == hmac.new(key.secret, challenge, hashlib.sha1).digest()
            echo(f"  key {serial}: its HMAC response {'matches' if ok else 'DIFFERS FROM'} "
                 "the exported secret")
            if not ok:
                raise RuntimeError("an exported secret does not match its key")
    finally:
        paths.set_state_dir(None)
