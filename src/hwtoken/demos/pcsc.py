"""Demo part: the virtual key's OATH applet through pcscd, managed by ykman itself."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

DEMO_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # a well-known example secret


def _ykman() -> str:
    exe = Path(sys.executable).with_name("ykman")
    return str(exe) if exe.exists() else "ykman"


@contextlib.contextmanager
def _pcscd(echo: Callable[[str], None]) -> Iterator[tuple[int, dict[str, str]]]:
    """A pcscd with the vpcd driver: ours (started and stopped here) when we are root,
    else the system one on 127.0.0.1:35963."""
    from hwtoken.emulator.pcscd import Pcscd, port_listening
    from hwtoken.emulator.transports.vpcd import DEFAULT_PORT

    if os.geteuid() != 0:
        if not port_listening(DEFAULT_PORT):
            raise RuntimeError("pcscd with the vpcd driver is not running (and starting a "
                               "private one needs root): sudo systemctl start pcscd")
        echo(f"using the running pcscd (vpcd on 127.0.0.1:{DEFAULT_PORT})")
        yield DEFAULT_PORT, dict(os.environ)
        return
    daemon = Pcscd().start()
    echo(f"started a private pcscd (vpcd driver on 127.0.0.1:{daemon.port}, "
         f"socket {daemon.socket_path})")
    try:
        yield daemon.port, daemon.client_env()
    finally:
        daemon.stop()
        echo("stopped pcscd")


def run(echo: Callable[[str], None], workdir: Path) -> None:
    """Insert a virtual key into pcscd, then let ykman add, list and calculate OATH codes."""
    import pyotp

    from hwtoken.emulator.key import VirtualKey
    from hwtoken.emulator.pcscd import READER_0
    from hwtoken.emulator.transports.vpcd import VpcdLink

    key = VirtualKey.create(workdir / "pcsc-demo.key", serial=5550123)
    try:
        with _pcscd(echo) as (port, env):
            env = dict(env, HOME=str(workdir))  # ykman keeps its settings in the demo dir
            link = VpcdLink(key, port=port).start()
            try:
                if not link.wait_connected(10):
                    raise RuntimeError("the virtual key could not reach pcscd's vpcd port")
                echo(f"virtual key (serial {key.serial}) inserted as a card in {READER_0!r}")

                def ykman(*args: str, show: bool = True) -> str:
                    cmd = [_ykman(), "--reader", READER_0, *args]
                    r = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                       timeout=30)
                    if show:
                        echo("$ ykman --reader " + shlex.quote(READER_0) + " "
                             + " ".join(shlex.quote(a) for a in args))
                        for line in (r.stdout + r.stderr).strip().splitlines():
                            echo("  " + line)
                    if r.returncode != 0:
                        raise RuntimeError(f"ykman failed: {r.stderr.strip()}")
                    return r.stdout

                deadline = time.monotonic() + 10
                while True:  # pcscd notices a new card by polling
                    try:
                        ykman("info", show=False)
                        break
                    except RuntimeError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.2)
                ykman("info")
                ykman("oath", "accounts", "add", "--issuer", "Example", "alice", DEMO_SECRET)
                ykman("oath", "accounts", "add", "--oath-type", "HOTP", "counter",
                      DEMO_SECRET)
                ykman("oath", "accounts", "list")
                out = ykman("oath", "accounts", "code")
                totp = pyotp.TOTP(DEMO_SECRET)
                expected = totp.now()
                shown = next((ln.split()[-1] for ln in out.splitlines()
                              if ln.startswith("Example:alice")), "?")
                if shown not in (expected, totp.at(time.time() - 30)):
                    raise RuntimeError(f"the key showed {shown}, pyotp says {expected}")
                echo(f"pyotp says the TOTP code now is {expected}: "
                     + ("same as the key" if shown == expected else
                        "differs (the 30 s step turned between the two reads)"))
            finally:
                link.stop()
    finally:
        key.close()
