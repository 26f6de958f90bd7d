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
