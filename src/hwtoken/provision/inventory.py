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

Export state is kept per *kind* of export (``TARGET:FORMAT``, e.g. ``privacyidea:csv``) in
the ``exports`` table: one row per key and kind with the sealed secret that went into the
file. A key counts as exported for a kind while its current sealed secret is the one
recorded there, so a reprogrammed key (new secret) is due again everywhere, and a PSKC
export does not hide a key from a CSV export.
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

#: export kind of the rows written by inventories from before per-kind export state: such
#: a key counts as exported for every kind (it went to *some* validation server)
LEGACY_EXPORT_KIND = "legacy"

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
                not_exported_as: str | None = None) -> list[Record]:
        """Records in ``states`` (all if None); with ``not_exported_as`` only those whose
        current secret no export of that kind (``TARGET:FORMAT``) has written yet."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM records"  # noqa: S608 (column names are constants)
        where: list[str] = []
        params: list[Any] = []
        if states is not None:
            sts = [s.value for s in states]
            where.append(f"state IN ({', '.join('?' for _ in sts)})")
            params.extend(sts)
        if not_exported_as is not None:
            where.append("NOT EXISTS (SELECT 1 FROM exports e WHERE e.serial = records.serial "
                         "AND e.sealed = records.sealed AND e.kind IN (?, ?))")
            params.extend([not_exported_as, LEGACY_EXPORT_KIND])
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

    def mark_exported(self, sealed: dict[int, str], kind: str, at: float | None = None) -> None:
        """Record that an export of ``kind`` wrote these keys (serial -> the sealed secret
        that went into the file). A record reprogrammed since it was read has another
        sealed secret, so it stays due for the next export."""
        at = at or time.time()
        with self.transaction():
            for serial, sealed_secret in sealed.items():
                self.query("INSERT INTO exports (serial, kind, sealed, at) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (serial, kind) DO UPDATE SET sealed = excluded.sealed, "
                           "at = excluded.at", (serial, kind, sealed_secret, at))
                self.query("UPDATE records SET exported_at = ? WHERE serial = ? AND sealed = ?",
                           (at, serial, sealed_secret))

    def _init_export_state(self) -> None:
        """Carry an inventory from before per-kind export state over, once: a key an
        export had already taken then counts as exported for every kind."""
        if self.meta_get("export_state") is not None:  # done: no write lock on every open
            return
        with self.transaction():
            if self.meta_get("export_state") is not None:
                return
            self.query("INSERT INTO exports (serial, kind, sealed, at) "
                       "SELECT serial, ?, sealed, exported_at FROM records "
                       "WHERE exported_at IS NOT NULL ON CONFLICT (serial, kind) DO NOTHING",
                       (LEGACY_EXPORT_KIND,))
            self.query("INSERT INTO meta (name, value) VALUES ('export_state', 'per-kind') "
                       "ON CONFLICT (name) DO NOTHING")

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
