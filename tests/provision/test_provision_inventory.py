"""Inventory backends: claims, holds, sealing at rest, file modes, both SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import multiprocessing
import os
import stat

import pytest
from provision_helpers import PASSPHRASE, only, opened

from hwtoken.errors import InvalidInput
from hwtoken.provision.inventory import RecordBusy, open_inventory
from hwtoken.provision.model import Mode, Record, RecordKey, State
from hwtoken.provision.sealing import Unlocker, WrongKey, new_key_file


def _record(serial: int, mode: Mode = Mode.CHALRESP) -> Record:
    return Record(serial=serial, mode=mode, slot=2, digits=6, touch=False, name="hw",
                  sealed="", device=f"emu:k{serial}")


def test_claim_is_unique_and_reprogram_replaces(inventory_url):
    with opened(inventory_url) as inv:
        rec = _record(4242)
        inv.seal(rec, b"A" * 20)
        assert inv.claim(rec)
        again = _record(4242)
        inv.seal(again, b"B" * 20)
        assert not inv.claim(again)
        assert inv.secret(only(inv, 4242)) == b"A" * 20
        inv.update(only(inv, 4242).key, state=State.DONE, counter=3)
        inv.mark_exported({only(inv, 4242).key: only(inv, 4242).sealed}, "generic:pskc")
        assert inv.claim(again, reprogram=True)
        got = only(inv, 4242)
        assert got.state is State.PENDING and got.exported_at is None and got.counter == 0
        assert inv.secret(got) == b"B" * 20
        assert inv.counts() == {"pending": 1, "done": 0, "exported": 0}


def test_sealed_secret_is_bound_to_its_record(inventory_url):
    with opened(inventory_url) as inv:
        rec = _record(7)
        inv.seal(rec, b"S" * 20)
        inv.claim(rec)
        other = _record(8)
        other.sealed = rec.sealed  # copy a sealed secret onto another key's record
        with pytest.raises(WrongKey):
            inv.secret(other)


def test_wrong_passphrase_is_refused(inventory_url):
    with opened(inventory_url) as inv:
        rec = _record(1)
        inv.seal(rec, b"x" * 20)
        inv.claim(rec)
    inv = open_inventory(inventory_url)
    try:
        with pytest.raises(WrongKey, match="wrong passphrase"):
            inv.unlock(Unlocker(passphrase=PASSPHRASE + "!"))
    finally:
        inv.close()


def test_key_file_inventory(tmp_path):
    key_file = tmp_path / "inv.key"
    new_key_file(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    url = str(tmp_path / "k.db")
    with open_inventory(url) as inv:
        inv.unlock(Unlocker(key_file=key_file))
        rec = _record(99)
        inv.seal(rec, b"k" * 20)
        inv.claim(rec)
    with open_inventory(url) as inv:
        with pytest.raises(InvalidInput, match="key file"):
            inv.unlock(Unlocker(passphrase=PASSPHRASE))
        inv.unlock(Unlocker(key_file=key_file))
        assert inv.secret(only(inv, 99)) == b"k" * 20



def test_passphrase_inventory_refuses_a_key_file_alone(tmp_path, monkeypatch):
    key_file = tmp_path / "inv.key"
    new_key_file(key_file)
    url = str(tmp_path / "p.db")
    with open_inventory(url) as inv:
        inv.unlock(Unlocker(passphrase=PASSPHRASE))
    monkeypatch.delenv("HWTOKEN_INVENTORY_PASSPHRASE")
    with open_inventory(url) as inv:
        with pytest.raises(InvalidInput, match="sealed with a passphrase, not a key file"):
            inv.unlock(Unlocker(key_file=key_file))
        inv.unlock(Unlocker(key_file=key_file, passphrase=PASSPHRASE))  # both: the passphrase

def test_sqlite_file_is_0600_and_holds_no_plain_secret(tmp_path):
    path = tmp_path / "inv.db"
    secret = os.urandom(20)
    with opened(str(path)) as inv:
        rec = _record(5)
        inv.seal(rec, secret)
        inv.claim(rec)
        for f in tmp_path.iterdir():  # the db and its -wal/-shm while open
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        raw = b"".join(f.read_bytes() for f in tmp_path.iterdir())
    for form in (secret, secret.hex().encode(), base64.b64encode(secret),
                 base64.b32encode(secret)):
        assert form not in raw


def _hold_in_child(url: str, serial: int, q) -> None:
    with open_inventory(url) as inv:
        try:
            with inv.hold(serial):
                q.put("held")
        except RecordBusy:
            q.put("busy")


def test_hold_excludes_other_processes(inventory_url):
    ctx = multiprocessing.get_context("spawn")
    with opened(inventory_url) as inv:
        with inv.hold(31337):
            q = ctx.Queue()
            p = ctx.Process(target=_hold_in_child, args=(inventory_url, 31337, q))
            p.start()
            assert q.get(timeout=60) == "busy"
            p.join(30)
        q = ctx.Queue()
        p = ctx.Process(target=_hold_in_child, args=(inventory_url, 31337, q))
        p.start()
        assert q.get(timeout=60) == "held"
        p.join(30)


def test_bad_urls():
    with pytest.raises(InvalidInput):
        open_inventory("mysql://x/y")
    with pytest.raises(InvalidInput):
        open_inventory("sqlite://")
    with pytest.raises(InvalidInput, match="cannot connect"):
        open_inventory("postgresql://nobody:hunter2@/nodb?host=/nonexistent")
    try:
        open_inventory("postgresql://nobody:hunter2@/nodb?host=/nonexistent")
    except InvalidInput as exc:
        assert "hunter2" not in str(exc)


def test_lost_postgres_connection_is_a_clean_error(pg_server):
    import psycopg

    from hwtoken.provision.inventory import InventoryUnavailable

    url = pg_server.new_database()
    with opened(url) as inv:
        pid = inv._db.info.backend_pid
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        rec = _record(77)
        inv.seal(rec, b"z" * 20)
        with pytest.raises(InventoryUnavailable, match="lost the inventory"):
            inv.claim(rec)
    with opened(url) as inv:  # nothing half-written
        assert only(inv, 77) is None


def test_sqlite_is_wal_with_synchronous_full(tmp_path):
    with opened(str(tmp_path / "inv.db")) as inv:
        assert inv.query("PRAGMA journal_mode")[0][0] == "wal"
        assert inv.query("PRAGMA synchronous")[0][0] == 2  # FULL
    with open_inventory(str(tmp_path / "inv.db")) as again:  # every connection, not once
        assert again.query("PRAGMA synchronous")[0][0] == 2


def test_a_records_journal_is_kept_per_generation_and_forgotten_with_it(inventory_url):
    with opened(inventory_url) as inv:
        rec = _record(99)
        inv.seal(rec, b"1" * 20)
        inv.claim(rec)
        inv.note(rec.key, "csr", "first csr")
        inv.note_secret(rec.key, "credentials", b"old pin")
        first = inv.notes(rec.key)
        assert [(n.kind, n.current, n.sealed) for n in first] == [
            ("csr", True, False), ("credentials", True, True)]
        assert b"old pin" not in first[1].value.encode() and "old pin" not in repr(first[1])
        assert inv.open_note(rec.key, first[1]) == b"old pin"
        again = _record(99)  # reprogrammed: a new secret starts a new generation
        inv.seal(again, b"2" * 20)
        assert inv.claim(again, reprogram=True)
        inv.note(again.key, "csr", "second csr")
        notes = inv.notes(again.key)
        assert [(n.value, n.current) for n in notes if n.kind == "csr"] == [
            ("first csr", False), ("second csr", True)]
        assert inv.open_note(again.key, notes[1]) == b"old pin"  # history stays readable
        moved = _record(100)  # a sealed note copied to another record does not open
        inv.seal(moved, b"3" * 20)
        inv.claim(moved)
        with pytest.raises(WrongKey):
            inv.open_note(moved.key, notes[1])
        assert inv.forget(again.key)
        assert inv.notes(again.key) == []
        assert inv.query("SELECT COUNT(*) FROM artifacts WHERE serial = 99") == [(0,)]
        with pytest.raises(InvalidInput, match="no record 99/otp:2"):
            inv.note(again.key, "csr", "x")


def test_stations_opening_a_new_postgres_inventory_at_once_make_its_tables_once(pg_server):
    """Each open of a new database races to create the tables: the one that waited must
    see them (a transaction begun before the others committed would not) -- four
    processes at once, a few times over."""
    import subprocess
    import sys

    code = ("import sys\nfrom hwtoken.provision.inventory import open_inventory\n"
            "open_inventory(sys.argv[1]).close()\n")
    for _ in range(5):
        url = pg_server.new_database()
        procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE,
                                  text=True) for _ in range(4)]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
        with opened(url) as inv:
            assert inv.meta_get("schema") == "3"


# -- the Inventory class in-process (SQLite, a key file: no KDF to wait for) -------------------
@pytest.fixture
def inv(tmp_path):
    key_file = tmp_path / "inv.key"
    new_key_file(key_file)
    inventory = open_inventory(str(tmp_path / "inv.db"))
    inventory.unlock(Unlocker(key_file=key_file))
    try:
        yield inventory
    finally:
        inventory.close()


def _oath(serial: int, name: str, **fields) -> Record:  # noqa: ANN003
    return Record(serial=serial, mode=Mode.OATH_TOTP, slot=0, digits=8, touch=True, name=name,
                  sealed="", **fields)


def test_station_id_is_host_and_pid():
    import socket

    from hwtoken.provision.inventory import station_id

    assert station_id() == f"{socket.gethostname()}:{os.getpid()}"


def test_every_field_of_a_record_goes_in_and_comes_back(inv):
    rec = _oath(11, "alice@example", counter=7, device="emu:k11", station="h:1", attempts=2,
                last_error="boom", created_at=100.5, programmed_at=101.0,
                params={"b": "2", "a": "1"})
    inv.seal(rec, b"s" * 20, b"access")
    assert inv.claim(rec)
    got = inv.get(rec.key)
    assert got == rec and got.updated_at == rec.updated_at
    assert type(got.mode) is Mode and type(got.state) is State and got.touch is True
    row = inv.query("SELECT mode, state, touch, params, created_at FROM records")
    assert row == [("oath-totp", "pending", 1, '{"a": "1", "b": "2"}', 100.5)]
    assert inv.secret(got) == b"s" * 20 and inv.access_code(got) == b"access"
    inv.query("UPDATE records SET params = '', touch = 0")
    again = inv.get(rec.key)
    assert again.params == {} and again.touch is False
    assert inv.get(RecordKey(11, "oath", "bob")) is None


def test_claim_stamps_times_and_state(inv, monkeypatch):
    from hwtoken.provision import inventory as module

    monkeypatch.setattr(module.time, "time", lambda: 1000.0)
    rec = _record(1)
    rec.state = State.DONE
    inv.seal(rec, b"x" * 20)
    assert inv.claim(rec)
    assert (rec.created_at, rec.updated_at, rec.state) == (1000.0, 1000.0, State.PENDING)
    monkeypatch.setattr(module.time, "time", lambda: 2000.0)
    later = _record(1)
    later.created_at = 1500.0
    later.counter = 9
    inv.seal(later, b"y" * 20)
    assert not inv.claim(later)
    assert inv.get(rec.key) == rec  # a refused claim changes nothing
    assert inv.claim(later, reprogram=True)
    got = inv.get(rec.key)
    assert (got.created_at, got.updated_at, got.counter) == (1500.0, 2000.0, 9)
    assert inv.secret(got) == b"y" * 20
    other = _record(2)
    inv.seal(other, b"z" * 20)
    assert inv.claim(other, reprogram=True)  # reprogram of nothing: a new record
    assert [r.serial for r in inv.records()] == [1, 2]


def test_update_sets_fields_and_refuses_unknown_ones(inv, monkeypatch):
    from hwtoken.provision import inventory as module

    rec = _record(3)
    inv.seal(rec, b"x" * 20)
    inv.claim(rec)
    monkeypatch.setattr(module.time, "time", lambda: 4242.0)
    inv.update(rec.key, state=State.DONE, touch=True, params={"k": "v"}, counter=5)
    got = inv.get(rec.key)
    assert (got.state, got.touch, got.params, got.counter, got.updated_at) == (
        State.DONE, True, {"k": "v"}, 5, 4242.0)
    for field in ("nonsense", "serial", "application", "target"):
        with pytest.raises(ValueError) as e:
            inv.update(rec.key, **{field: 1})
        assert type(e.value) is ValueError and str(e.value) == f"unknown record field {field}"
    assert inv.get(rec.key) == got
    inv.update(RecordKey(3, "otp", "1"), counter=6)  # another place of the key: untouched
    assert inv.get(rec.key).counter == 5


def test_a_locked_inventory_seals_nothing(tmp_path):
    with open_inventory(str(tmp_path / "inv.db")) as locked:
        with pytest.raises(InvalidInput) as e:
            locked.seal(_record(1), b"x" * 20)
        assert str(e.value) == "the inventory is locked: unlock it with its passphrase first"


def test_access_codes_are_sealed_apart_from_the_secret(inv):
    rec = _record(4)
    inv.seal(rec, b"x" * 20, b"code01")
    assert inv.access_code(rec) == b"code01" and inv.secret(rec) == b"x" * 20
    assert inv.sealer.open(rec.access_code, rec.access_aad()) == b"code01"
    with pytest.raises(WrongKey):
        inv.sealer.open(rec.access_code, rec.aad())
    inv.seal_access_code(rec, None)
    assert rec.access_code is None and inv.access_code(rec) is None
    inv.seal(rec, b"y" * 20)
    assert rec.access_code is None


def test_meta_keeps_the_first_value(inv):
    assert inv.meta_get("station-note") is None
    assert inv.meta_init("station-note", "first") == "first"
    assert inv.meta_init("station-note", "second") == "first"
    assert inv.meta_get("station-note") == "first"


def test_records_filter_and_order(inv):
    made = []
    for serial, created, name in [(30, 3.0, "b"), (10, 2.0, "z"), (20, 2.0, "a"),
                                  (20, 2.0, "b"), (40, 1.0, "c")]:
        rec = _oath(serial, name, created_at=created)
        inv.seal(rec, f"{serial}{name}".encode())
        inv.claim(rec)
        made.append(rec)
    assert [(r.serial, r.name) for r in inv.records()] == [
        (40, "c"), (10, "z"), (20, "a"), (20, "b"), (30, "b")]
    inv.update(made[0].key, state=State.DONE)
    assert [r.serial for r in inv.records(states=[State.DONE])] == [30]
    assert [r.serial for r in inv.records(states=[State.PENDING, State.DONE])] == [
        40, 10, 20, 20, 30]
    assert inv.records(states=[]) == []
    assert [r.name for r in inv.records(serial=20)] == ["a", "b"]
    assert [r.name for r in inv.records(serial=20, states=[State.DONE])] == []
    assert inv.records(serial=99) == []


def test_export_state_is_per_kind_and_per_secret(inv, monkeypatch):
    from hwtoken.provision import inventory as module

    recs = []
    for serial in (1, 2, 3):
        rec = _record(serial)
        inv.seal(rec, bytes([serial]) * 20)
        inv.claim(rec)
        recs.append(rec)
    monkeypatch.setattr(module.time, "time", lambda: 777.0)
    inv.mark_exported({recs[0].key: recs[0].sealed}, "privacyidea:csv")
    inv.mark_exported({recs[1].key: recs[1].sealed}, "generic:pskc", at=555.0)
    inv.mark_exported({recs[2].key: "another sealed secret"}, "generic:pskc")
    assert [r.exported_at for r in inv.records()] == [777.0, 555.0, None]
    assert [r.serial for r in inv.records(not_exported_as="privacyidea:csv")] == [2, 3]
    assert [r.serial for r in inv.records(not_exported_as="generic:pskc")] == [1, 3]
    assert inv.query("SELECT serial, kind, sealed, at FROM exports ORDER BY serial, kind") == [
        (1, "privacyidea:csv", recs[0].sealed, 777.0),
        (2, "generic:pskc", recs[1].sealed, 555.0),
        (3, "generic:pskc", "another sealed secret", 777.0)]
    inv.mark_exported({recs[0].key: recs[0].sealed}, "privacyidea:csv", at=888.0)
    assert inv.query("SELECT at FROM exports WHERE serial = 1") == [(888.0,)]
    # rows from before per-kind export state count for every kind
    inv.query("INSERT INTO exports (serial, application, target, kind, sealed, at) "
              "VALUES (3, 'otp', '2', 'legacy', ?, 1.0)", (recs[2].sealed,))
    assert [r.serial for r in inv.records(not_exported_as="privacyidea:csv")] == [2]
    assert [r.serial for r in inv.records(not_exported_as="generic:pskc",
                                          states=[State.PENDING], serial=1)] == [1]
    assert inv.counts() == {"pending": 3, "done": 0, "exported": 2}


def test_forget_drops_the_record_its_exports_and_journal_only(inv):
    keep, drop = _record(5), _record(6)
    for rec in (keep, drop):
        inv.seal(rec, b"x" * 20)
        inv.claim(rec)
        inv.note(rec.key, "csr", "pem")
        inv.mark_exported({rec.key: rec.sealed}, "generic:csv")
    assert inv.forget(drop.key) is True
    assert inv.forget(drop.key) is False
    assert [r.serial for r in inv.records()] == [5]
    for table in ("exports", "artifacts"):
        assert inv.query(f"SELECT serial FROM {table}") == [(5,)]  # noqa: S608


def test_counts_every_state(inv):
    assert inv.counts() == {"pending": 0, "done": 0, "exported": 0}
    for serial in (1, 2, 3):
        rec = _record(serial)
        inv.seal(rec, b"x" * 20)
        inv.claim(rec)
    inv.update(_record(1).key, state=State.DONE, exported_at=5.0)
    inv.update(_record(2).key, state=State.DONE)
    assert inv.counts() == {"pending": 1, "done": 2, "exported": 1}


def test_a_note_records_when_where_and_which_generation(inv, monkeypatch):
    from hwtoken.provision import inventory as module
    from hwtoken.provision.inventory import station_id
    from hwtoken.provision.model import Note, generation_of

    rec = _oath(7, "cred")
    inv.seal(rec, b"x" * 20)
    inv.claim(rec)
    monkeypatch.setattr(module.time, "time", lambda: 99.0)
    inv.note(rec.key, "csr", "the csr")
    inv.note_secret(rec.key, "pin", b"123456")
    notes = inv.notes(rec.key)
    gen = generation_of(rec.sealed)
    assert notes[0] == Note("csr", "the csr", 99.0, station_id(), gen, True, False)
    assert notes[1].kind == "pin"
    assert (notes[1].at, notes[1].station, notes[1].generation, notes[1].current,
            notes[1].sealed) == (99.0, station_id(), gen, True, True)
    assert inv.query("SELECT kind FROM artifacts ORDER BY id") == [("csr",), ("pin+sealed",)]
    assert inv.open_note(rec.key, notes[1]) == b"123456"
    assert inv.sealer.open(notes[1].value, b"hwtoken-provision:note:7:oath:cred:pin") == (
        b"123456")
    with pytest.raises(ValueError) as e:
        inv.open_note(rec.key, notes[0])
    assert str(e.value) == "this note holds no sealed secret"
    assert inv.notes(RecordKey(7, "oath", "other")) == []
    with pytest.raises(InvalidInput) as e:
        inv.note(RecordKey(7, "oath", "other"), "csr", "x")
    assert str(e.value) == "no record 7/oath:other to write csr down for"


def test_the_audit_trail_and_the_last_error(inv, monkeypatch):
    from hwtoken.provision import inventory as module
    from hwtoken.provision.inventory import station_id

    assert inv.last_error() is None
    monkeypatch.setattr(module.time, "time", lambda: 10.0)
    inv.log_event("error", "first failure", 1, "slot 2")
    monkeypatch.setattr(module.time, "time", lambda: 20.0)
    inv.log_event("error", "second failure", 2, "slot 1")
    inv.log_event("done", "programmed", 3)
    assert inv.last_error() == {"at": 20.0, "station": station_id(), "serial": 2,
                                "place": "slot 1", "message": "second failure"}
    assert inv.query("SELECT at, station, serial, kind, message, place FROM events "
                     "ORDER BY id") == [
        (10.0, station_id(), 1, "error", "first failure", "slot 2"),
        (20.0, station_id(), 2, "error", "second failure", "slot 1"),
        (20.0, station_id(), 3, "done", "programmed", None)]
    inv.log_event("error", "no key")
    assert inv.last_error() == {"at": 20.0, "station": station_id(), "serial": None,
                                "place": None, "message": "no key"}


def test_placeholders_for_the_driver(inv):
    assert inv.q("a = ? AND b = ?") == "a = ? AND b = ?"
    inv.param = "%s"
    assert inv.q("a = ? AND b = ?") == "a = %s AND b = %s"


def test_a_new_inventory_is_created_once_and_a_newer_one_refused(tmp_path):
    from hwtoken.provision import schema

    path = tmp_path / "inv.db"
    with open_inventory(str(path)) as first:
        assert first.created is True
        assert first.meta_get("schema") == str(schema.VERSION)
    with open_inventory(f"sqlite:///{path}") as again:
        assert again.created is False
        again.query("UPDATE meta SET value = ? WHERE name = 'schema'", (str(schema.VERSION + 1),))
    with pytest.raises(InvalidInput) as e:
        open_inventory(str(path))
    assert str(e.value) == (f"the inventory sqlite://{path} has schema version "
                            f"{schema.VERSION + 1}, which this hwtoken does not know (it "
                            f"knows up to {schema.VERSION}): upgrade hwtoken")


@pytest.mark.parametrize(("url", "message"), [
    ("", "--inventory is required (a file path, sqlite:///path or postgresql://)"),
    ("sqlite://", "sqlite:// URL without a path: use sqlite:///path/to/inventory.db"),
    ("mysql://host/db", "unsupported inventory URL mysql://: use a path, sqlite:///path or "
                        "postgresql://"),
    ("file://a://b", "unsupported inventory URL file://: use a path, sqlite:///path or "
                     "postgresql://"),
], ids=["empty", "sqlite-no-path", "mysql", "file"])
def test_inventory_urls_that_name_no_inventory(url, message):
    with pytest.raises(InvalidInput) as e:
        open_inventory(url)
    assert str(e.value) == message


def test_inventory_urls_and_paths(tmp_path, monkeypatch):
    from hwtoken.provision.sqlite import SqliteInventory

    monkeypatch.chdir(tmp_path)
    for url, path in [(f"sqlite://{tmp_path}/a.db", tmp_path / "a.db"),  # sqlite:///abs
                      (f"sqlite:///{tmp_path}/b.db", tmp_path / "b.db"),  # sqlite:////abs
                      ("sqlite://rel.db", tmp_path / "rel.db"),
                      (str(tmp_path / "d.db"), tmp_path / "d.db"),
                      ("plain.db", tmp_path / "plain.db")]:
        with open_inventory(url) as opened_inv:
            assert type(opened_inv) is SqliteInventory and opened_inv.path == path, url
        assert path.exists()
    with pytest.raises(InvalidInput) as e:
        open_inventory(str(tmp_path / "none.db"), create=False)
    assert str(e.value) == f"no inventory at {tmp_path / 'none.db'}"
    assert not (tmp_path / "none.db").exists()
    with open_inventory(str(tmp_path / "a.db"), create=False) as existing:
        assert existing.created is False


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgres_urls_open_a_postgres_inventory(pg_server, scheme):
    from hwtoken.provision.postgres import PostgresInventory

    url = pg_server.new_database().replace("postgresql://", f"{scheme}://", 1)
    with open_inventory(url) as pg:
        assert type(pg) is PostgresInventory and pg.created is True
        assert pg.q("a = ? AND b = ?") == "a = %s AND b = %s"


def test_a_postgres_url_without_psycopg_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "hwtoken.provision.postgres", None)  # import fails
    for url in ("postgresql://h/db", "postgres://h/db"):
        with pytest.raises(InvalidInput) as e:
            open_inventory(url)
        assert str(e.value) == ("a PostgreSQL inventory needs psycopg: pip install "
                                "'hwtoken[provision]'")


def test_unlock_returns_the_sealer_the_inventory_then_uses(tmp_path):
    key_file = tmp_path / "inv.key"
    new_key_file(key_file)
    with open_inventory(str(tmp_path / "inv.db")) as inventory:
        sealer = inventory.unlock(Unlocker(key_file=key_file))
        assert inventory.sealer is sealer
        rec = _record(1)
        inventory.seal(rec, b"x" * 20)
        assert sealer.open(rec.sealed, rec.aad()) == b"x" * 20
        assert inventory.__enter__() is inventory
