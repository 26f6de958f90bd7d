"""SQLite inventory: one file (0600), WAL journal, ``synchronous=FULL``.

Several processes on one machine may share the file: writes take SQLite's write lock
(``BEGIN IMMEDIATE``, waiting up to 30 s), and a station holds a record with a POSIX
byte-range lock on ``<file>.holds`` at offset = serial. The database and ``.holds`` are
opened only when they are the user's own regular files, never through a symbolic link
(:func:`hwtoken.fileio.open_own_file`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hwtoken.errors import InvalidInput
from hwtoken.fileio import open_own_file
from hwtoken.provision.inventory import Inventory, InventoryUnavailable, RecordBusy
from hwtoken.provision.schema import meta_ddl


class SqliteInventory(Inventory):
    """The default inventory: a local SQLite file."""

    param = "?"

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path).expanduser().absolute()
        super().__init__(f"sqlite://{self.path}")
        if self.path.is_dir():
            raise InvalidInput(f"the inventory {self.path} is a directory; give a file name "
                               "such as keys.db")
        if not self.path.exists() and not self.path.is_symlink():
            if not create:
                raise InvalidInput(f"no inventory at {self.path}")
            if not self.path.parent.is_dir():  # a typo in the path, not a new directory
                raise InvalidInput(f"cannot create the inventory {self.path}: its directory "
                                   f"{self.path.parent} does not exist")
        # created 0600 before SQLite touches it (its -wal/-shm files copy the mode); an
        # existing one must be ours and not a link another user planted
        try:
            os.close(open_own_file(self.path, os.O_RDONLY | os.O_CREAT, what="inventory"))
        except OSError as exc:
            raise InvalidInput(f"cannot create the inventory {self.path}: "
                               f"{exc.strerror}") from None
        self._db = self._connect()
        self._in_txn = False
        self._holds_fd: int | None = None
        self._ensure_schema()

    def _connect(self) -> sqlite3.Connection:
        # switching a new file to WAL needs a moment alone with it: a second station
        # opening at the same instant gets "locked" at once (no busy wait), so retry
        deadline = time.monotonic() + 30.0
        while True:
            try:
                db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                     check_same_thread=False)
            except sqlite3.Error as exc:
                raise InvalidInput(f"cannot open the inventory {self.path}: {exc}") from None
            try:
                db.execute("PRAGMA busy_timeout=30000")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute(meta_ddl())
                return db
            except sqlite3.OperationalError as exc:
                db.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise InvalidInput(f"{self.path} is not a usable inventory database "
                                       f"({exc})") from None
                time.sleep(0.05)
            except sqlite3.DatabaseError as exc:
                db.close()
                raise InvalidInput(f"{self.path} is not a usable inventory database "
                                   f"({exc})") from None

    def _has_table(self, name: str) -> bool:
        return bool(self._execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                  "AND name = ?", (name,)))

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self._db.execute(sql, tuple(params)).fetchall())
        except sqlite3.OperationalError as exc:  # locked past the timeout, disk full, I/O
            raise InventoryUnavailable(f"the inventory {self.path} cannot be used now: "
                                       f"{exc}") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_txn:
            yield
            return
        self._execute("BEGIN IMMEDIATE")
        self._in_txn = True
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._execute("COMMIT")
        finally:
            self._in_txn = False

    @contextlib.contextmanager
    def hold(self, serial: int) -> Iterator[None]:
        if self._holds_fd is None:
            try:
                self._holds_fd = open_own_file(f"{self.path}.holds",
                                               what="inventory's hold file")
            except OSError as exc:
                raise InvalidInput(f"cannot open {self.path}.holds: {exc.strerror}") from None
        try:
            fcntl.lockf(self._holds_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, int(serial))
        except OSError:
            raise RecordBusy(f"key {serial} is being programmed by another station") from None
        try:
            yield
        finally:
            fcntl.lockf(self._holds_fd, fcntl.LOCK_UN, 1, int(serial))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._db.close()
        if self._holds_fd is not None:
            os.close(self._holds_fd)
            self._holds_fd = None
