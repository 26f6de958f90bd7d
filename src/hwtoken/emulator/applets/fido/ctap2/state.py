"""Persistent CTAP2 state of a virtual key, kept in the store's ``fido`` section.

Layout of the section (the store persists it as JSON; bytes are allowed)::

    attestation  {"key", "chain"}            (hwtoken.emulator.applets.fido.attestation)
    counter      reserved signature counter  (hwtoken.emulator.applets.fido.credentials)
    generation   FIDO reset generation       (credential wrapping secret)
    pin          {"hash", "retries", "length"} or absent
    persistent_token  the CTAP 2.2 persistent PIN/UV auth token (32 bytes) or absent
    config       {"always_uv", "min_pin_length", "min_pin_rp_ids", "force_pin_change",
                  "ep" (enterprise attestation enabled)}
    enterprise_rp_ids  RP IDs given a vendor-facilitated enterprise attestation
    resident     [ResidentRecord.to_store(), ...]
    cred_store   a number that changes with every change of the resident credentials
    large_blob   the serialized large-blob array
    bio          {"templates", "uv_retries"}: enrolled fingerprints (bio_enrollment.py)

Every mutating method leaves committing to the caller (:meth:`FidoState.commit`). When the
store rolls back (a failed write, a failed command), the cached views here are dropped.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from hwtoken.emulator.applets.fido import credentials
from hwtoken.emulator.applets.fido.credentials import ResidentRecord

SECTION = "fido"
MAX_RESIDENT = 100  # (the default; a key's profile sets its own)
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
        key.store.on_rollback(self._forget_cached)

    def _forget_cached(self) -> None:
        self._residents = None
        self._wrap = None

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
        """The stored settings, for reading (an empty dict when none are stored)."""
        cfg = self.section.get("config")
        return cfg if isinstance(cfg, dict) else {}

    def set_config(self, **changes: Any) -> None:
        """Change settings (reading never writes: memory stays what was last saved)."""
        cfg = self.section.get("config")
        if not isinstance(cfg, dict):
            cfg = self.section["config"] = {}
        cfg.update(changes)

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

    @property
    def ep_enabled(self) -> bool:
        """Enterprise attestation enabled (authenticatorConfig enableEnterpriseAttestation)."""
        return bool(self.config.get("ep", False))

    @property
    def enterprise_rp_ids(self) -> list[str]:
        """RP IDs that get a vendor-facilitated enterprise attestation."""
        ids = self.section.get("enterprise_rp_ids")
        if ids is None:
            return list(self.key.profile.enterprise_rp_ids)
        return [str(r) for r in ids]

    # -- CTAP 2.2 identifiers --------------------------------------------------------------
    @property
    def device_identifier(self) -> bytes:
        """16 bytes naming this key until its next reset (getInfo encIdentifier)."""
        generation = int(self.section.get(credentials.GENERATION_FIELD, 0))
        return hmac.new(self.key.master_secret, b"device-identifier\x00"
                        + str(generation).encode(), hashlib.sha256).digest()[:16]

    @property
    def cred_store_state(self) -> bytes:
        """16 bytes that change whenever the resident credentials change
        (getInfo encCredStoreState)."""
        version = int(self.section.get("cred_store", 0))
        generation = int(self.section.get(credentials.GENERATION_FIELD, 0))
        return hmac.new(self.key.master_secret, b"cred-store-state\x00"
                        + f"{generation}:{version}".encode(), hashlib.sha256).digest()[:16]

    def _cred_store_changed(self) -> None:
        self.section["cred_store"] = int(self.section.get("cred_store", 0)) + 1

    @property
    def persistent_token(self) -> bytes | None:
        token = self.section.get("persistent_token")
        return bytes(token) if token else None

    @persistent_token.setter
    def persistent_token(self, value: bytes | None) -> None:
        if value is None:
            self.section.pop("persistent_token", None)
        else:
            self.section["persistent_token"] = bytes(value)

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
        self.set_config(force_pin_change=False)

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
        self._cred_store_changed()

    def find_resident(self, credential_id: bytes) -> ResidentRecord | None:
        for rec in self.residents:
            if hmac.compare_digest(rec.credential_id, credential_id):
                return rec
        return None

    def put_resident(self, record: ResidentRecord, limit: int = MAX_RESIDENT) -> bool:
        """Store ``record``, replacing one for the same RP and user; False when full."""
        recs = self.residents
        for i, rec in enumerate(recs):
            if rec.rp_id == record.rp_id and rec.user_id == record.user_id:
                recs[i] = record
                break
        else:
            if len(recs) >= limit:
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

        The attestation keys, the enterprise RP IDs and the signature counter survive (the
        counter never goes back).
        """
        generation = int(self.section.get(credentials.GENERATION_FIELD, 0)) + 1
        for name in ("pin", "config", "resident", "large_blob", "persistent_token",
                     "cred_store", "bio"):
            self.section.pop(name, None)
        self.section[credentials.GENERATION_FIELD] = generation
        self._residents = None
        self._wrap = None
