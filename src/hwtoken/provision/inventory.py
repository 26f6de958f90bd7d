"""The inventory: where every provisioned key's record lives, durably, before it is programmed.

``open_inventory(url)`` picks the backend: a SQLite file (``sqlite:///path`` or a plain path;
the default) or a shared PostgreSQL database (``postgresql://...``). Both keep the same
tables (:mod:`hwtoken.provision.schema`, upgraded in place when an older inventory is
opened); the SQL differs only where the engines differ (placeholders, locking).

A key may have several records: one per place on it, named by :class:`RecordKey`
``(serial, application, target)`` -- slot 1 challenge-response, slot 2 HOTP and OATH
credentials on one key are three records.

Concurrency model, the same for both backends:

* a record is *claimed* by inserting it; ``(serial, application, target)`` is the primary
  key, so of two stations inserting the same record exactly one succeeds;
* while a station programs and checks a key it *holds* the key's serial (PostgreSQL: a
  session-level advisory lock; SQLite: a POSIX byte-range lock on ``<db>.holds``), so
  ``resume`` elsewhere waits for a key that a live station is still working on. A killed
  process loses its holds with its connection or file descriptor.

Export state is kept per *kind* of export (``TARGET:FORMAT``, e.g. ``privacyidea:csv``) in
the ``exports`` table: one row per record and kind with the sealed secret that went into
the file. A record counts as exported for a kind while its current sealed secret is the one
recorded there, so a reprogrammed key (new secret) is due again everywhere, and a PSKC
export does not hide it from a CSV export.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from hwtoken.errors import HwtokenError, InvalidInput
from hwtoken.provision import schema
from hwtoken.provision.model import Mode, Note, Record, RecordKey, State, generation_of
from hwtoken.provision.schema import COLUMNS, LEGACY_EXPORT_KIND
from hwtoken.provision.sealing import Sealer, Unlocker, unlock

__all__ = ["COLUMNS", "LEGACY_EXPORT_KIND", "Inventory", "InventoryUnavailable", "RecordBusy",
           "open_inventory", "station_id"]

_KEY_WHERE = "serial = ? AND application = ? AND target = ?"


class RecordBusy(HwtokenError):
    """Another live station holds this key (it is programming it right now)."""


class InventoryUnavailable(HwtokenError):
    """The inventory cannot be read or written now: the station stops (no key is ever
    programmed without its record committed first)."""


_SEALED = "+sealed"  # the kind of a note that holds a sealed secret ends so


def _note_aad(key: RecordKey, kind: str) -> bytes:
    return f"hwtoken-provision:note:{key.serial}:{key.application}:{key.target}:{kind}".encode()


def station_id() -> str:
    """This process as a station: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def row_to_record(row: Sequence[Any]) -> Record:
    d = dict(zip(COLUMNS, row, strict=True))
    del d["application"], d["target"]  # derived from the mode, slot and name
    d["mode"] = Mode(d["mode"])
    d["state"] = State(d["state"])
    d["touch"] = bool(d["touch"])
    d["params"] = json.loads(d["params"] or "{}")
    return Record(**d)


def _db_value(v: Any) -> Any:
    """A record field as the database stores it: enums by value, booleans as 0/1,
    parameters as JSON."""
    if isinstance(v, (Mode, State)):
        return v.value
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return v


def record_values(rec: Record) -> list[Any]:
    return [_db_value(getattr(rec, col)) for col in COLUMNS]


class Inventory(ABC):
    """Records of provisioned keys, with their secrets sealed."""

    #: placeholder style of the driver ("?" or "%s")
    param = "?"
    #: the SQL dialect of :mod:`hwtoken.provision.schema`
    dialect = "sqlite"

    def __init__(self, url: str) -> None:
        self.url = url
        self._sealer: Sealer | None = None
        #: this open made the inventory's tables (a new inventory, or a typo in its name)
        self.created = False

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

    @abstractmethod
    def _has_table(self, name: str) -> bool:
        """True if the table ``name`` exists."""

    @contextlib.contextmanager
    def _schema_lock(self) -> Iterator[None]:
        """Around a transaction that may change the schema: keep other stations from
        changing it meanwhile (SQLite's write transaction already does)."""
        yield

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

    # -- schema -----------------------------------------------------------------------------
    def _version(self) -> int:
        return schema.version_of(self._has_table, self.meta_get)

    def _ensure_schema(self) -> None:
        """Make a new inventory's tables, or upgrade an older one in place (one transaction:
        a station killed half-way leaves it as it was)."""
        if self._version() == schema.VERSION:  # the usual case: no write lock on every open
            return
        from hwtoken.provision.faults import FaultInjector

        fault = FaultInjector.from_env()
        with self._schema_lock(), self.transaction():
            version = self._version()
            if version == 0:
                steps = schema.create(self.dialect)
                self.created = True
            elif version in (1, 2):
                steps = schema.upgrade(self.dialect, version,
                                       export_state=self.meta_get("export_state") is not None)
            elif version == schema.VERSION:
                return
            else:
                raise InvalidInput(f"the inventory {self.url} has schema version {version}, "
                                   f"which this hwtoken does not know (it knows up to "
                                   f"{schema.VERSION}): upgrade hwtoken")
            for statement in steps:
                self.query(statement)
                if version:
                    fault("upgrade", None)

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

    def seal(self, rec: Record, secret: bytes, access_code: bytes | None = None) -> None:
        """Seal ``secret`` (and the slot's ``access_code``, if any) into ``rec``."""
        rec.sealed = self.sealer.seal(secret, rec.aad())
        self.seal_access_code(rec, access_code)

    def seal_access_code(self, rec: Record, access_code: bytes | None) -> None:
        """Seal the access code the record leaves on its slot (None: none) into ``rec``."""
        rec.access_code = (None if access_code is None
                           else self.sealer.seal(access_code, rec.access_aad()))

    def secret(self, rec: Record) -> bytes:
        """The record's secret, opened with the inventory key."""
        return self.sealer.open(rec.sealed, rec.aad())

    def access_code(self, rec: Record) -> bytes | None:
        """The access code the record left on its slot (None if none)."""
        if rec.access_code is None:
            return None
        return self.sealer.open(rec.access_code, rec.access_aad())

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
    def get(self, key: RecordKey) -> Record | None:
        rows = self.query(f"SELECT {', '.join(COLUMNS)} FROM records WHERE {_KEY_WHERE}",  # noqa: S608
                          tuple(key))
        return row_to_record(rows[0]) if rows else None

    def claim(self, rec: Record, *, reprogram: bool = False) -> bool:
        """Durably record ``rec`` as pending. False if its place is taken (and not reprogram).

        With ``reprogram`` an existing record is replaced (new secret, state pending, not
        exported), inside one transaction that locks the row.
        """
        now = time.time()
        rec.created_at = rec.created_at or now
        rec.updated_at = now
        rec.state = State.PENDING
        placeholders = ", ".join("?" for _ in COLUMNS)
        with self.transaction():
            existing = self.query(f"SELECT state FROM records WHERE {_KEY_WHERE}"  # noqa: S608
                                  + self._lock_for_update(), tuple(rec.key))
            if existing and not reprogram:
                return False
            if existing:
                sets = ", ".join(f"{c} = ?" for c in COLUMNS[3:])
                self.query(f"UPDATE records SET {sets} WHERE {_KEY_WHERE}",  # noqa: S608
                           [*record_values(rec)[3:], *rec.key])
                return True
            rows = self.query(f"INSERT INTO records ({', '.join(COLUMNS)}) VALUES ({placeholders}) "  # noqa: S608
                              "ON CONFLICT (serial, application, target) DO NOTHING "
                              "RETURNING serial", record_values(rec))
            return bool(rows)

    def update(self, key: RecordKey, **fields: Any) -> None:
        """Change some fields of a record durably (``updated_at`` is set too)."""
        fields["updated_at"] = time.time()
        for k, v in fields.items():
            if k not in COLUMNS or k in schema.KEY_COLUMNS:
                raise ValueError(f"unknown record field {k}")
            fields[k] = _db_value(v)
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction():
            self.query(f"UPDATE records SET {sets} WHERE {_KEY_WHERE}",  # noqa: S608
                       [*fields.values(), *key])

    def records(self, *, states: Iterable[State] | None = None,
                not_exported_as: str | None = None, serial: int | None = None) -> list[Record]:
        """Records in ``states`` (all if None), of key ``serial`` (all if None); with
        ``not_exported_as`` only those whose current secret no export of that kind
        (``TARGET:FORMAT``) has written yet."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM records"  # noqa: S608 (column names are constants)
        where: list[str] = []
        params: list[Any] = []
        if states is not None:
            sts = [s.value for s in states]
            where.append(f"state IN ({', '.join('?' for _ in sts)})")
            params.extend(sts)
        if serial is not None:
            where.append("serial = ?")
            params.append(serial)
        if not_exported_as is not None:
            where.append("NOT EXISTS (SELECT 1 FROM exports e WHERE e.serial = records.serial "
                         "AND e.application = records.application "
                         "AND e.target = records.target "
                         "AND e.sealed = records.sealed AND e.kind IN (?, ?))")
            params.extend([not_exported_as, LEGACY_EXPORT_KIND])
        if where:
            sql += " WHERE " + " AND ".join(where)
        order = " ORDER BY created_at, serial, application, target"
        return [row_to_record(r) for r in self.query(sql + order, params)]

    def forget(self, key: RecordKey) -> bool:
        """Drop one record, its export state and its journal (the key keeps what it
        holds). False if there was no such record."""
        with self.transaction():
            self.query(f"DELETE FROM exports WHERE {_KEY_WHERE}", tuple(key))  # noqa: S608
            self.query(f"DELETE FROM artifacts WHERE {_KEY_WHERE}", tuple(key))  # noqa: S608
            rows = self.query(f"DELETE FROM records WHERE {_KEY_WHERE} RETURNING serial",  # noqa: S608
                              tuple(key))
        return bool(rows)

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in State}
        for state, n in self.query("SELECT state, COUNT(*) FROM records GROUP BY state"):
            out[state] = int(n)
        out["exported"] = int(self.query(
            "SELECT COUNT(*) FROM records WHERE exported_at IS NOT NULL")[0][0])
        return out

    def mark_exported(self, sealed: dict[RecordKey, str], kind: str,
                      at: float | None = None) -> None:
        """Record that an export of ``kind`` wrote these records (key -> the sealed secret
        that went into the file). A record reprogrammed since it was read has another
        sealed secret, so it stays due for the next export."""
        at = at or time.time()
        with self.transaction():
            for key, sealed_secret in sealed.items():
                self.query("INSERT INTO exports (serial, application, target, kind, sealed, at) "
                           "VALUES (?, ?, ?, ?, ?, ?) "
                           "ON CONFLICT (serial, application, target, kind) DO UPDATE SET "
                           "sealed = excluded.sealed, at = excluded.at",
                           (*key, kind, sealed_secret, at))
                self.query(f"UPDATE records SET exported_at = ? WHERE {_KEY_WHERE} "  # noqa: S608
                           "AND sealed = ?", (at, *key, sealed_secret))

    # -- a record's journal (artifacts) ------------------------------------------------------
    def note(self, key: RecordKey, kind: str, value: str, *, sealed: bool = False) -> None:
        """Write ``value`` down under ``kind`` for the current generation of record ``key``,
        durably (committed before this returns). Never a secret unless ``sealed``."""
        with self.transaction():
            rows = self.query(f"SELECT sealed FROM records WHERE {_KEY_WHERE}",  # noqa: S608
                              tuple(key))
            if not rows:
                raise InvalidInput(f"no record {key.label} to write {kind} down for")
            self.query("INSERT INTO artifacts (serial, application, target, generation, kind, "
                       "value, at, station) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (*key, generation_of(rows[0][0]), kind + (_SEALED if sealed else ""),
                        value, time.time(), station_id()))

    def note_secret(self, key: RecordKey, kind: str, secret: bytes) -> None:
        """Write ``secret`` down sealed (its associated data binds it to the record and
        ``kind``): a programmer's copy of credentials it may need after a reprogram."""
        self.note(key, kind, self.sealer.seal(secret, _note_aad(key, kind)), sealed=True)

    def open_note(self, key: RecordKey, note: Note) -> bytes:
        """The secret a sealed note holds."""
        if not note.sealed:
            raise ValueError("this note holds no sealed secret")
        return self.sealer.open(note.value, _note_aad(key, note.kind))

    def notes(self, key: RecordKey) -> list[Note]:
        """The journal of record ``key``, oldest first, every generation (``current``:
        the record's current one). Empty if there is no such record."""
        rows = self.query(f"SELECT sealed FROM records WHERE {_KEY_WHERE}",  # noqa: S608
                          tuple(key))
        if not rows:
            return []
        current = generation_of(rows[0][0])
        sql = f"SELECT kind, value, at, station, generation FROM artifacts WHERE {_KEY_WHERE}"  # noqa: S608
        found = self.query(sql + " ORDER BY id", tuple(key))
        return [Note(kind.removesuffix(_SEALED), value, at, station, generation,
                     generation == current, kind.endswith(_SEALED))
                for kind, value, at, station, generation in found]

    # -- events (audit trail; never secrets) ---------------------------------------------------
    def log_event(self, kind: str, message: str, serial: int | None = None,
                  place: str | None = None) -> None:
        """Append to the audit trail (``place``: where on the key, e.g. ``slot 2``)."""
        with self.transaction():
            self.query("INSERT INTO events (at, station, serial, kind, message, place) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (time.time(), station_id(), serial, kind, message, place))

    def last_error(self) -> dict[str, Any] | None:
        rows = self.query("SELECT at, station, serial, message, place FROM events "
                          "WHERE kind = 'error' ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        at, station, serial, message, place = rows[0]
        return {"at": at, "station": station, "serial": serial, "place": place,
                "message": message}


def open_inventory(url: str, *, create: bool = True) -> Inventory:
    """Open the inventory at ``url``: ``sqlite:///path``, a plain path, or ``postgresql://``.

    A new SQLite file goes into a directory that must exist (a typo in the path is an
    error, not a new directory); ``create=False`` refuses a file that does not exist.
    """
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
