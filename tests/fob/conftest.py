"""Run the fob firmware on the real MicroPython interpreter (WebAssembly port, Node.js)."""

from __future__ import annotations

import subprocess

import pytest
from fob_support import NODE_DIR, STUBS, _node, run_json


@pytest.fixture
def mpy(tmp_path):
    """``mpy(script)`` -> the last printed line of ``script`` parsed as JSON."""
    return lambda script, **kw: run_json(script, tmp_path, **kw)


@pytest.fixture
def fob_port():
    """A MicroPython REPL served on a loopback port, as mpremote's ``socket://`` URL.

    The interpreter's filesystem starts with only the ``machine`` stand-in, like a board
    freshly flashed with MicroPython: tests deploy the firmware with ``hwtoken fob deploy``.
    """
    import selectors

    node = _node()
    proc = subprocess.Popen([node, str(NODE_DIR / "mp.mjs"), "serve", str(STUBS)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=30), "the MicroPython REPL bridge did not start"
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        yield f"socket://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.stdin.close()  # the bridge exits when its stdin closes
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
