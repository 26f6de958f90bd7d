"""Demo: the DIY fob's OLED screen, simulated by the firmware's own drawing code.

Renders the fob's screen for the demo secret at the current time (as terminal text and a
PNG), and prints the code the firmware computed beside the one the host computes with
hwtoken.otp (and oathtool when it is installed). No board needed.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import time
from collections.abc import Callable

DEMO_SECRET = "JBSWY3DPEHPK3PXP"


def run(echo: Callable[[str], None], workdir: pathlib.Path) -> None:
    from hwtoken.fob.firmware import load_host_modules
    from hwtoken.fob.simulate import FobAccount, render
    from hwtoken.otp import TOTP

    now = int(time.time())
    account = FobAccount("demo@hwtoken", DEMO_SECRET)
    screen = render([account], now)
    png = workdir / "fob.png"
    png.write_bytes(screen.to_png(4))
    echo(f"   the fob's 128x64 OLED at {time.strftime('%H:%M:%S UTC', time.gmtime(now))}, "
         "drawn by firmware/screen.py:")
    for line in screen.to_ascii().splitlines():
        echo("   " + line)
    fw = load_host_modules()
    on_fob = fw.accounts.Account(account.name, DEMO_SECRET).code(now)
    on_host = TOTP.from_secret(DEMO_SECRET).at(now)
    echo(f"   code on the fob's screen (firmware totp.py): {on_fob}")
    echo(f"   code the host computes (hwtoken.otp):        {on_host}"
         f"  {'match' if on_fob == on_host else 'MISMATCH'}")
    oathtool = shutil.which("oathtool")
    if oathtool:
        proc = subprocess.run([oathtool, "--totp", "-b", "-N", f"@{now}", "-"],
                              input=DEMO_SECRET, capture_output=True, text=True, timeout=10)
        echo(f"   oathtool --totp:                             {proc.stdout.strip()}")
    echo(f"   also saved as a {png.name} ({128 * 4}x{64 * 4}); yours: hwtoken fob simulate "
         "--secret - --png FILE")
    if on_fob != on_host:
        raise RuntimeError("the fob's code differs from the host's")
