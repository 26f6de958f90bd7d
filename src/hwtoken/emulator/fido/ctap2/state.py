"""Persistent CTAP2 state of a virtual key, kept in the store's ``fido`` section.

Layout of the section (the store persists it as JSON; bytes are allowed)::

    attestation  {"key", "chain"}            (hwtoken.emulator.fido.attestation)
    counter      reserved signature counter  (hwtoken.emulator.fido.credentials)
    generation   FIDO reset generation       (credential wrapping secret)
    pin          {"hash", "retries", "length"} or absent
    config       {"always_uv", "min_pin_length", "min_pin_rp_ids", "force_pin_change"}
    resident     [ResidentRecord.to_store(), ...]
    large_blob   the serialized large-blob array

Every mutating method leaves committing to the caller (:meth:`FidoState.commit`).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from hwtoken.emulator.fido import credentials
from hwtoken.emulator.fido.credentials import ResidentRecord

SECTION = "fido"
MAX_RESIDENT = 100
MAX_PIN_RETRIES = 8
DEFAULT_MIN_PIN_LENGTH = 4
MAX_MIN_PIN_RP_IDS = 4
MAX_LARGE_BLOB = 4096
EMPTY_LARGE_BLOB = b"\x80" + hashlib.sha256(b"\x80").digest()[:16]


class FidoState:
    """Typed view of the ``fido`` store section of one key."""

    def __init__(self, key: Any) -> None:
        self.key = key
        self.section: dict[str, Any] = key.store.section(SECTION)
        self._residents: list[ResidentRecord] | None = None
        self._wrap: bytes | None = None

    def commit(self) -> None:
        self.key.store.commit()

    # -- credential wrapping -----------------------------------------------------------
    @property
    def wrap_secret(self) -> bytes:
        if self._wrap is None:
            self._wrap = credentials.wrapping_secret(self.key)
        return self._wrap

    # -- config ----------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        cfg = self.section.get("config")
        if not isinstance(cfg, dict):
            cfg = self.section["config"] = {}
        return cfg

    @property
    def always_uv(self) -> bool:
        return bool(self.config.get("always_uv", False))

    @property
    def min_pin_length(self) -> int:
        return int(self.config.get("min_pin_length", DEFAULT_MIN_PIN_LENGTH))

    @property
    def min_pin_rp_ids(self) -> list[str]:
        return [str(r) for r in self.config.get("min_pin_rp_ids", [])]

    @property
    def force_pin_change(self) -> bool:
        return bool(self.config.get("force_pin_change", False))

    # -- PIN -------------------------------------------------------------------------------
    @property
    def pin_set(self) -> bool:
        return isinstance(self.section.get("pin"), dict)

    def _pin_mac(self, pin_hash: bytes) -> bytes:
        # The store keeps an HMAC of LEFT(SHA-256(PIN), 16), not the hash itself.
        return hmac.new(self.key.master_secret, b"pin\x00" + pin_hash, hashlib.sha256).digest()

    def pin_matches(self, pin_hash: bytes) -> bool:
        stored = bytes(self.section["pin"]["hash"])
        return hmac.compare_digest(stored, self._pin_mac(pin_hash))

    def set_pin(self, pin_hash: bytes, length: int) -> None:
        self.section["pin"] = {"hash": self._pin_mac(pin_hash), "retries": MAX_PIN_RETRIES,
                               "length": length}
        self.config["force_pin_change"] = False

    @property
    def pin_retries(self) -> int:
        return int(self.section["pin"]["retries"]) if self.pin_set else MAX_PIN_RETRIES

    @pin_retries.setter
    def pin_retries(self, value: int) -> None:
        self.section["pin"]["retries"] = value

    @property
    def pin_length(self) -> int:
        return int(self.section["pin"].get("length", 0)) if self.pin_set else 0

    # -- resident credentials -------------------------------------------------------------
    @property
    def residents(self) -> list[ResidentRecord]:
        if self._residents is None:
            raw = self.section.get("resident") or []
            self._residents = [ResidentRecord.from_store(r) for r in raw]
        return self._residents

    def _save_residents(self) -> None:
        self.section["resident"] = [r.to_store() for r in self.residents]

    def find_resident(self, credential_id: bytes) -> ResidentRecord | None:
        for rec in self.residents:
            if hmac.compare_digest(rec.credential_id, credential_id):
                return rec
        return None

    def put_resident(self, record: ResidentRecord) -> bool:
        """Store ``record``, replacing one for the same RP and user; False when full."""
        recs = self.residents
        for i, rec in enumerate(recs):
            if rec.rp_id == record.rp_id and rec.user_id == record.user_id:
                recs[i] = record
                break
        else:
            if len(recs) >= MAX_RESIDENT:
                return False
            recs.append(record)
        self._save_residents()
        return True

    def delete_resident(self, credential_id: bytes) -> bool:
        rec = self.find_resident(credential_id)
        if rec is None:
            return False
        self.residents.remove(rec)
        self._save_residents()
        return True

    def update_residents(self) -> None:
        """Persist after a record was changed in place."""
        self._save_residents()

    # -- large blobs -----------------------------------------------------------------------
    @property
    def large_blob(self) -> bytes:
        return bytes(self.section.get("large_blob") or EMPTY_LARGE_BLOB)

    @large_blob.setter
    def large_blob(self, value: bytes) -> None:
        self.section["large_blob"] = bytes(value)

    # -- reset -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget PIN, resident credentials, config and large blobs; new wrapping secret.

        The attestation key and the signature counter survive (the counter never goes back).
        """
        generation = int(self.section.get(credentials.GENERATION_FIELD, 0)) + 1
        for name in ("pin", "config", "resident", "large_blob"):
            self.section.pop(name, None)
        self.section[credentials.GENERATION_FIELD] = generation
        self._residents = None
        self._wrap = None
