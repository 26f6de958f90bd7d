"""The persisted state of one virtual key: one JSON file, one section per applet.

The file is created 0600 and rewritten atomically on every :meth:`KeyStore.commit`.
Bytes values are stored as ``{"$b64": "..."}`` so applets can keep raw bytes in their
sections. Applets own their section's layout; the store only persists it.

A commit is all or nothing, in memory too: when writing fails (disk full, I/O error) the
sections return to what was last committed (:meth:`KeyStore.rollback`) before the error
propagates, so a command that fails to save leaves no change behind that a later commit
could save after all.
"""

from __future__ import annotations

import base64
import json
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwtoken.errors import InvalidInput
from hwtoken.fileio import atomic_write
from hwtoken.paths import private_dir

FORMAT_VERSION = 1


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and "$b64" in value:
            return base64.b64decode(value["$b64"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _shape_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with the layout every applet relies on, or None."""
    for name, section in data.items():
        if name != "format" and not isinstance(section, dict):
            return f"section {name!r} is not an object"
    ident = data.get("identity")
    if ident is None:
        return "no identity section"
    serial = ident.get("serial")
    if isinstance(serial, bool) or not isinstance(serial, int) or not 0 < serial < 2**32:
        return "no valid serial number"
    version = ident.get("version")
    if not isinstance(version, list) or len(version) != 3 or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 256 for v in version):
        return "no valid firmware version"
    for field, size in (("aaguid", 16), ("master_secret", 32)):
        value = ident.get(field)
        if not isinstance(value, bytes) or len(value) != size:
            return f"no valid {field}"
    return None


class KeyStore:
    """Sections of state for one key, persisted atomically to ``path``."""

    def __init__(self, path: str | os.PathLike[str], data: dict[str, Any] | None = None,
                 *, committed: str | None = None) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = data if data is not None else {"format": FORMAT_VERSION}
        self.commits = 0
        #: the JSON text last written (or read): what :meth:`rollback` returns to; a store
        #: made from data in memory starts from that data
        if committed is None and data is not None:
            committed = json.dumps(_encode(data), separators=(",", ":"))
        self._committed = committed
        self._listeners: list[weakref.ref[Any] | Callable[[], None]] = []

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> KeyStore:
        """Read a store; a missing or damaged file raises :class:`InvalidInput`."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise InvalidInput(f"no virtual key state file at {path}") from None
        except OSError as exc:
            raise InvalidInput(f"cannot read virtual key state file {path}: "
                               f"{exc.strerror or exc}") from None
        try:
            doc = json.loads(raw)
        except ValueError:
            raise InvalidInput(f"virtual key state file {path} is damaged (not JSON)") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION:
            raise InvalidInput(f"{path} is not a hwtoken virtual key state file")
        try:
            data = _decode(doc)
        except ValueError:  # a "$b64" value that is not base64
            raise InvalidInput(f"virtual key state file {path} is damaged (bad base64)"
                               ) from None
        problem = _shape_problem(data)
        if problem:
            raise InvalidInput(f"virtual key state file {path} is damaged ({problem})")
        return cls(path, data, committed=raw.decode())

    def section(self, name: str) -> dict[str, Any]:
        """The mutable dict for applet ``name`` (created empty on first use)."""
        sec = self.data.get(name)
        if sec is None:
            sec = self.data[name] = {}
        return sec

    def commit(self) -> None:
        """Persist every section now (temp file, fsync, rename; mode 0600).

        If that fails, the sections are rolled back to the last committed state and the
        error is raised.
        """
        try:
            text = json.dumps(_encode(self.data), separators=(",", ":"))
            private_dir(self.path.parent)
            atomic_write(self.path, text)
        except BaseException:
            self.rollback()
            raise
        self._committed = text
        self.commits += 1

    def rollback(self) -> None:
        """Return every section to its last committed content.

        Section dicts are refilled in place, so applets holding one keep a valid view;
        listeners (:meth:`on_rollback`) drop whatever they derived from the old content.
        """
        if self._committed is None:
            snapshot: dict[str, Any] = {"format": FORMAT_VERSION}
        else:
            snapshot = _decode(json.loads(self._committed))
        for name in [n for n in self.data if n not in snapshot]:
            del self.data[name]
        for name, value in snapshot.items():
            current = self.data.get(name)
            if isinstance(current, dict) and isinstance(value, dict):
                current.clear()
                current.update(value)
            else:
                self.data[name] = value
        alive: list[weakref.ref[Any] | Callable[[], None]] = []
        for entry in self._listeners:
            callback = entry() if isinstance(entry, weakref.WeakMethod) else entry
            if callback is not None:
                alive.append(entry)
                callback()  # type: ignore[operator]
        self._listeners = alive

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every :meth:`rollback` (bound methods are held weakly)."""
        if hasattr(callback, "__self__"):
            self._listeners.append(weakref.WeakMethod(callback))  # type: ignore[arg-type]
        else:
            self._listeners.append(callback)
