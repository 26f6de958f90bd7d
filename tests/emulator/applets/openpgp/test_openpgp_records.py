"""The OpenPGP applet's stored records: a new card's defaults, the exact stored format
(existing key files depend on it: every field by name, enums as ints), the round trip,
PIN states, what DELETE and a factory reset keep, and the data-object names."""

from __future__ import annotations

import json

import pytest

from hwtoken.emulator.applets.openpgp.algorithms import Attributes
from hwtoken.emulator.applets.openpgp.constants import KEY_STATUS, UIF
from hwtoken.emulator.applets.openpgp.records import (
    CardState,
    KeyRecord,
    PinRecord,
    object_name,
)
from hwtoken.emulator.key import VirtualKey

RSA2048 = bytes.fromhex("010800001100")


def test_a_new_cards_state_is_stored_as_this():
    assert CardState().to_store() == {
        "pw1": {"value": b"123456", "total": 3, "remaining": 3},
        "rc": {"value": b"", "total": 3, "remaining": 0},
        "pw3": {"value": b"12345678", "total": 3, "remaining": 3},
        "keys": {name: {"attributes": RSA2048, "private": b"", "status": 0,
                        "fingerprint": bytes(20), "generated_at": 0, "uif": 0,
                        "certificate": b""}
                 for name in ("sig", "dec", "aut", "att")},
        "signature_pin_policy": 1,
        "signature_counter": 0,
        "kdf": bytes.fromhex("810100"),
        "ca_fingerprints": [bytes(20)] * 4,
        "objects": {"5f35": b"9"},
        "terminated": False,
        "attestation_root": b"",
    }


def _used_state() -> CardState:
    state = CardState()
    state.pw1 = PinRecord(b"654321", 5, 2)
    state.rc = PinRecord(b"resetting", 4, 4)
    state.pw3 = PinRecord(b"admin-pin", 3, 1)
    state.keys["dec"] = KeyRecord(bytes.fromhex("122b060104019755010501"), b"pkcs8",
                                  KEY_STATUS.IMPORTED, b"\x11" * 20, 1700000000, UIF.CACHED,
                                  b"cert")
    state.signature_pin_policy = 0
    state.signature_counter = 41
    state.kdf = b"\x81\x01\x03"
    state.ca_fingerprints = [b"\x01" * 20, bytes(20), b"\x03" * 20, bytes(20)]
    state.objects = {"5b": b"Name", "0101": b"private"}
    state.terminated = True
    state.attestation_root = b"root-der"
    return state


def test_a_used_state_round_trips_through_the_key_file(tmp_path):
    state = _used_state()
    stored = state.to_store()
    assert stored["keys"]["dec"]["status"] == 2 and stored["keys"]["dec"]["uif"] == 3
    assert type(stored["keys"]["dec"]["status"]) is int  # an int, not the enum, in JSON
    assert CardState.from_store(stored) == state
    with VirtualKey.create(tmp_path / "k.key") as key:
        key.store.section("openpgp").update(stored)
        key.store.commit()
        path = key.path
    with VirtualKey.load(path) as again:
        loaded = CardState.from_store(again.store.section("openpgp"))
    assert loaded == state
    assert loaded.keys["dec"].status is KEY_STATUS.IMPORTED
    assert loaded.keys["dec"].uif is UIF.CACHED
    assert loaded.terminated is True
    assert json.loads(path.read_text())["openpgp"]["signature_counter"] == 41


def test_from_store_converts_each_field_to_its_type():
    raw = json.loads(json.dumps(_used_state().to_store(), default=list))
    raw["signature_counter"] = "41"  # whatever a store hands back, by type
    raw["terminated"] = 1
    state = CardState.from_store(raw)
    assert state.signature_counter == 41 and state.terminated is True
    assert state.pw1 == PinRecord(b"654321", 5, 2)
    assert state.rc == PinRecord(b"resetting", 4, 4)
    assert state.pw3 == PinRecord(b"admin-pin", 3, 1)
    assert state.kdf == b"\x81\x01\x03" and state.attestation_root == b"root-der"
    assert state.objects == {"5b": b"Name", "0101": b"private"}
    assert state.ca_fingerprints[2] == b"\x03" * 20
    assert state.keys["dec"].generated_at == 1700000000
    assert state.keys["dec"].fingerprint == b"\x11" * 20
    assert state.keys["dec"].certificate == b"cert"
    assert state.keys["dec"].private == b"pkcs8"
    assert state.signature_pin_policy == 0


@pytest.mark.parametrize(("record", "blocked", "shown"), [
    (PinRecord(b"123456"), False, 3),
    (PinRecord(b"123456", 3, 1), False, 1),
    (PinRecord(b"123456", 3, 0), True, 0),
    (PinRecord(b"123456", 3, -1), True, 0),
    (PinRecord(b"", 3, 3), True, 0),  # a resetting code that is not set
])
def test_pin_blocked_and_the_counter_pw_status_shows(record, blocked, shown):
    assert record.blocked is blocked
    assert record.shown_remaining == shown


def test_delete_key_keeps_the_touch_policy_and_certificate():
    record = KeyRecord(RSA2048, b"pkcs8", KEY_STATUS.GENERATED, b"\x22" * 20, 99, UIF.ON,
                       b"cert")
    record.delete_key()
    assert record == KeyRecord(RSA2048, b"", KEY_STATUS.NONE, bytes(20), 0, UIF.ON, b"cert")
    assert record.key_type == Attributes.parse(RSA2048)


def test_factory_reset_keeps_only_the_attestation_key_and_root():
    state = _used_state()
    state.keys["att"] = KeyRecord(RSA2048, b"att-key", KEY_STATUS.IMPORTED, b"\x33" * 20)
    fresh = state.factory_reset()
    expected = CardState(attestation_root=b"root-der")
    expected.keys["att"] = state.keys["att"]
    assert fresh == expected
    assert fresh.key("att").private == b"att-key"
    assert fresh.key("dec") == KeyRecord(RSA2048)


def test_new_states_share_no_mutable_defaults():
    first = CardState()
    first.objects["5b"] = b"changed"
    first.ca_fingerprints[0] = b"\x01" * 20
    first.keys["sig"].private = b"x"
    second = CardState()
    assert second.objects == {"5f35": b"9"}
    assert second.ca_fingerprints == [bytes(20)] * 4
    assert second.keys["sig"].private == b""


@pytest.mark.parametrize(("tag", "name"), [
    (0x05, "05"), (0x5B, "5b"), (0xFF, "ff"), (0x100, "0100"), (0x0101, "0101"),
    (0x5F50, "5f50")])
def test_object_names(tag, name):
    assert object_name(tag) == name
