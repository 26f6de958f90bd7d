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
from hwtoken.provision.model import Mode, Record, State
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
