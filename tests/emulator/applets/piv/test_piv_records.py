"""The PIV store records on their own: a fresh PIN/PUK record knows it holds its default,
and every record survives its to_store/from_store round trip unchanged."""

from __future__ import annotations

import pytest

from hwtoken.emulator.applets.piv.constants import (
    DEFAULT_PIN,
    DEFAULT_PUK,
    KEY_TYPE,
    MANAGEMENT_KEY_TYPE,
    PIN_POLICY,
    TOUCH_POLICY,
)
from hwtoken.emulator.applets.piv.records import (
    ManagementKeyRecord,
    PinRecord,
    SlotKeyRecord,
    default_pin,
    default_puk,
    pad_pin,
)


@pytest.mark.parametrize("value", [DEFAULT_PIN, DEFAULT_PUK])
def test_a_factory_record_holds_its_default(value):
    record = PinRecord.factory(value, 5)
    assert (record.value, record.total, record.remaining) == (pad_pin(value), 5, 5)
    assert record.default == value and record.is_default
    record.value = pad_pin(b"24681357")
    assert not record.is_default


def test_default_pin_and_puk():
    assert default_pin().is_default and default_pin().value == pad_pin(DEFAULT_PIN)
    assert default_puk().is_default and default_puk().value == pad_pin(DEFAULT_PUK)


def test_records_round_trip():
    pin = PinRecord(pad_pin(b"987654"), 4, 1, DEFAULT_PIN)
    assert PinRecord.from_store(pin.to_store(), DEFAULT_PIN) == pin
    mk = ManagementKeyRecord(MANAGEMENT_KEY_TYPE.AES256, bytes(range(32)), TOUCH_POLICY.ALWAYS)
    assert ManagementKeyRecord.from_store(mk.to_store()) == mk and not mk.is_default
    slot = SlotKeyRecord(KEY_TYPE.ED25519, b"der", PIN_POLICY.ALWAYS, TOUCH_POLICY.CACHED, 1)
    assert SlotKeyRecord.from_store(slot.to_store()) == slot
