"""Where hwtoken keeps its files: the state directory and what lives below it.

Resolution order: ``--state-dir`` (global or per command), ``$HWTOKEN_STATE_DIR``,
``$XDG_DATA_HOME/hwtoken``, ``~/.local/share/hwtoken``.
"""

from __future__ import annotations

import os
from pathlib import Path

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

    if not name or "/" in name or name.startswith(".") or len(name) > 64:
        raise InvalidInput(f"invalid virtual key name {name!r}: use letters, digits, - and _")
    return keys_dir() / f"{name}.key"
