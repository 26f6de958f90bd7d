"""Helpers for the fob tests: run firmware code on the real MicroPython interpreter.

A module with its own name (not conftest) so test modules can import it: every test
directory has a conftest.py, and ``from conftest import ...`` picks whichever came first.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
NODE_DIR = Path(__file__).resolve().parent / "node"
STUBS = Path(__file__).resolve().parent / "stubs"
GOLDEN = Path(__file__).resolve().parent / "golden"


def _node() -> str:
    node = shutil.which("node")
    assert node, "Node.js is required (make test installs it)"
    pkg = NODE_DIR / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
    if not pkg.exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR,
                       check=True, timeout=300)
    return node


def run_micropython(script: str, tmp_path: Path, *, stubs: bool = True) -> str:
    """Run ``script`` on MicroPython with the firmware (and the machine stand-in) importable.

    Returns stdout; a Python exception on MicroPython fails the test with its traceback.
    """
    node = _node()
    path = tmp_path / "script.py"
    path.write_text(script)
    dirs = [str(FIRMWARE)] + ([str(STUBS)] if stubs else [])
    proc = subprocess.run([node, str(NODE_DIR / "mp.mjs"), "run", str(path), *dirs],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"MicroPython raised:\n{proc.stderr}\nstdout:\n{proc.stdout}")
    return proc.stdout


def run_json(script: str, tmp_path: Path, **kw) -> object:
    """Run ``script``, which prints one JSON document as its last line; return it parsed."""
    out = run_micropython(script, tmp_path, **kw)
    return json.loads(out.strip().splitlines()[-1])


# Stand-ins for the Wi-Fi boards' `network` module and micropython-lib's `ntptime`, whose
# time() counts from the port's epoch: NTP seconds minus 1900->1970 or 1900->2000.
NTP_STUBS = """
import sys, json
class Net:
    STA_IF = 0
    log = []
    connect_error = None
    class WLAN:
        def __init__(self, iface):
            self.polls = 0
            Net.log.append("wlan")
        def active(self, on):
            Net.log.append("active %s" % on)
        def connect(self, ssid, password):
            Net.log.append("connect " + ssid)
            if Net.connect_error:
                raise Net.connect_error
        def isconnected(self):
            self.polls += 1
            return self.polls > 1   # connected after one 100 ms wait
class Ntp:
    host = None
    ntp_seconds = 0   # what the server says (seconds since 1900)
    error = None
    @staticmethod
    def time():
        if Ntp.error:
            raise Ntp.error
        import time
        delta = 3155673600 if time.gmtime(0)[0] == 2000 else 2208988800
        return Ntp.ntp_seconds - delta
sys.modules["network"] = Net
sys.modules["ntptime"] = Ntp
"""
NTP_1900 = 2208988800  # unix time 0 as NTP seconds
