"""`hwtoken fob remove` and `fob wipe` as real processes with stdin not a terminal (a pipe
holding "y") and no --force: exit 2, one error line, and every account still on the fob
(the MicroPython interpreter of fob_port, reached by mpremote as a board is)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hwtoken.fob import FobAccount
from hwtoken.fob.device import Fob

HWTOKEN = str(Path(sys.executable).with_name("hwtoken"))
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.mark.slow
@pytest.mark.system
def test_remove_and_wipe_refuse_without_a_terminal(fob_port):
    with Fob(fob_port) as f:
        f.deploy("pico")
        f.add(FobAccount("github", SECRET))
        f.add(FobAccount("mail", SECRET))
        before = f.accounts()
    for argv in (["fob", "remove", "github", "--port", fob_port],
                 ["fob", "wipe", "--port", fob_port]):
        r = subprocess.run([HWTOKEN, *argv], input="y\n", capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2, (argv, r.stdout, r.stderr)
        assert r.stderr.splitlines() == [r.stderr.strip()] and \
            r.stderr.startswith("error: ") and "pass --force" in r.stderr, r.stderr
        assert r.stdout == ""
    with Fob(fob_port) as f:
        assert f.accounts() == before
        assert [a["name"] for a in before] == ["github", "mail"]
