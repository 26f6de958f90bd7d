"""Where hwtoken keeps its files: the state directory and what lives below it.

Resolution order: ``--state-dir`` (global or per command), ``$HWTOKEN_STATE_DIR``,
``$XDG_DATA_HOME/hwtoken``, ``~/.local/share/hwtoken``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: What a virtual key's name may be: ASCII letters, digits, - and _ (64 at most), not
#: starting with - (it would read as an option).
KEY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")

_override: Path | None = None


def set_state_dir(path: str | os.PathLike[str] | None) -> None:
    """Override the state directory for this process (the CLI's ``--state-dir``)."""
    global _override
    _override = Path(path).expanduser() if path else None


def state_dir() -> Path:
    """The state directory (not created)."""
    if _override is not None:
        return _override
    env = os.environ.get("HWTOKEN_STATE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "hwtoken"


def keys_dir() -> Path:
    """Directory holding virtual keys' state files (``NAME.key``)."""
    return state_dir() / "keys"


def virtual_key_path(name: str) -> Path:
    """State file of the virtual key ``name``."""
    from hwtoken.errors import InvalidInput

    if not isinstance(name, str) or not KEY_NAME.fullmatch(name):
        shown = name.encode("utf-8", "backslashreplace").decode() if isinstance(name, str) \
            else repr(name)
        raise InvalidInput(f"invalid virtual key name {shown!r}: use 1 to 64 ASCII letters, "
                           "digits, - and _ (not starting with -)")
    return keys_dir() / f"{name}.key"
