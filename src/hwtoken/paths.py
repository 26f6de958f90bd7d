"""Where hwtoken keeps its files: the state directory and what lives below it.

Resolution order: ``--state-dir`` (global or per command), ``$HWTOKEN_STATE_DIR``,
``$XDG_DATA_HOME/hwtoken``, ``~/.local/share/hwtoken``.

The state directory and every folder in it are private (0700, :func:`private_dir`): their
file names alone (``keys/alice.key``, ``fido2/credentials/bank.example-alice-….json``) tell
other users which keys and accounts you have. A folder found open to others (an older
hwtoken made them 0755) is tightened, with a warning.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

#: What a virtual key's name may be: ASCII letters, digits, - and _ (64 at most), not
#: starting with - (it would read as an option).
KEY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")

PRIVATE_DIR_MODE = 0o700

_override: Path | None = None
_private: set[Path] = set()  # folders found (or made) private in this process


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


def private_dir(path: str | os.PathLike[str], *, create: bool = True) -> Path:
    """``path``, made private if it is the state directory or a folder in it.

    Each level from the state directory down to ``path`` that is missing is made 0700
    (with ``create``); one that exists, is ours and lets other users in is set to 0700
    with a warning on the ``hwtoken`` logger. A folder outside the state directory is
    only created (with ``create``), with the usual permissions.
    """
    path = Path(path)
    root = state_dir()
    try:
        rel = path.relative_to(root)
    except ValueError:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path
    if create:
        root.parent.mkdir(parents=True, exist_ok=True)
    level = root
    for part in ("", *rel.parts):
        level = level / part if part else level
        if level not in _private and not _make_private(level, create):
            break
    return path


def _make_private(d: Path, create: bool) -> bool:
    """Make ``d`` a private folder (see :func:`private_dir`); False if it is not there."""
    try:
        st = d.stat()
    except FileNotFoundError:
        if not create:
            return False
        try:
            d.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            return _make_private(d, create=False)
        _private.add(d)
        return True
    if not stat.S_ISDIR(st.st_mode):
        return False  # (whatever uses it says what is wrong)
    loose = stat.S_IMODE(st.st_mode) & 0o077
    if loose and st.st_uid == os.geteuid():
        os.chmod(d, PRIVATE_DIR_MODE)
        import logging

        logging.getLogger("hwtoken.paths").warning(
            "%s was open to other users (mode %04o): they could list your virtual keys and "
            "credential files; made it private (0700)", d, stat.S_IMODE(st.st_mode))
    if not loose or st.st_uid == os.geteuid():
        _private.add(d)
    return True
