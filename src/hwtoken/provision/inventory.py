"""The inventory: where every provisioned key's record lives, durably, before it is programmed.

``open_inventory(url)`` picks the backend: a SQLite file (``sqlite:///path`` or a plain path;
the default) or a shared PostgreSQL database (``postgresql://...``). Both keep the same
tables; the SQL differs only where the engines differ (placeholders, locking).

Concurrency model, the same for both backends:

* a record is *claimed* by inserting it; the serial is the primary key, so of two stations
  inserting the same serial exactly one succeeds;
* while a station programs and checks a key it *holds* the record (PostgreSQL: a
  session-level advisory lock; SQLite: a POSIX byte-range lock on ``<db>.holds``), so
  ``resume`` elsewhere waits for a key that a live station is still working on. A killed
  process loses its holds with its connection or file descriptor.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from hwtoken.errors import HwtokenError, InvalidInput
from hwtoken.provision.model import Mode, Record, State
from hwtoken.provision.sealing import Sealer, Unlocker, unlock

COLUMNS = ("serial", "mode", "slot", "digits", "touch", "name", "sealed", "state", "counter",
           "device", "station", "attempts", "last_error", "created_at", "updated_at",
           "programmed_at", "exported_at")


class RecordBusy(HwtokenError):
    """Another live station holds this record (it is programming that key right now)."""


class InventoryUnavailable(HwtokenError):
    """The inventory cannot be read or written now: the station stops (no key is ever
    programmed without its record committed first)."""


def station_id() -> str:
    """This process as a station: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def row_to_record(row: Sequence[Any]) -> Record:
    d = dict(zip(COLUMNS, row, strict=True))
    d["mode"] = Mode(d["mode"])
    d["state"] = State(d["state"])
    d["touch"] = bool(d["touch"])
    return Record(**d)


def _db_value(v: Any) -> Any:
    """A record field as the database stores it: enums by value, booleans as 0/1."""
    if isinstance(v, (Mode, State)):
        return v.value
    if isinstance(v, bool):
        return int(v)
    return v


def record_values(rec: Record) -> list[Any]:
    return [_db_value(getattr(rec, col)) for col in COLUMNS]


class Inventory(ABC):
    """Records of provisioned keys, with their secrets sealed."""

    #: placeholder style of the driver ("?" or "%s")
    param = "?"

    def __init__(self, url: str) -> None:
        self.url = url
        self._sealer: Sealer | None = None

    # -- the driver-specific part ----------------------------------------------------------
    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (in the current transaction, if any) and return its rows."""

    @abstractmethod
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction, committed durably on exit."""

    @abstractmethod
    @contextlib.contextmanager
    def hold(self, serial: int) -> Iterator[None]:
        """Hold ``serial`` exclusively among stations; :class:`RecordBusy` if held elsewhere."""

    @abstractmethod
    def close(self) -> None: ...

    def _lock_for_update(self) -> str:
        """Suffix locking selected rows inside a transaction (PostgreSQL's FOR UPDATE)."""
        return ""

    def __enter__(self) -> Inventory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def q(self, sql: str) -> str:
        return sql.replace("?", self.param) if self.param != "?" else sql

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._execute(self.q(sql), params)

    # -- sealing ----------------------------------------------------------------------------
    def unlock(self, source: Unlocker) -> Sealer:
        """Derive and check the sealing key (set it up on a new inventory)."""
        self._sealer = unlock(self.meta_get, self.meta_init, source)
        return self._sealer

    @property
    def sealer(self) -> Sealer:
        if self._sealer is None:
            raise InvalidInput("the inventory is locked: unlock it with its passphrase first")
        return self._sealer

    def seal(self, rec: Record, secret: bytes) -> None:
        rec.sealed = self.sealer.seal(secret, rec.aad())

    def secret(self, rec: Record) -> bytes:
        """The record's secret, opened with the inventory key."""
        return self.sealer.open(rec.sealed, rec.aad())

    # -- meta -------------------------------------------------------------------------------
    def meta_get(self, name: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def meta_init(self, name: str, value: str) -> str:
        with self.transaction():
            self.query("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                       (name, value))
        stored = self.meta_get(name)
        assert stored is not None
        return stored

    # -- records ------------------------------------------------------------------------------
    def get(self, serial: int) -> Record | None:
        rows = self.query(f"SELECT {', '.join(COLUMNS)} FROM records WHERE serial = ?", (serial,))  # noqa: S608
        return row_to_record(rows[0]) if rows else None

    def claim(self, rec: Record, *, reprogram: bool = False) -> bool:
        """Durably record ``rec`` as pending. False if the serial is taken (and not reprogram).

        With ``reprogram`` an existing record is replaced (new secret, state pending, not
        exported), inside one transaction that locks the row.
        """
        now = time.time()
        rec.created_at = rec.created_at or now
        rec.updated_at = now
        rec.state = State.PENDING
        placeholders = ", ".join("?" for _ in COLUMNS)
        with self.transaction():
            existing = self.query("SELECT state FROM records WHERE serial = ?"  # noqa: S608
                                  + self._lock_for_update(), (rec.serial,))
            if existing and not reprogram:
                return False
            if existing:
                sets = ", ".join(f"{c} = ?" for c in COLUMNS[1:])
                self.query(f"UPDATE records SET {sets} WHERE serial = ?",  # noqa: S608
                           [*record_values(rec)[1:], rec.serial])
                return True
            rows = self.query(f"INSERT INTO records ({', '.join(COLUMNS)}) VALUES ({placeholders}) "  # noqa: S608
                              "ON CONFLICT (serial) DO NOTHING RETURNING serial",
                              record_values(rec))
            return bool(rows)

    def update(self, serial: int, **fields: Any) -> None:
        """Change some fields of a record durably (``updated_at`` is set too)."""
        fields["updated_at"] = time.time()
        for k, v in fields.items():
            if k not in COLUMNS or k == "serial":
                raise ValueError(f"unknown record field {k}")
            fields[k] = _db_value(v)
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction():
            self.query(f"UPDATE records SET {sets} WHERE serial = ?", [*fields.values(), serial])  # noqa: S608

    def records(self, *, states: Iterable[State] | None = None,
                unexported: bool = False) -> list[Record]:
        sql = f"SELECT {', '.join(COLUMNS)} FROM records"  # noqa: S608 (column names are constants)
        where, params = [], []
        if states is not None:
            sts = [s.value for s in states]
            where.append(f"state IN ({', '.join('?' for _ in sts)})")
            params.extend(sts)
        if unexported:
            where.append("exported_at IS NULL")
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [row_to_record(r) for r in self.query(sql + " ORDER BY created_at, serial", params)]

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in State}
        for state, n in self.query("SELECT state, COUNT(*) FROM records GROUP BY state"):
            out[state] = int(n)
        out["exported"] = int(self.query(
            "SELECT COUNT(*) FROM records WHERE exported_at IS NOT NULL")[0][0])
        return out

    def mark_exported(self, serials: Iterable[int], at: float | None = None, *,
                      sealed: dict[int, str] | None = None) -> None:
        """Mark records exported. With ``sealed`` (serial -> the sealed secret that went
        into the file) a record reprogrammed since it was read keeps its new secret
        unexported."""
        at = at or time.time()
        with self.transaction():
            for s in serials:
                if sealed is not None and s in sealed:
                    self.query("UPDATE records SET exported_at = ? WHERE serial = ? "
                               "AND sealed = ?", (at, s, sealed[s]))
                else:
                    self.query("UPDATE records SET exported_at = ? WHERE serial = ?", (at, s))

    # -- events (audit trail; never secrets) ---------------------------------------------------
    def log_event(self, kind: str, message: str, serial: int | None = None) -> None:
        with self.transaction():
            self.query("INSERT INTO events (at, station, serial, kind, message) "
                       "VALUES (?, ?, ?, ?, ?)", (time.time(), station_id(), serial, kind, message))

    def last_error(self) -> dict[str, Any] | None:
        rows = self.query("SELECT at, station, serial, message FROM events WHERE kind = 'error' "
                          "ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        at, station, serial, message = rows[0]
        return {"at": at, "station": station, "serial": serial, "message": message}


def open_inventory(url: str, *, create: bool = True) -> Inventory:
    """Open the inventory at ``url``: ``sqlite:///path``, a plain path, or ``postgresql://``."""
    if not url:
        raise InvalidInput("--inventory is required (a file path, sqlite:///path or postgresql://)")
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from hwtoken.provision.postgres import PostgresInventory
        except ImportError:  # pragma: no cover - extras missing
            raise InvalidInput("a PostgreSQL inventory needs psycopg: "
                               "pip install 'hwtoken[provision]'") from None
        return PostgresInventory(url)
    if url.startswith("sqlite://"):
        # sqlite:///abs/file.db and sqlite:////abs/file.db -> /abs/file.db; sqlite://rel.db
        path = url[len("sqlite://"):]
        path = path[1:] if path.startswith("//") else path
        if not path:
            raise InvalidInput("sqlite:// URL without a path: use sqlite:///path/to/inventory.db")
    elif "://" in url:
        raise InvalidInput(f"unsupported inventory URL {url.split('://')[0]}://: "
                           "use a path, sqlite:///path or postgresql://")
    else:
        path = url
    from hwtoken.provision.sqlite import SqliteInventory

    return SqliteInventory(path, create=create)
