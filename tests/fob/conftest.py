"""Run the fob firmware on the real MicroPython interpreter (WebAssembly port, Node.js)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fob_support import _node, run_json


@pytest.fixture
def mpy(tmp_path):
    """``mpy(script)`` -> the last printed line of ``script`` parsed as JSON."""
    return lambda script, **kw: run_json(script, tmp_path, **kw)


def _virtual_fob(flash=None):
    from hwtoken.fob.emulator import FobEmulator
    from hwtoken.fob.emulator.ports import TcpPort

    _node()  # the WebAssembly port installed (npm) before the emulator looks for it
    with FobEmulator(flash=flash) as emu:
        port = TcpPort(emu)
        try:
            yield SimpleNamespace(emulator=emu, url=port.url)
        finally:
            port.close()


@pytest.fixture
def virtual_fob():
    """A virtual fob (``.emulator``, a hwtoken.fob.emulator.FobEmulator) with its serial
    port on a loopback TCP port (``.url``, mpremote's ``socket://`` URL).

    Its flash starts empty, like a board freshly flashed with MicroPython: tests deploy
    the firmware with ``hwtoken fob deploy``. Stopped (and its Node.js process with it)
    when the test ends.
    """
    yield from _virtual_fob()


@pytest.fixture
def deployed_fob(tmp_path):
    """A virtual fob whose flash already holds the firmware (as ``hwtoken fob deploy``
    leaves it), for tests of what comes after the deploy."""
    from hwtoken.fob.firmware import firmware_sources

    flash = tmp_path / "flash"
    flash.mkdir()
    for name, data in firmware_sources().items():
        (flash / name).write_bytes(data)
    yield from _virtual_fob(flash)


@pytest.fixture
def fob_port(virtual_fob):
    """The virtual fob's serial port as mpremote's ``socket://`` URL."""
    return virtual_fob.url
