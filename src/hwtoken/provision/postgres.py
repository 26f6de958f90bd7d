"""PostgreSQL inventory shared by many provisioning stations (psycopg 3).

* the serial is the primary key: ``INSERT ... ON CONFLICT DO NOTHING`` lets exactly one
  station claim a key; a reprogram rewrites the row under ``SELECT ... FOR UPDATE``;
* a station holds a record while it programs and checks the key with a session-level
  advisory lock (``pg_try_advisory_lock``), released when its connection ends, also when
  the process is killed; ``resume`` waits for records another live station holds. (A row lock
  would not do: the station commits the record's steps while it holds it.)
* every write is its own committed transaction (``synchronous_commit`` as configured).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

from hwtoken.errors import InvalidInput
from hwtoken.provision.inventory import Inventory, InventoryUnavailable, RecordBusy

HOLD_NAMESPACE = 0x6877 << 32  # "hw": keeps our advisory lock keys apart from others'
SCHEMA_LOCK = 0x68777470726F76  # advisory lock serialising schema creation

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS records (
        serial BIGINT PRIMARY KEY,
        mode TEXT NOT NULL, slot INTEGER NOT NULL, digits INTEGER NOT NULL,
        touch INTEGER NOT NULL, name TEXT NOT NULL, sealed TEXT NOT NULL,
        state TEXT NOT NULL, counter BIGINT NOT NULL DEFAULT 0,
        device TEXT NOT NULL, station TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT, created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL, programmed_at DOUBLE PRECISION,
        exported_at DOUBLE PRECISION)""",
    "CREATE INDEX IF NOT EXISTS records_state ON records (state)",
    """CREATE TABLE IF NOT EXISTS events (
        id BIGSERIAL PRIMARY KEY, at DOUBLE PRECISION NOT NULL, station TEXT NOT NULL,
        serial BIGINT, kind TEXT NOT NULL, message TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS exports (
        serial BIGINT NOT NULL, kind TEXT NOT NULL, sealed TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL, PRIMARY KEY (serial, kind))""",
]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0]) if text else type(exc).__name__


def redact(url: str) -> str:
    """The URL without its password (for messages)."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


class PostgresInventory(Inventory):
    """An inventory in a PostgreSQL database."""

    param = "%s"

    def __init__(self, url: str) -> None:
        super().__init__(redact(url))
        try:
            self._db = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise InvalidInput(f"cannot connect to the inventory {redact(url)}: "
                               f"{_first_line(exc)}") from None
        self._txn: Any = None
        with self.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for stmt in SCHEMA:
                self._db.execute(stmt)
            self._init_export_state()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            cur = self._db.execute(sql, tuple(params))  # type: ignore[arg-type]
            return list(cur.fetchall()) if cur.description is not None else []
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise InventoryUnavailable(f"lost the inventory {self.url}: "
                                       f"{_first_line(exc)}") from None

    def _lock_for_update(self) -> str:
        return " FOR UPDATE"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._txn is not None:
            yield
            return
        try:
            with self._db.transaction() as txn:
                self._txn = txn
                try:
                    yield
                finally:
                    self._txn = None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise InventoryUnavailable(f"lost the inventory {self.url}: "
                                       f"{_first_line(exc)}") from None

    @contextlib.contextmanager
    def hold(self, serial: int) -> Iterator[None]:
        key = HOLD_NAMESPACE | int(serial)
        got = self._execute("SELECT pg_try_advisory_lock(%s)", (key,))
        if not got or not got[0][0]:
            raise RecordBusy(f"key {serial} is being programmed by another station")
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                self._db.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._db.close()
