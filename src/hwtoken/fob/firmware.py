"""Where the fob firmware lives, and loading its modules into CPython.

The firmware is plain MicroPython in the repository's ``firmware/`` directory. The host
deploys those files to a board, and ``hwtoken fob simulate`` imports the same modules
here (with :mod:`hwtoken.fob.framebuf` standing in for MicroPython's ``framebuf``) so the
screenshots come from the firmware's own drawing code.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType, SimpleNamespace

from hwtoken.errors import InvalidInput

#: Files copied to the board by ``hwtoken fob deploy`` (main.py last: it starts the app).
FIRMWARE_FILES = ("sha.py", "totp.py", "clock.py", "jsonfile.py", "accounts.py", "font.py",
                  "screen.py", "display.py", "buttons.py", "config.py", "app.py", "main.py")
#: Modules the host may load into CPython, in dependency order.
_HOST_MODULES = ("sha", "totp", "jsonfile", "accounts", "font", "screen", "clock", "buttons")
_lock = threading.Lock()
_cache: dict[Path, SimpleNamespace] = {}


def firmware_dir() -> Path:
    """The firmware directory: ``$HWTOKEN_FIRMWARE_DIR``, else the source tree's ``firmware/``."""
    env = os.environ.get("HWTOKEN_FIRMWARE_DIR")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [here.parents[3] / "firmware",
                   Path(sys.prefix) / "share" / "hwtoken" / "firmware"]
    for d in candidates:
        if (d / "main.py").is_file() and (d / "screen.py").is_file():
            return d
    raise InvalidInput("fob firmware not found: set HWTOKEN_FIRMWARE_DIR to the firmware/ "
                       "directory of the hwtoken source tree")


def load_host_modules(directory: Path | None = None) -> SimpleNamespace:
    """The firmware's pure modules (sha, totp, jsonfile, accounts, font, screen, clock,
    buttons) loaded into CPython, without leaving their short names in ``sys.modules``."""
    directory = (directory or firmware_dir()).resolve()
    with _lock:
        if directory in _cache:
            return _cache[directory]
        from hwtoken.fob import framebuf

        names = (*_HOST_MODULES, "framebuf")
        saved = {n: sys.modules.get(n) for n in names}
        loaded: dict[str, ModuleType] = {}
        dont_write = sys.dont_write_bytecode
        sys.dont_write_bytecode = True  # keep __pycache__ out of firmware/ (it gets deployed)
        try:
            sys.modules["framebuf"] = framebuf
            for name in _HOST_MODULES:
                spec = importlib.util.spec_from_file_location(name, directory / f"{name}.py")
                assert spec and spec.loader
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
                loaded[name] = module
        finally:
            sys.dont_write_bytecode = dont_write
            for n, m in saved.items():
                if m is None:
                    sys.modules.pop(n, None)
                else:
                    sys.modules[n] = m
        ns = SimpleNamespace(**loaded)
        _cache[directory] = ns
        return ns


def firmware_sources(directory: Path | None = None) -> dict[str, bytes]:
    """The files to deploy, name -> content (the board's settings are not among them:
    they live in its settings.json, which deploy keeps)."""
    directory = directory or firmware_dir()
    return {name: (directory / name).read_bytes() for name in FIRMWARE_FILES}
