"""PostgreSQL inventory shared by many provisioning stations (psycopg 3).

* ``(serial, application, target)`` is the primary key: ``INSERT ... ON CONFLICT DO
  NOTHING`` lets exactly one station claim a record; a reprogram rewrites the row under
  ``SELECT ... FOR UPDATE``;
* a station holds a key while it programs and checks it with a session-level
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
from hwtoken.provision.schema import meta_ddl

HOLD_NAMESPACE = 0x6877 << 32  # "hw": keeps our advisory lock keys apart from others'
SCHEMA_LOCK = 0x68777470726F76  # advisory lock serialising schema creation and upgrades


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0]) if text else "no details"


def redact(url: str) -> str:
    """The URL without its password (for messages)."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


class PostgresInventory(Inventory):
    """An inventory in a PostgreSQL database."""

    param = "%s"
    dialect = "postgres"

    def __init__(self, url: str) -> None:
        super().__init__(redact(url))
        try:
            self._db = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise InvalidInput(f"cannot connect to the inventory {redact(url)}: "
                               f"{_first_line(exc)}") from None
        self._txn: Any = None
        with self._schema_lock(), self.transaction():
            self._execute(meta_ddl())
        self._ensure_schema()

    @contextlib.contextmanager
    def _schema_lock(self) -> Iterator[None]:
        """A session-level advisory lock taken *before* the transaction starts: a
        transaction that began while another station was creating the tables would still
        see the catalog from before (an advisory lock does not refresh it), miss the new
        tables and create them again (DuplicateTable); one that starts after the lock
        sees them."""
        self._execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                self._db.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))

    def _has_table(self, name: str) -> bool:
        rows = self._execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
        return bool(rows and rows[0][0])

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
