"""The inventory's tables (provision/schema.py), in-process on SQLite: exactly the tables a
new inventory gets, the same ones after an upgrade from schema 1 or 2 (with every record,
export and event carried over), and how an inventory's version is read."""

from __future__ import annotations

import sqlite3

import pytest
from provision_helpers import make_v1_inventory, opened

from hwtoken.provision import schema
from hwtoken.provision.inventory import open_inventory
from hwtoken.provision.model import LEGACY_AAD, RecordKey

#: a new SQLite inventory, as ``sqlite3``'s .schema shows it (whitespace folded)
NEW_TABLES = {
    ("table", "artifacts"): "CREATE TABLE artifacts ( id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "serial INTEGER NOT NULL, application TEXT NOT NULL, target TEXT NOT NULL, generation "
    "TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, at REAL NOT NULL, station TEXT "
    "NOT NULL)",
    ("index", "artifacts_record"):
        "CREATE INDEX artifacts_record ON artifacts (serial, application, target)",
    ("table", "events"): "CREATE TABLE events ( id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL "
    "NOT NULL, station TEXT NOT NULL, serial INTEGER, kind TEXT NOT NULL, message TEXT NOT "
    "NULL, place TEXT)",
    ("table", "exports"): "CREATE TABLE exports ( serial INTEGER NOT NULL, application TEXT "
    "NOT NULL, target TEXT NOT NULL, kind TEXT NOT NULL, sealed TEXT NOT NULL, at REAL NOT "
    "NULL, PRIMARY KEY (serial, application, target, kind))",
    ("table", "meta"): "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ("table", "records"): "CREATE TABLE records ( serial INTEGER NOT NULL, application TEXT "
    "NOT NULL, target TEXT NOT NULL, mode TEXT NOT NULL, slot INTEGER NOT NULL, digits "
    "INTEGER NOT NULL, touch INTEGER NOT NULL, name TEXT NOT NULL, sealed TEXT NOT NULL, "
    "state TEXT NOT NULL, counter INTEGER NOT NULL DEFAULT 0, device TEXT NOT NULL, station "
    "TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, created_at REAL NOT "
    "NULL, updated_at REAL NOT NULL, programmed_at REAL, exported_at REAL, access_code TEXT, "
    "params TEXT NOT NULL DEFAULT '{}', aad_version INTEGER NOT NULL DEFAULT 2, PRIMARY KEY "
    "(serial, application, target))",
    ("index", "records_state"): "CREATE INDEX records_state ON records (state)",
}
META = [("export_state", "per-kind"), ("schema", "3")]

SECRETS = {501: b"\x01" * 20, 502: b"\x02" * 20, 503: b"\x03" * 20, 504: b"\x04" * 20}
OLD = [
    {"serial": 501, "mode": "hotp", "slot": 1, "digits": 8, "name": "hwtoken",
     "secret": SECRETS[501], "state": "done", "counter": 4, "exported_at": 1_700_000_000.0},
    {"serial": 502, "mode": "chalresp", "slot": 2, "digits": 6, "name": "hwtoken",
     "secret": SECRETS[502], "state": "done"},
    {"serial": 503, "mode": "yubiotp", "slot": 1, "digits": 6, "name": "hwtoken",
     "secret": SECRETS[503], "state": "pending"},
    {"serial": 504, "mode": "oath-totp", "slot": 2, "digits": 6, "name": "mail",
     "secret": SECRETS[504], "state": "done", "exported_at": 1_700_000_001.0},
]


def tables(path) -> dict[tuple[str, str], str]:
    """Every table and index (but SQLite's own) -> its DDL, whitespace folded."""
    db = sqlite3.connect(path)
    try:
        return {(kind, name): " ".join(sql.split()) for kind, name, sql in db.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND name != 'sqlite_sequence'")}
    finally:
        db.close()


def columns(path) -> dict[str, list[tuple]]:
    """Each table's columns: name, declared type, not null, default, part of the key."""
    db = sqlite3.connect(path)
    try:
        names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                          "AND name != 'sqlite_sequence'")]
        return {n: [c[1:] for c in db.execute(f"PRAGMA table_info({n})")] for n in names}
    finally:
        db.close()


def rows(path, sql: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return sorted(db.execute(sql).fetchall())
    finally:
        db.close()


def test_a_new_inventory_gets_exactly_these_tables(tmp_path):
    path = tmp_path / "new.db"
    with opened(str(path)) as inv:
        assert inv.created
    assert tables(path) == NEW_TABLES
    assert rows(path, "SELECT name, value FROM meta WHERE name IN ('schema', "
                      "'export_state')") == rows(path, "SELECT name, value FROM meta WHERE "
                                                  "name != 'sealing'") == META


def test_the_statements_of_a_new_inventory():
    for dialect in ("sqlite", "postgres"):
        steps = schema.create(dialect)
        assert len(steps) == 8
        assert steps[-2:] == ["INSERT INTO meta (name, value) VALUES ('schema', '3')",
                              "INSERT INTO meta (name, value) VALUES ('export_state', "
                              "'per-kind')"]
    assert schema.meta_ddl() == ("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, "
                                 "value TEXT NOT NULL)")
    assert "BIGSERIAL PRIMARY KEY" in schema.create("postgres")[2]
    assert "BIGINT NOT NULL" in schema.create("postgres")[0]


@pytest.mark.parametrize("export_state", [True, False])
def test_a_schema_1_inventory_is_upgraded_to_the_tables_of_a_new_one(tmp_path, export_state):
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    make_v1_inventory(str(old), OLD, export_state=export_state,
                      exports=[(501, "privacyidea:csv"), (502, "generic:pskc")])
    with opened(str(new)):
        pass
    with opened(str(old)) as inv:
        assert not inv.created
        records = {r.serial: r for r in inv.records()}
        assert {s: r.key for s, r in records.items()} == {
            501: RecordKey(501, "otp", "1"), 502: RecordKey(502, "otp", "2"),
            503: RecordKey(503, "otp", "1"), 504: RecordKey(504, "oath", "mail")}
        for serial, rec in records.items():
            assert rec.aad_version == LEGACY_AAD and inv.secret(rec) == SECRETS[serial]
            assert rec.access_code is None and rec.params == {}
        assert (records[501].counter, records[501].digits, records[504].exported_at) == (
            4, 8, 1_700_000_001.0)
        assert inv.last_error()["message"] == "an old error"
        assert inv.last_error()["place"] is None
        assert inv.meta_get("schema") == "3" and inv.meta_get("export_state") == "per-kind"
    assert columns(old) == columns(new)
    assert {k: v for k, v in tables(old).items() if k[0] == "index"} == {
        k: v for k, v in NEW_TABLES.items() if k[0] == "index"}
    assert set(tables(old)) == set(NEW_TABLES)
    # the events table of schema 1, with the column added as a new inventory has it
    assert tables(old)[("table", "events")] == NEW_TABLES[("table", "events")]
    # export state per kind came along; without it, what was exported counts for every kind
    legacy = [(501, "otp", "1", "legacy"), (504, "oath", "mail", "legacy")]
    assert rows(old, "SELECT serial, application, target, kind FROM exports") == sorted(
        [(501, "otp", "1", "privacyidea:csv"), (502, "otp", "2", "generic:pskc")]
        + ([] if export_state else legacy))


def test_a_schema_2_inventory_gets_its_journal(tmp_path):
    path = tmp_path / "v2.db"
    with opened(str(path)) as inv, inv.transaction():
        inv.query("DROP TABLE artifacts")
        inv.query("UPDATE meta SET value = '2' WHERE name = 'schema'")
    assert ("table", "artifacts") not in tables(path)
    with open_inventory(str(path)) as inv:
        assert inv.meta_get("schema") == "3" and not inv.created
    assert tables(path) == NEW_TABLES


def test_the_upgrade_goes_from_the_version_it_finds():
    for dialect in ("sqlite", "postgres"):
        from_2 = schema.upgrade_from_2(dialect)
        assert from_2[1:] == ["CREATE INDEX artifacts_record ON artifacts (serial, "
                              "application, target)",
                              "UPDATE meta SET value = '3' WHERE name = 'schema'"]
        assert schema.upgrade(dialect, 2, export_state=True) == from_2
        assert schema.upgrade(dialect, 2, export_state=False) == from_2
        for export_state in (True, False):
            from_1 = schema.upgrade_from_1(dialect, export_state=export_state)
            assert len(from_1) == 16 - export_state
            assert schema.upgrade(dialect, 1, export_state=export_state) == from_1 + from_2


def test_the_version_of_an_inventory():
    def version(tables: set[str], meta: dict[str, str]) -> int:
        return schema.version_of(tables.__contains__, meta.get)

    assert version(set(), {}) == 0
    assert version({"meta"}, {"schema": "3"}) == 0  # no records: nothing there yet
    assert version({"records"}, {"schema": "3"}) == 1  # no meta table: schema 1
    assert version({"records", "meta"}, {}) == 1
    assert version({"records", "meta"}, {"export_state": "per-kind"}) == 1
    assert version({"records", "meta"}, {"schema": "2"}) == 2
    assert version({"records", "meta"}, {"schema": "3"}) == 3
    assert version({"records", "meta"}, {"schema": "17"}) == 17
    assert version({"records", "meta"}, {"schema": "three"}) == -1
