"""Where the virtual fob's parts are: Node.js, MicroPython's WebAssembly port, board.mjs."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from hwtoken import paths
from hwtoken.errors import SetupError

#: The npm package (and the version the tests pin) that holds the WebAssembly port.
NPM_PACKAGE = "@micropython/micropython-webassembly-pyscript"
NPM_VERSION = "1.27.0"
ENV = "HWTOKEN_MICROPYTHON_WASM"
BOARD_DIR = Path(__file__).resolve().parent / "board"


def node() -> str:
    """The ``node`` program (Node.js 16 or later)."""
    found = shutil.which("node")
    if not found:
        raise SetupError("the virtual fob needs Node.js: install it (Debian: apt install "
                         "nodejs npm)")
    return found


def _candidates() -> list[Path]:
    env = os.environ.get(ENV)
    if env:
        return [Path(env)]
    here = Path(__file__).resolve()
    return [paths.state_dir() / "node_modules" / NPM_PACKAGE,
            Path(sys.prefix) / "share" / "hwtoken" / "node_modules" / NPM_PACKAGE,
            here.parents[4] / "tests" / "fob" / "node" / "node_modules" / NPM_PACKAGE]


def micropython() -> Path:
    """``micropython.mjs`` of the WebAssembly port: in ``$HWTOKEN_MICROPYTHON_WASM`` (the
    package directory), else under the state directory's node_modules, else in a source
    checkout's tests/fob/node (what ``make deps`` installs)."""
    for d in _candidates():
        if (d / "micropython.mjs").is_file() and (d / "micropython.wasm").is_file():
            return d / "micropython.mjs"
    where = paths.state_dir()
    raise SetupError(f"MicroPython's WebAssembly port is not installed: run `npm install "
                     f"--prefix {where} {NPM_PACKAGE}@{NPM_VERSION}` (or set ${ENV} to the "
                     "package's directory)")
