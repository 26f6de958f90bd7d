"""What the connections that program a place in several steps share
(provision/journaled.py), in-process on a SQLite inventory: the journal a Station must
give, a sealed copy of the credentials kept once per generation of the record, and the
credentials of earlier generations read back newest first."""

from __future__ import annotations

import base64

import pytest
from provision_helpers import opened

from hwtoken.errors import DeviceError
from hwtoken.provision.journaled import CREDENTIALS, JournaledConnection
from hwtoken.provision.model import Mode, Record, Spec
from hwtoken.provision.protocol import Device, Station
from hwtoken.provision.sealing import WrongKey


class PivPlace(JournaledConnection):
    application = "piv"


SPEC = Spec(Mode.PIV, name="9c")


@pytest.fixture
def inv(tmp_path):
    with opened(f"sqlite:///{tmp_path / 'inventory.db'}") as inventory:
        yield inventory


def generation(inv, secret: bytes, serial: int = 41) -> Record:
    """A (new) generation of the record of PIV slot 9c on key ``serial``."""
    rec = Record(serial=serial, mode=Mode.PIV, slot=2, digits=6, touch=False, name="9c",
                 sealed="", device=f"emu:k{serial}")
    inv.seal(rec, secret)
    assert inv.claim(rec, reprogram=inv.get(rec.key) is not None)
    return inv.get(rec.key)


def kept(inv, key) -> list[tuple[bytes, bool]]:
    return [(inv.open_note(key, n), n.current) for n in inv.notes(key) if n.kind == CREDENTIALS]


def test_the_record_is_the_place_of_the_spec_on_this_key(inv):
    conn = PivPlace(Device(41, "emu:k41"), Station(journal=inv))
    assert tuple(conn._record(SPEC)) == (41, "piv", "9c")


def test_without_the_inventorys_journal_the_connection_refuses():
    conn = PivPlace(Device(41, "emu:k41"), Station())
    with pytest.raises(DeviceError) as info:
        conn._journal()
    assert str(info.value) == ("programming piv needs the inventory's journal (a Station "
                               "with the inventory)")


def test_credentials_are_kept_once_per_generation(inv):
    key = generation(inv, b"first" * 4).key
    conn = PivPlace(Device(41, "emu:k41"), Station(journal=inv))
    inv.note(key, "csr", "another note of this generation")
    conn._keep_credentials(key, b"pin and keys 1")
    conn._keep_credentials(key, b"pin and keys 2")  # a resumed program: already kept
    assert kept(inv, key) == [(b"pin and keys 1", True)]
    generation(inv, b"again" * 4)  # --reprogram: the new generation keeps its own
    inv.note(key, "csr", "another note of the new generation")
    conn._keep_credentials(key, b"pin and keys 3")
    conn._keep_credentials(key, b"pin and keys 4")
    assert kept(inv, key) == [(b"pin and keys 1", False), (b"pin and keys 3", True)]


def test_earlier_secrets_are_the_kept_credentials_of_earlier_generations_newest_first(inv):
    key = generation(inv, b"one" * 7).key
    conn = PivPlace(Device(41, "emu:k41"), Station(journal=inv))
    assert conn._earlier_secrets(key) == []
    conn._keep_credentials(key, b"A")
    assert conn._earlier_secrets(key) == []  # the current generation's: not earlier
    generation(inv, b"two" * 7)
    conn._keep_credentials(key, b"B")
    inv.note(key, CREDENTIALS, "not sealed")  # a note that holds no secret is no secret
    generation(inv, b"three" * 4)
    conn._keep_credentials(key, b"A")  # set again: listed once, where it is newest
    generation(inv, b"four" * 5)
    conn._keep_credentials(key, b"C")
    assert conn._earlier_secrets(key) == [b"A", b"B"]


def damage(inv, key, secret: bytes) -> str:
    """Flip a bit of the sealed note of ``key`` that holds ``secret``, in the database;
    the note's new value."""
    value = next(n.value for n in inv.notes(key) if n.sealed and inv.open_note(key, n) == secret)
    blob = bytearray(base64.b64decode(value))
    blob[-1] ^= 1
    damaged = base64.b64encode(bytes(blob)).decode()
    with inv.transaction():
        inv.query("UPDATE artifacts SET value = ? WHERE value = ?", (damaged, value))
    return damaged


def test_an_earlier_secret_that_no_longer_opens_is_left_out(inv):
    key = generation(inv, b"one" * 7).key
    PivPlace(Device(41, "emu:k41"), Station(journal=inv))._keep_credentials(key, b"old")
    generation(inv, b"two" * 7)
    PivPlace(Device(41, "emu:k41"), Station(journal=inv))._keep_credentials(key, b"bad")
    generation(inv, b"three" * 4)
    damaged = damage(inv, key, b"bad")
    bad = next(n for n in inv.notes(key) if n.value == damaged)
    with pytest.raises(WrongKey):  # the real inventory's refusal of a damaged note
        inv.open_note(key, bad)
    conn = PivPlace(Device(41, "emu:k41"), Station(journal=inv))
    assert conn._earlier_secrets(key) == [b"old"]


def test_each_step_is_told_to_the_stations_hook_with_the_record():
    heard = []
    conn = PivPlace(Device(41, "emu:k41"),
                    Station(hook=lambda step, key: heard.append((step, key))))
    key = conn._record(SPEC)
    conn._step("piv-credentials", key)
    conn._step("piv-signed", key)
    assert heard == [("piv-credentials", key), ("piv-signed", key)]
