"""What the PIV applet keeps in the key's ``piv`` store section, as small typed records.

Layout of the section (bytes are stored by the key store as base64)::

    {"pin": PinRecord, "puk": PinRecord, "management_key": ManagementKeyRecord,
     "keys": {"9a": SlotKeyRecord, ...}, "objects": {"5fc105": bytes, ...},
     "attestation_root": DER certificate}

Each record converts explicitly with ``to_store()`` / ``from_store()``; the applet
writes a record back and commits the store before it answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hwtoken.emulator.applets.piv.constants import (
    DEFAULT_MANAGEMENT_KEY,
    DEFAULT_MANAGEMENT_KEY_TYPE,
    DEFAULT_PIN,
    DEFAULT_PUK,
    DEFAULT_RETRIES,
    KEY_TYPE,
    MANAGEMENT_KEY_TYPE,
    PIN_LEN,
    PIN_POLICY,
    TOUCH_POLICY,
)


def pad_pin(value: bytes) -> bytes:
    """A PIN/PUK as the card compares it: 8 bytes, padded with ``FF``."""
    return value.ljust(PIN_LEN, b"\xff")


@dataclass
class PinRecord:
    """The PIN or the PUK: its padded value and retry counters."""

    value: bytes
    total: int = DEFAULT_RETRIES
    remaining: int = DEFAULT_RETRIES
    default: bytes = DEFAULT_PIN

    @classmethod
    def factory(cls, default: bytes, total: int = DEFAULT_RETRIES) -> PinRecord:
        return cls(pad_pin(default), total, total, default)

    @property
    def is_default(self) -> bool:
        return self.value == pad_pin(self.default)

    @property
    def blocked(self) -> bool:
        return self.remaining <= 0

    def to_store(self) -> dict[str, Any]:
        return {"value": self.value, "total": self.total, "remaining": self.remaining}

    @classmethod
    def from_store(cls, raw: dict[str, Any], default: bytes) -> PinRecord:
        return cls(bytes(raw["value"]), int(raw["total"]), int(raw["remaining"]), default)


def default_pin() -> PinRecord:
    return PinRecord.factory(DEFAULT_PIN)


def default_puk() -> PinRecord:
    return PinRecord.factory(DEFAULT_PUK)


@dataclass
class ManagementKeyRecord:
    """The card management key (slot 9B): algorithm, value and touch policy."""

    key_type: MANAGEMENT_KEY_TYPE = DEFAULT_MANAGEMENT_KEY_TYPE
    key: bytes = DEFAULT_MANAGEMENT_KEY
    touch: TOUCH_POLICY = TOUCH_POLICY.NEVER

    @property
    def is_default(self) -> bool:
        return self.key == DEFAULT_MANAGEMENT_KEY

    def to_store(self) -> dict[str, Any]:
        return {"type": int(self.key_type), "key": self.key, "touch": int(self.touch)}

    @classmethod
    def from_store(cls, raw: dict[str, Any]) -> ManagementKeyRecord:
        return cls(MANAGEMENT_KEY_TYPE(int(raw["type"])), bytes(raw["key"]),
                   TOUCH_POLICY(int(raw["touch"])))


@dataclass
class SlotKeyRecord:
    """A private key in a slot, with its (resolved, never DEFAULT) policies and origin."""

    key_type: KEY_TYPE
    private: bytes  # PKCS#8 DER
    pin_policy: PIN_POLICY
    touch_policy: TOUCH_POLICY
    origin: int  # ORIGIN_GENERATED or ORIGIN_IMPORTED

    def to_store(self) -> dict[str, Any]:
        return {"type": int(self.key_type), "private": self.private,
                "pin_policy": int(self.pin_policy), "touch_policy": int(self.touch_policy),
                "origin": self.origin}

    @classmethod
    def from_store(cls, raw: dict[str, Any]) -> SlotKeyRecord:
        return cls(KEY_TYPE(int(raw["type"])), bytes(raw["private"]),
                   PIN_POLICY(int(raw["pin_policy"])), TOUCH_POLICY(int(raw["touch_policy"])),
                   int(raw["origin"]))


def slot_name(slot: int) -> str:
    """The store's key for a slot: two lowercase hex digits."""
    return f"{slot:02x}"


def object_name(object_id: int) -> str:
    """The store's key for a data object: its tag in lowercase hex."""
    return f"{object_id:x}"
