"""authenticatorCredentialManagement (0x0A): list, delete and update resident credentials.

Enumeration state (the RPs or credentials still to return) belongs to the channel that
began it: any other command, a request on another channel (another connection, another
card session) or :data:`ENUMERATION_TIMEOUT` seconds of silence drop it, as with
getNextAssertion. The pre-standard credentialMgmtPreview command (0x41, FIDO_2_1_PRE) is
the same minus updateUserInformation and without token permissions (a legacy getPinToken
token works), as YubiKey 5 firmware answers it. With CTAP 2.2's persistent token (pcmr),
metadata and enumeration work read-only; delete and update need an ordinary token.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from fido2 import cbor

from hwtoken.emulator.applets.fido.credentials import ResidentRecord
from hwtoken.emulator.applets.fido.ctap2.client_pin import Permission
from hwtoken.emulator.applets.fido.ctap2.errors import ERR, Ctap2Error
from hwtoken.emulator.applets.fido.ctap2.params import Params, descriptor

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.applets.fido.ctap2.authenticator import Authenticator

GET_CREDS_METADATA = 0x01
ENUMERATE_RPS_BEGIN = 0x02
ENUMERATE_RPS_NEXT = 0x03
ENUMERATE_CREDS_BEGIN = 0x04
ENUMERATE_CREDS_NEXT = 0x05
DELETE_CREDENTIAL = 0x06
UPDATE_USER_INFO = 0x07

READ_ONLY = (GET_CREDS_METADATA, ENUMERATE_RPS_BEGIN, ENUMERATE_CREDS_BEGIN)
ENUMERATION_TIMEOUT = 30.0  # seconds, as for getNextAssertion
USER_FIELDS = ("id", "name", "displayName", "icon")


def canonical(value: Any) -> bytes:
    """The canonical CBOR the platform MACed (PIN_AUTH_INVALID if it cannot be encoded)."""
    try:
        return cbor.encode(value)
    except (ValueError, TypeError):
        raise Ctap2Error(ERR.PIN_AUTH_INVALID) from None


class CredentialManagement:
    """Resident-credential management with enumeration state between calls."""

    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth
        self._rps: list[tuple[str, dict[str, Any]]] = []
        self._creds: list[ResidentRecord] = []
        self._channel: Any = None
        self._last = 0.0
        self._persistent = False  # the current request was authorised by the pcmr token

    def power_cycle(self) -> None:
        self.drop()

    def drop(self) -> None:
        """Forget any enumeration in progress."""
        self._rps = []
        self._creds = []
        self._channel = None

    def _continuing(self) -> bool:
        """True if an enumeration may go on for this request (else it is dropped)."""
        if (self._channel != self.auth.channel
                or time.monotonic() - self._last > ENUMERATION_TIMEOUT):
            self.drop()
            return False
        self._last = time.monotonic()
        return True

    def process(self, p: Params, preview: bool = False) -> dict[int, Any] | None:
        sub = p.req(0x01, int)
        sub_params_raw = p.raw(0x02)
        sub_params = Params(sub_params_raw)
        if sub == ENUMERATE_RPS_NEXT:
            self._creds = []
            return self._next_rp()
        if sub == ENUMERATE_CREDS_NEXT:
            self._rps = []
            return self._next_cred()
        self.drop()
        allowed = (GET_CREDS_METADATA, ENUMERATE_RPS_BEGIN, ENUMERATE_CREDS_BEGIN,
                   DELETE_CREDENTIAL) + (() if preview else (UPDATE_USER_INFO,))
        if sub not in allowed:
            raise Ctap2Error(ERR.INVALID_SUBCOMMAND)
        self._authorise(p, sub, sub_params_raw, preview)
        if sub == GET_CREDS_METADATA:
            self._require_no_rp()
            count = len(self.auth.state.residents)
            return {0x01: count, 0x02: max(0, self.auth.profile.max_resident - count)}
        if sub == ENUMERATE_RPS_BEGIN:
            self._require_no_rp()
            return self._begin_rps()
        if sub == ENUMERATE_CREDS_BEGIN:
            return self._begin_creds(sub_params.req(0x01, bytes))
        if sub == DELETE_CREDENTIAL:
            return self._delete(sub_params)
        return self._update(sub_params)

    def _authorise(self, p: Params, sub: int, sub_params: Any, preview: bool) -> None:
        pin_auth = p.opt(0x04, bytes)
        if pin_auth is None:
            raise Ctap2Error(ERR.PUAT_REQUIRED)
        proto = self.auth.pin.protocol_param(p, 0x03)
        message = bytes([sub]) + (canonical(sub_params) if sub_params is not None else b"")
        pin = self.auth.pin
        self._persistent = sub in READ_ONLY and pin.verify_persistent(proto, message, pin_auth)
        if self._persistent:
            return
        pin.verify(proto, message, pin_auth)
        if not preview:  # credentialMgmtPreview predates token permissions
            pin.require(Permission.CREDENTIAL_MGMT)

    def _require_no_rp(self) -> None:
        if not self._persistent:
            self.auth.pin.require_no_rp()

    def _check_rp(self, rp_id: str) -> None:
        if self._persistent:
            return
        bound = self.auth.pin.token.rp_id
        if bound is not None and bound != rp_id:
            raise Ctap2Error(ERR.PIN_AUTH_INVALID)

    # -- RPs --------------------------------------------------------------------------------
    def _begin_rps(self) -> dict[int, Any]:
        seen: dict[str, dict[str, Any]] = {}
        for rec in self.auth.state.residents:
            seen.setdefault(rec.rp_id, rec.rp)
        if not seen:
            raise Ctap2Error(ERR.NO_CREDENTIALS)
        rps = list(seen.items())
        first, self._rps = rps[0], rps[1:]
        self._channel, self._last = self.auth.channel, time.monotonic()
        out = self._rp_entry(*first)
        out[0x05] = len(rps)
        return out

    def _next_rp(self) -> dict[int, Any]:
        if not self._continuing() or not self._rps:
            raise Ctap2Error(ERR.NOT_ALLOWED)
        return self._rp_entry(*self._rps.pop(0))

    @staticmethod
    def _rp_entry(rp_id: str, rp: dict[str, Any]) -> dict[int, Any]:
        entity = {"id": rp_id}
        if isinstance(rp.get("name"), str):
            entity["name"] = rp["name"]
        return {0x03: entity, 0x04: hashlib.sha256(rp_id.encode()).digest()}

    # -- credentials --------------------------------------------------------------------------
    def _begin_creds(self, rp_id_hash: bytes) -> dict[int, Any]:
        recs = [r for r in self.auth.state.residents if r.rp_id_hash == rp_id_hash]
        if not recs:
            raise Ctap2Error(ERR.NO_CREDENTIALS)
        self._check_rp(recs[0].rp_id)
        first, self._creds = recs[0], recs[1:]
        self._channel, self._last = self.auth.channel, time.monotonic()
        out = self._cred_entry(first)
        out[0x09] = len(recs)
        return out

    def _next_cred(self) -> dict[int, Any]:
        if not self._continuing() or not self._creds:
            raise Ctap2Error(ERR.NOT_ALLOWED)
        return self._cred_entry(self._creds.pop(0))

    def _cred_entry(self, rec: ResidentRecord) -> dict[int, Any]:
        found = self.auth.open_credential(rec.rp_id_hash, rec.credential_id)
        if found is None:  # pragma: no cover - records are always ours
            raise Ctap2Error(ERR.OTHER)
        out: dict[int, Any] = {
            0x06: dict(rec.user),
            0x07: {"id": rec.credential_id, "type": "public-key"},
            0x08: found.cred.cose_public_key(),
            0x0A: found.cred.protection,
        }
        if rec.large_blob_key:
            out[0x0B] = found.cred.large_blob_key()
        if "thirdPartyPayment" in self.auth.profile.extensions:
            out[0x0C] = found.cred.third_party_payment
        return out

    def _record(self, sub_params: Params) -> ResidentRecord:
        _, cid = descriptor(sub_params.req(0x02, dict))
        rec = self.auth.state.find_resident(cid)
        if rec is None:
            raise Ctap2Error(ERR.NO_CREDENTIALS)
        self._check_rp(rec.rp_id)
        return rec

    def _delete(self, sub_params: Params) -> None:
        rec = self._record(sub_params)
        self.auth.state.delete_resident(rec.credential_id)
        self.auth.state.commit()
        return None

    def _update(self, sub_params: Params) -> None:
        rec = self._record(sub_params)
        user = Params(sub_params.req(0x03, dict))
        user_id = user.req("id", bytes)
        for f in USER_FIELDS[1:]:
            user.opt(f, str)
        if user_id != rec.user_id:
            raise Ctap2Error(ERR.INVALID_PARAMETER)
        # CTAP 2.1 §6.8.6: fields absent or empty in the request are removed
        rec.user = {k: user.data[k] for k in USER_FIELDS
                    if user.data.get(k) is not None and user.data[k] != ""}
        self.auth.state.update_residents()
        self.auth.state.commit()
        return None
