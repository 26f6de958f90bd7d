"""Inventories from before several records per key (schema 1) are upgraded in place, on
SQLite and PostgreSQL alike, by whichever command opens them first -- and a station killed
in the middle of the upgrade leaves the old inventory exactly as it was."""

from __future__ import annotations

import json
import subprocess

import pytest
from provision_helpers import HWTOKEN, hwtoken, make_v1_inventory, opened

from hwtoken.provision import schema
from hwtoken.provision.model import LEGACY_AAD, Mode, RecordKey, State

SECRETS = {301: b"\x01" * 20, 302: b"\x02" * 20, 303: b"\x03" * 20}
OLD = [
    {"serial": 301, "mode": "hotp", "slot": 1, "digits": 8, "name": "hwtoken",
     "secret": SECRETS[301], "state": "done", "counter": 4, "exported_at": 1_700_000_000.0},
    {"serial": 302, "mode": "chalresp", "slot": 2, "digits": 6, "name": "hwtoken",
     "secret": SECRETS[302], "state": "done"},
    {"serial": 303, "mode": "oath-totp", "slot": 2, "digits": 6, "name": "mail",
     "secret": SECRETS[303], "state": "pending"},
]


def dump(url: str) -> dict[str, object]:
    """Every table's columns and rows, as the database holds them (committed state)."""
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url) as db:
            cols = db.execute("SELECT table_name, column_name, data_type FROM "
                              "information_schema.columns WHERE table_schema = 'public' "
                              "ORDER BY table_name, ordinal_position").fetchall()
            tables = sorted({c[0] for c in cols})
            rows = {t: sorted(map(repr, db.execute(f"SELECT * FROM {t}").fetchall()))  # noqa: S608
                    for t in tables}
            keys = db.execute("SELECT conrelid::regclass::text, pg_get_constraintdef(oid) "
                              "FROM pg_constraint WHERE contype = 'p' ORDER BY 1").fetchall()
        return {"columns": cols, "rows": rows, "keys": keys}
    import sqlite3

    db = sqlite3.connect(url)
    try:
        ddl = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        rows = {name: sorted(map(repr, db.execute(f"SELECT * FROM {name}").fetchall()))  # noqa: S608
                for kind, name, _ in ddl if kind == "table" and name != "sqlite_sequence"}
    finally:
        db.close()
    return {"ddl": ddl, "rows": rows}


def _path(url: str) -> str:
    """A SQLite URL as the plain path the admin gives (both are accepted)."""
    return "/" + url.removeprefix("sqlite://").lstrip("/") if url.startswith("sqlite://") \
        else url


def test_an_old_inventory_is_upgraded_in_place(inventory_url, tmp_path):
    url = _path(inventory_url)
    make_v1_inventory(url, OLD, exports=[(301, "privacyidea:csv")])
    status = hwtoken("provision", "status", "-i", url, "--json")
    assert "new inventory" not in status.stderr  # upgraded, not made anew
    doc = json.loads(status.stdout)
    assert doc["counts"] == {"pending": 1, "done": 2, "exported": 1}
    assert doc["last_error"]["message"] == "an old error" and doc["last_error"]["place"] is None
    with opened(url) as inv:
        assert inv.meta_get("schema") == str(schema.VERSION)
        records = {r.serial: r for r in inv.records()}
        # each old record is now keyed by its place; its secret opens as it was sealed
        assert {s: r.key for s, r in records.items()} == {
            301: RecordKey(301, "otp", "1"), 302: RecordKey(302, "otp", "2"),
            303: RecordKey(303, "oath", "mail")}
        for serial, rec in records.items():
            assert rec.aad_version == LEGACY_AAD and inv.secret(rec) == SECRETS[serial]
            assert rec.access_code is None and rec.params == {}
        assert (records[301].counter, records[303].state) == (4, State.PENDING)
        # the key of an old record takes a record for another place now
        new = records[302].__class__.new(records[302].spec.__class__(Mode.HOTP, slot=1), 302,
                                         device="emu:k302")
        inv.seal(new, b"\x09" * 20)
        assert inv.claim(new) and len(inv.records(serial=302)) == 2
    # export state per kind came along: 301 went to privacyIDEA as CSV already
    out = tmp_path / "pi.csv"
    proc = hwtoken("provision", "export", "-i", url, "--for", "privacyidea", "--format", "csv",
                   "-o", str(out), check=1)
    assert proc.stderr.startswith("error: none of the 1 done record(s) can go into this "
                                  "export (privacyIDEA has no token type")  # 302 alone
    generic = hwtoken("provision", "export", "-i", url, "--format", "pskc",
                      "-o", str(tmp_path / "all.pskc"), "--json")
    assert json.loads(generic.stdout)["serials"] == [301, 302]


def test_a_station_killed_in_the_middle_of_the_upgrade_leaves_it_as_it_was(inventory_url):
    """SIGKILL after each statement of the upgrade (before it commits): the inventory is
    schema 1 exactly as before, every time; the next open upgrades it."""
    url = _path(inventory_url)
    make_v1_inventory(url, OLD, exports=[(301, "generic:pskc")])
    before = dump(url)
    dialect = "postgres" if url.startswith("postgresql://") else "sqlite"
    steps = len(schema.upgrade(dialect, 1, export_state=True))
    assert steps >= 13
    for step in range(1, steps + 1):
        hwtoken("provision", "status", "-i", url,
                env={"HWTOKEN_FAULT": f"after:upgrade@{step}"}, check=-9)
        assert dump(url) == before, f"killed after statement {step}"
    hwtoken("provision", "status", "-i", url)
    after = dump(url)
    assert after != before
    with opened(url) as inv:
        assert inv.meta_get("schema") == str(schema.VERSION)
        assert {r.serial: inv.secret(r) for r in inv.records()} == SECRETS
    hwtoken("provision", "list", "-i", url)  # opened again: nothing more to do
    assert dump(url) == after


def test_two_stations_opening_an_old_inventory_at_once_upgrade_it_once(inventory_url):
    url = _path(inventory_url)
    make_v1_inventory(url, OLD)
    procs = [subprocess.Popen([HWTOKEN, "provision", "list", "-i", url, "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    for out, _ in outs:
        assert len(json.loads(out)["records"]) == 3
    with opened(url) as inv:
        assert {r.serial: inv.secret(r) for r in inv.records()} == SECRETS


def test_an_inventory_from_a_newer_hwtoken_is_refused(tmp_path):
    url = str(tmp_path / "keys.db")
    hwtoken("provision", "run", "-i", url, "-m", "chalresp", "--virtual", "1")
    newer = schema.VERSION + 1
    with opened(url) as inv:
        inv.query(f"UPDATE meta SET value = '{newer}' WHERE name = 'schema'")
    for command in (["status"], ["list"], ["run", "-m", "hotp", "--virtual", "1"]):
        proc = hwtoken("provision", *command, "-i", url, check=2)
        assert proc.stderr.strip().splitlines()[-1] == (
            f"error: the inventory sqlite://{url} has schema version {newer}, which this "
            f"hwtoken does not know (it knows up to {schema.VERSION}): upgrade hwtoken")


def _make_v2(url: str) -> dict:
    """A schema-2 inventory (before the journal) with one done record: today's tables
    without ``artifacts``, exactly what version 2 created. Returns its secrets (read
    before: opening it now would upgrade it)."""
    hwtoken("provision", "run", "-i", url, "-m", "chalresp", "--virtual", "1")
    with opened(url) as inv:
        secrets = {r.key: inv.secret(r) for r in inv.records()}
        with inv.transaction():
            inv.query("DROP TABLE artifacts")
            inv.query("UPDATE meta SET value = '2' WHERE name = 'schema'")
    return secrets


def test_a_schema_2_inventory_gets_its_journal_in_place_and_a_kill_leaves_it_as_it_was(
        inventory_url):
    url = _path(inventory_url)
    secrets = _make_v2(url)
    before = dump(url)
    dialect = "postgres" if url.startswith("postgresql://") else "sqlite"
    steps = len(schema.upgrade(dialect, 2, export_state=True))
    assert steps == 3
    for step in range(1, steps + 1):
        hwtoken("provision", "status", "-i", url,
                env={"HWTOKEN_FAULT": f"after:upgrade@{step}"}, check=-9)
        assert dump(url) == before, f"killed after statement {step}"
    hwtoken("provision", "list", "-i", url)
    with opened(url) as inv:
        assert inv.meta_get("schema") == str(schema.VERSION) == "3"
        assert {r.key: inv.secret(r) for r in inv.records()} == secrets
        key = next(iter(secrets))
        inv.note(key, "csr", "a line of the journal")  # the journal is there
        assert [n.value for n in inv.notes(key)] == ["a line of the journal"]


@pytest.mark.parametrize("export_state", [True, False])
def test_the_upgrade_statements_match_the_tables_a_new_inventory_gets(tmp_path, export_state):
    """An upgraded inventory and a new one have the same tables, columns and keys."""
    old = str(tmp_path / "old.db")
    make_v1_inventory(old, OLD, export_state=export_state)
    with opened(old):
        pass
    new = str(tmp_path / "new.db")
    with opened(new):
        pass

    def shape(path: str) -> dict[str, list]:
        import sqlite3

        db = sqlite3.connect(path)
        try:
            names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = "
                                              "'table' AND name != 'sqlite_sequence'")]
            return {n: [(c[1], c[2], c[3], c[5]) for c in db.execute(f"PRAGMA table_info({n})")]
                    for n in sorted(names)}
        finally:
            db.close()

    assert shape(old) == shape(new)
    assert "artifacts" in shape(old)
