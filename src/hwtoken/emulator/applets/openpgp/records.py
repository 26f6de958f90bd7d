"""What the OpenPGP applet keeps in the key's ``openpgp`` store section, as typed records.

Layout of the section (bytes are stored by the key store as base64)::

    {"pw1": PinRecord, "rc": PinRecord, "pw3": PinRecord,
     "keys": {"sig": KeyRecord, "dec": ..., "aut": ..., "att": ...},
     "signature_pin_policy": 0 | 1, "signature_counter": int, "kdf": bytes,
     "ca_fingerprints": [20 bytes x 4], "objects": {"5b": bytes, "0101": bytes, ...},
     "terminated": bool, "attestation_root": DER certificate}

:class:`CardState` converts the whole section with ``to_store()`` / ``from_store()``; the
applet changes a state and writes it back, committed, before it answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hwtoken.emulator.applets.openpgp.algorithms import Attributes
from hwtoken.emulator.applets.openpgp.algorithms import default as default_attributes
from hwtoken.emulator.applets.openpgp.constants import (
    ATT,
    DEFAULT_PW1,
    DEFAULT_PW3,
    DEFAULT_RETRIES,
    FINGERPRINT_LEN,
    KDF_NONE,
    KEY_STATUS,
    SLOTS,
    UIF,
)

NO_FINGERPRINT = bytes(FINGERPRINT_LEN)
#: cardholder data a new card has: the sex "not applicable" (ISO 5218), nothing else
DEFAULT_OBJECTS = {"5f35": b"9"}


@dataclass
class PinRecord:
    """PW1, PW3 or the resetting code: its value (empty: not set) and retry counters."""

    value: bytes
    total: int = DEFAULT_RETRIES
    remaining: int = DEFAULT_RETRIES

    @property
    def blocked(self) -> bool:
        return not self.value or self.remaining <= 0

    @property
    def shown_remaining(self) -> int:
        """The counter PW status shows: 0 for a reference that is not set."""
        return max(self.remaining, 0) if self.value else 0

    def to_store(self) -> dict[str, Any]:
        return {"value": self.value, "total": self.total, "remaining": self.remaining}

    @classmethod
    def from_store(cls, raw: dict[str, Any]) -> PinRecord:
        return cls(bytes(raw["value"]), int(raw["total"]), int(raw["remaining"]))


@dataclass
class KeyRecord:
    """One key slot: its algorithm attributes, the key (if any) and what describes it."""

    attributes: bytes
    private: bytes = b""  # PKCS #8 DER; empty: no key
    status: KEY_STATUS = KEY_STATUS.NONE
    fingerprint: bytes = NO_FINGERPRINT
    generated_at: int = 0
    uif: UIF = UIF.OFF
    certificate: bytes = b""  # the cardholder certificate (for ATT: DO FC)

    @property
    def key_type(self) -> Attributes:
        return Attributes.parse(self.attributes)

    def delete_key(self) -> None:
        """Forget the key and what described it (its touch policy and certificate stay)."""
        self.private, self.status = b"", KEY_STATUS.NONE
        self.fingerprint, self.generated_at = NO_FINGERPRINT, 0

    def to_store(self) -> dict[str, Any]:
        return {"attributes": self.attributes, "private": self.private,
                "status": int(self.status), "fingerprint": self.fingerprint,
                "generated_at": self.generated_at, "uif": int(self.uif),
                "certificate": self.certificate}

    @classmethod
    def from_store(cls, raw: dict[str, Any]) -> KeyRecord:
        return cls(bytes(raw["attributes"]), bytes(raw["private"]),
                   KEY_STATUS(int(raw["status"])), bytes(raw["fingerprint"]),
                   int(raw["generated_at"]), UIF(int(raw["uif"])), bytes(raw["certificate"]))


def _new_keys() -> dict[str, KeyRecord]:
    return {slot.name: KeyRecord(bytes(default_attributes())) for slot in SLOTS}


@dataclass
class CardState:
    """Everything the OpenPGP application keeps across power loss."""

    pw1: PinRecord = field(default_factory=lambda: PinRecord(DEFAULT_PW1))
    rc: PinRecord = field(default_factory=lambda: PinRecord(b"", DEFAULT_RETRIES, 0))
    pw3: PinRecord = field(default_factory=lambda: PinRecord(DEFAULT_PW3))
    keys: dict[str, KeyRecord] = field(default_factory=_new_keys)
    #: PW status byte 1: 00 = PW1 (81) is good for one signature only, 01 = for several
    signature_pin_policy: int = 1
    signature_counter: int = 0
    kdf: bytes = KDF_NONE
    ca_fingerprints: list[bytes] = field(default_factory=lambda: [NO_FINGERPRINT] * 4)
    #: cardholder name, language, sex, login data, URL, private use DOs (by hex tag)
    objects: dict[str, bytes] = field(default_factory=lambda: dict(DEFAULT_OBJECTS))
    terminated: bool = False
    attestation_root: bytes = b""

    def key(self, name: str) -> KeyRecord:
        return self.keys[name]

    def factory_reset(self) -> CardState:
        """The state after TERMINATE and ACTIVATE: every default back, but the attestation
        key, its certificate and the root it chains to stay (as on a YubiKey)."""
        fresh = CardState(attestation_root=self.attestation_root)
        fresh.keys[ATT.name] = self.keys[ATT.name]
        return fresh

    def to_store(self) -> dict[str, Any]:
        return {
            "pw1": self.pw1.to_store(), "rc": self.rc.to_store(), "pw3": self.pw3.to_store(),
            "keys": {name: rec.to_store() for name, rec in self.keys.items()},
            "signature_pin_policy": self.signature_pin_policy,
            "signature_counter": self.signature_counter,
            "kdf": self.kdf, "ca_fingerprints": list(self.ca_fingerprints),
            "objects": dict(self.objects), "terminated": self.terminated,
            "attestation_root": self.attestation_root,
        }

    @classmethod
    def from_store(cls, raw: dict[str, Any]) -> CardState:
        return cls(
            pw1=PinRecord.from_store(raw["pw1"]), rc=PinRecord.from_store(raw["rc"]),
            pw3=PinRecord.from_store(raw["pw3"]),
            keys={name: KeyRecord.from_store(rec) for name, rec in raw["keys"].items()},
            signature_pin_policy=int(raw["signature_pin_policy"]),
            signature_counter=int(raw["signature_counter"]),
            kdf=bytes(raw["kdf"]),
            ca_fingerprints=[bytes(f) for f in raw["ca_fingerprints"]],
            objects={str(k): bytes(v) for k, v in raw["objects"].items()},
            terminated=bool(raw["terminated"]),
            attestation_root=bytes(raw["attestation_root"]),
        )


def object_name(tag: int) -> str:
    """The store's key for a data object: its tag in lowercase hex (two or four digits)."""
    return f"{tag:02x}" if tag < 0x100 else f"{tag:04x}"
