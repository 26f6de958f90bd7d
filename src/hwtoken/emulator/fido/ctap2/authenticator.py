"""The CTAP 2.1 authenticator of the virtual key: command byte + CBOR in, status + CBOR out.

:meth:`Authenticator.process` never raises: malformed CBOR, wrong types, missing
parameters and unknown commands all become the status codes the spec assigns, and a
failing command leaves the persisted state as it was.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fido2 import cbor

from hwtoken.emulator.fido import attestation
from hwtoken.emulator.fido.credentials import (
    MAX_ID_LEN,
    SUPPORTED_ALGORITHMS,
    CredentialKey,
    ResidentRecord,
    signature_counter,
    unwrap,
    wrap,
)
from hwtoken.emulator.fido.ctap2 import extensions
from hwtoken.emulator.fido.ctap2.cbor import CborError
from hwtoken.emulator.fido.ctap2.cbor import decode as decode_cbor
from hwtoken.emulator.fido.ctap2.client_pin import ClientPin, Permission
from hwtoken.emulator.fido.ctap2.errors import ERR, Ctap2Error
from hwtoken.emulator.fido.ctap2.params import (
    Params,
    check_type,
    descriptor_list,
    options,
)
from hwtoken.emulator.fido.ctap2.pin_protocols import PinProtocolV1
from hwtoken.emulator.fido.ctap2.state import (
    MAX_LARGE_BLOB,
    MAX_MIN_PIN_RP_IDS,
    MAX_RESIDENT,
    FidoState,
)

Keepalive = Callable[[], None]

MAX_MSG_SIZE = 1200
MAX_CREDS_IN_LIST = 8
MAX_USER_ID = 64
RESET_WINDOW = 10.0  # seconds after power-up
NEXT_ASSERTION_TIMEOUT = 30.0

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_AT = 0x40
FLAG_ED = 0x80


_NEVER = threading.Event()  # "no cancel": never set


def _head(major: int, n: int) -> bytes:
    """A CBOR head (major type + length) -- the assertion fast path's encoder."""
    if n < 24:
        return bytes([major << 5 | n])
    if n < 0x100:
        return bytes([major << 5 | 24, n])
    return bytes([major << 5 | 25]) + n.to_bytes(2, "big")


def _entity(p: Params, fields: tuple[str, ...]) -> dict[str, Any]:
    """The known, non-null members of an RP or user entity (what gets stored)."""
    return {f: p.data[f] for f in fields if p.data.get(f) is not None}


def _encode_plain_assertion(response: dict[int, Any]) -> bytes:
    """Canonical CBOR of {1: {"id", "type"}, 2: authData, 3: sig}, without the generic
    encoder (this is the hot path of every assertion)."""
    cid, auth_data, sig = response[1]["id"], response[2], response[3]
    return b"".join((
        b"\xa3\x01\xa2\x62id", _head(2, len(cid)), cid, b"\x64type\x6apublic-key",
        b"\x02", _head(2, len(auth_data)), auth_data, b"\x03", _head(2, len(sig)), sig,
    ))


class Cmd:
    MAKE_CREDENTIAL = 0x01
    GET_ASSERTION = 0x02
    GET_INFO = 0x04
    CLIENT_PIN = 0x06
    RESET = 0x07
    GET_NEXT_ASSERTION = 0x08
    CREDENTIAL_MGMT = 0x0A
    SELECTION = 0x0B
    LARGE_BLOBS = 0x0C
    CONFIG = 0x0D


@dataclass
class _Found:
    credential_id: bytes
    cred: CredentialKey
    record: ResidentRecord | None


@dataclass
class _PendingAssertions:
    """What getNextAssertion needs to continue a getAssertion."""

    rp_id_hash: bytes
    client_data_hash: bytes
    up: bool
    uv: bool
    ext: dict[Any, Any]
    hmac: extensions.HmacSecretRequest | None
    remaining: list[_Found]
    started: float


class Authenticator:
    """CTAP 2.1 for one :class:`~hwtoken.emulator.key.VirtualKey` (pure logic)."""

    def __init__(self, key: Any) -> None:
        from hwtoken.emulator.fido.ctap2.config import AuthenticatorConfig
        from hwtoken.emulator.fido.ctap2.credential_management import CredentialManagement
        from hwtoken.emulator.fido.ctap2.large_blobs import LargeBlobs

        self.key = key
        self.state = FidoState(key)
        self.pin = ClientPin(self.state)
        self.counter = signature_counter(key)
        self.credential_management = CredentialManagement(self)
        self.config = AuthenticatorConfig(self)
        self.large_blobs = LargeBlobs(self)
        self._lock = threading.RLock()
        self._pending: _PendingAssertions | None = None
        self._handler_table = self._handlers()

    # -- lifecycle -----------------------------------------------------------------------
    def initialise(self) -> None:
        """Set up a new key (attestation key and chain; CTAP2 defaults are implicit)."""
        attestation.ensure_attestation(self.key)

    def power_cycle(self) -> None:
        """Drop PIN tokens, the wrong-PIN streak and pending multi-step commands."""
        with self._lock:
            self.pin.power_cycle()
            self._pending = None
            self.credential_management.power_cycle()
            self.large_blobs.power_cycle()

    @property
    def u2f_enabled(self) -> bool:
        """False while alwaysUv is on: CTAP 2.1 then disables CTAP1/U2F."""
        return not self.state.always_uv

    def next_signature_counter(self) -> int:
        """The key's global signature counter, shared with U2F."""
        return self.counter.next()

    # -- entry point ------------------------------------------------------------------------
    def process(self, request: bytes, cancel: threading.Event | None = None,
                keepalive: Keepalive | None = None) -> bytes:
        """One CTAP2 request -> status byte (+ canonical CBOR). Never raises."""
        with self._lock:
            try:
                result = self._dispatch(bytes(request), cancel or _NEVER, keepalive)
                if result is None:
                    return b"\x00"
                if isinstance(result, bytes):  # already encoded (getAssertion fast path)
                    return b"\x00" + result
                return b"\x00" + cbor.encode(result)
            except Ctap2Error as e:
                return bytes([e.code])
            except CborError:
                return bytes([ERR.INVALID_CBOR])
            except Exception:  # a bug must not take the key down
                return bytes([ERR.OTHER])

    def _dispatch(self, request: bytes, cancel: threading.Event,
                  keepalive: Keepalive | None) -> dict[Any, Any] | None:
        if not request:
            raise Ctap2Error(ERR.INVALID_LENGTH)
        if len(request) > MAX_MSG_SIZE:
            raise Ctap2Error(ERR.REQUEST_TOO_LARGE)
        cmd, body = request[0], request[1:]
        if cmd != Cmd.GET_NEXT_ASSERTION:
            self._pending = None
        handler = self._handler_table.get(cmd)
        if handler is None:
            raise Ctap2Error(ERR.INVALID_COMMAND)
        params = Params(decode_cbor(body) if body else None)
        return handler(params, cancel, keepalive)

    def _handlers(self) -> dict[int, Callable[..., dict[Any, Any] | None]]:
        return {
            Cmd.MAKE_CREDENTIAL: self.make_credential,
            Cmd.GET_ASSERTION: self.get_assertion,
            Cmd.GET_INFO: lambda p, c, k: self.get_info(),
            Cmd.CLIENT_PIN: lambda p, c, k: self.pin.process(p),
            Cmd.RESET: self.reset,
            Cmd.GET_NEXT_ASSERTION: lambda p, c, k: self.get_next_assertion(),
            Cmd.CREDENTIAL_MGMT: lambda p, c, k: self.credential_management.process(p),
            Cmd.SELECTION: self.selection,
            Cmd.LARGE_BLOBS: lambda p, c, k: self.large_blobs.process(p),
            Cmd.CONFIG: lambda p, c, k: self.config.process(p),
        }

    # -- helpers ---------------------------------------------------------------------------------
    def user_presence(self, reason: str, cancel: threading.Event,
                      keepalive: Keepalive | None) -> None:
        """Wait for a touch: KEEPALIVE_CANCEL if cancelled, USER_ACTION_TIMEOUT if nobody
        touched in time, OPERATION_DENIED if refused."""
        from hwtoken.emulator.presence import Decision

        decision = self.key.presence.wait(reason, cancel, keepalive)
        if cancel.is_set():
            raise Ctap2Error(ERR.KEEPALIVE_CANCEL)
        if not decision:
            timed_out = decision is Decision.TIMEOUT
            raise Ctap2Error(ERR.USER_ACTION_TIMEOUT if timed_out else ERR.OPERATION_DENIED)

    def _empty_pin_auth(self, reason: str, cancel: threading.Event,
                        keepalive: Keepalive | None) -> None:
        """A zero-length pinUvAuthParam: the platform asks 'touch me, is a PIN set?'."""
        self.user_presence(reason, cancel, keepalive)
        raise Ctap2Error(ERR.PIN_INVALID if self.state.pin_set else ERR.PIN_NOT_SET)

    def _pin_auth(self, p: Params, auth_key: int, proto_key: int, reason: str,
                  cancel: threading.Event, keepalive: Keepalive | None,
                  ) -> tuple[bytes | None, PinProtocolV1 | None]:
        """The request's pinUvAuthParam and its protocol (both None when there is none)."""
        pin_auth = p.opt(auth_key, bytes)
        if pin_auth == b"":
            self._empty_pin_auth(reason, cancel, keepalive)
        if pin_auth is None:
            return None, None
        return pin_auth, self.pin.protocol_param(p, proto_key)

    # -- getInfo --------------------------------------------------------------------------------
    def get_info(self) -> dict[int, Any]:
        st = self.state
        major, minor, patch = self.key.version
        return {
            # CTAP 2.1 §7.2.2: alwaysUv disables CTAP1/U2F, so U2F_V2 is not offered then
            0x01: (["FIDO_2_0", "FIDO_2_1"] if st.always_uv
                   else ["U2F_V2", "FIDO_2_0", "FIDO_2_1"]),
            0x02: list(extensions.SUPPORTED),
            0x03: self.key.aaguid,
            0x04: {
                "rk": True,
                "up": True,
                "plat": False,
                "clientPin": st.pin_set,
                "credMgmt": True,
                "authnrCfg": True,
                "largeBlobs": True,
                "pinUvAuthToken": True,
                "setMinPINLength": True,
                "makeCredUvNotRqd": not st.always_uv,
                "alwaysUv": st.always_uv,
            },
            0x05: MAX_MSG_SIZE,
            0x06: [2, 1],
            0x07: MAX_CREDS_IN_LIST,
            0x08: MAX_ID_LEN,
            0x09: ["nfc", "usb"],
            0x0A: [{"alg": alg, "type": "public-key"} for alg in SUPPORTED_ALGORITHMS],
            0x0B: MAX_LARGE_BLOB,
            0x0C: st.force_pin_change,
            0x0D: st.min_pin_length,
            0x0E: (major << 16) | (minor << 8) | patch,
            0x0F: 32,
            0x10: MAX_MIN_PIN_RP_IDS,
            0x14: max(0, MAX_RESIDENT - len(st.residents)),
        }

    # -- makeCredential -----------------------------------------------------------------------
    def make_credential(self, p: Params, cancel: threading.Event,
                        keepalive: Keepalive | None) -> dict[int, Any]:
        pin_auth, proto = self._pin_auth(p, 0x08, 0x09, "makeCredential", cancel, keepalive)

        client_data_hash = p.req(0x01, bytes)
        rp = Params(p.req(0x02, dict))
        rp_id = rp.req("id", str)
        rp.opt("name", str)
        user_p = Params(p.req(0x03, dict))
        user_id = user_p.req("id", bytes)
        for f in ("name", "displayName", "icon"):
            user_p.opt(f, str)
        if len(user_id) > MAX_USER_ID:
            raise Ctap2Error(ERR.INVALID_PARAMETER)
        cred_params = p.req(0x04, list)
        exclude = descriptor_list(p.raw(0x05)) if p.raw(0x05) is not None else []
        ext = p.opt(0x06, dict) or {}
        opts = options(p.raw(0x07)) if p.raw(0x07) is not None else {}
        enterprise = p.opt(0x0A, int)
        formats = p.opt(0x0B, list)

        alg = None
        for entry in cred_params:
            cp = Params(entry)
            typ, a = cp.req("type", str), cp.req("alg", int)
            if typ == "public-key" and a in SUPPORTED_ALGORITHMS and alg is None:
                alg = a
        if alg is None:
            raise Ctap2Error(ERR.UNSUPPORTED_ALGORITHM)
        if opts.get("up") is False or opts.get("uv") is True:
            raise Ctap2Error(ERR.INVALID_OPTION)
        rk = opts.get("rk", False)
        if enterprise is not None:
            raise Ctap2Error(ERR.INVALID_PARAMETER)

        uv = False
        if proto is not None:
            self.pin.verify(proto, client_data_hash, pin_auth)
            self.pin.require(Permission.MAKE_CREDENTIAL, rp_id)
            uv = True
        elif self.state.always_uv:
            raise Ctap2Error(ERR.PUAT_REQUIRED if self.state.pin_set else ERR.PIN_NOT_SET)
        elif self.state.pin_set and rk:
            raise Ctap2Error(ERR.PUAT_REQUIRED)

        rp_id_hash = hashlib.sha256(rp_id.encode()).digest()
        for typ, cid in exclude:
            if typ != "public-key":
                continue
            found = self.open_credential(rp_id_hash, cid)
            if found is not None and (found.cred.protection < 3 or uv):
                self.user_presence("makeCredential (excluded)", cancel, keepalive)
                raise Ctap2Error(ERR.CREDENTIAL_EXCLUDED)

        exts = extensions.registration(ext, rk, rp_id, self.state.min_pin_length,
                                       self.state.min_pin_rp_ids)
        hmac_mc = None
        if "hmac-secret-mc" in ext and exts.outputs.get("hmac-secret"):
            # CTAP 2.2: evaluate the new credential's PRF already at registration
            hmac_mc = extensions.hmac_secret_request(ext["hmac-secret-mc"],
                                                     self.pin.protocols)
        self.user_presence("makeCredential", cancel, keepalive)

        cred = CredentialKey.generate(alg, cred_protect=exts.cred_protect, resident=rk,
                                      cred_blob=exts.cred_blob)
        cid = wrap(self.state.wrap_secret, rp_id_hash, cred)
        if hmac_mc is not None:
            exts.outputs["hmac-secret-mc"] = hmac_mc.output(cred, uv)
        counter = self.counter.next()
        if rk:
            record = ResidentRecord(
                credential_id=cid, rp_id=rp_id, rp=_entity(rp, ("id", "name")),
                user=_entity(user_p, ("id", "name", "displayName", "icon")),
                created=counter, large_blob_key=exts.large_blob_key,
            )
            if not self.state.put_resident(record):
                raise Ctap2Error(ERR.KEY_STORE_FULL)
            self.state.commit()

        flags = FLAG_UP | FLAG_AT | (FLAG_UV if uv else 0)
        ext_out = b""
        if exts.outputs:
            flags |= FLAG_ED
            ext_out = cbor.encode(exts.outputs)
        cred_data = (self.key.aaguid + struct.pack(">H", len(cid)) + cid
                     + cbor.encode(cred.cose_public_key()))
        auth_data = (rp_id_hash + bytes([flags]) + struct.pack(">I", counter) + cred_data
                     + ext_out)
        if pin_auth is not None:
            self.pin.spend()

        if formats is not None and self._wants_none(formats):
            response: dict[int, Any] = {0x01: "none", 0x02: auth_data, 0x03: {}}
        else:
            sig = attestation.sign(self.key, auth_data + client_data_hash)
            response = {
                0x01: "packed", 0x02: auth_data,
                0x03: {"alg": -7, "sig": sig, "x5c": [attestation.attestation_certificate(
                    self.key)]},
            }
        if exts.large_blob_key:
            response[0x05] = cred.large_blob_key()
        return response

    @staticmethod
    def _wants_none(formats: list[Any]) -> bool:
        for f in formats:
            if check_type(f, str) in ("packed", "none"):
                return f == "none"
        return False

    def open_credential(self, rp_id_hash: bytes, credential_id: bytes) -> _Found | None:
        """Unwrap a credential ID of ours; resident ones only while their record exists."""
        cred = unwrap(self.state.wrap_secret, rp_id_hash, credential_id)
        if cred is None:
            return None
        record = None
        if cred.resident:
            record = self.state.find_resident(credential_id)
            if record is None:
                return None
        return _Found(credential_id, cred, record)

    # -- getAssertion ----------------------------------------------------------------------------
    def get_assertion(self, p: Params, cancel: threading.Event,
                      keepalive: Keepalive | None) -> dict[int, Any] | bytes:
        pin_auth, proto = self._pin_auth(p, 0x06, 0x07, "getAssertion", cancel, keepalive)

        rp_id = p.req(0x01, str)
        client_data_hash = p.req(0x02, bytes)
        allow = descriptor_list(p.raw(0x03)) if p.raw(0x03) is not None else []
        ext = p.opt(0x04, dict) or {}
        opts = options(p.raw(0x05)) if p.raw(0x05) is not None else {}
        if "rk" in opts:
            raise Ctap2Error(ERR.UNSUPPORTED_OPTION)
        if opts.get("uv") is True:
            raise Ctap2Error(ERR.INVALID_OPTION)
        up = opts.get("up", True)

        uv = False
        if proto is not None:
            self.pin.verify(proto, client_data_hash, pin_auth)
            self.pin.require(Permission.GET_ASSERTION, rp_id)
            uv = True
        elif self.state.always_uv and up:
            raise Ctap2Error(ERR.PUAT_REQUIRED if self.state.pin_set else ERR.PIN_NOT_SET)

        hmac_req = None
        if "hmac-secret" in ext:
            hmac_req = extensions.hmac_secret_request(ext["hmac-secret"], self.pin.protocols)
        if "credBlob" in ext:
            check_type(ext["credBlob"], bool)
        if "largeBlobKey" in ext and check_type(ext["largeBlobKey"], bool) is not True:
            raise Ctap2Error(ERR.INVALID_OPTION)

        rp_id_hash = hashlib.sha256(rp_id.encode()).digest()
        found: list[_Found] = []
        if allow:
            for typ, cid in allow:
                if typ != "public-key":
                    continue
                f = self.open_credential(rp_id_hash, cid)
                if f is not None and (f.cred.protection < 3 or uv):
                    found.append(f)
                    break
        else:
            records = [r for r in self.state.residents if r.rp_id == rp_id]
            records.sort(key=lambda r: r.created, reverse=True)
            for rec in records:
                f = self.open_credential(rp_id_hash, rec.credential_id)
                if f is not None and (f.cred.protection < 2 or uv):
                    found.append(f)
        if not found:
            raise Ctap2Error(ERR.NO_CREDENTIALS)

        if up:
            self.user_presence("getAssertion", cancel, keepalive)
            if pin_auth is not None:
                # a touch consumed the token's mc/ga rights; silent pre-flights do not
                self.pin.spend()

        pending = _PendingAssertions(rp_id_hash, client_data_hash, up, uv, ext, hmac_req,
                                     found[1:], time.monotonic())
        response = self._assertion(pending, found[0], discoverable=not allow)
        if not allow and len(found) > 1:
            response[0x05] = len(found)
            self._pending = pending
        if len(response) == 3:
            return _encode_plain_assertion(response)
        return response

    def get_next_assertion(self) -> dict[int, Any]:
        pending = self._pending
        if pending is None or not pending.remaining:
            self._pending = None
            raise Ctap2Error(ERR.NOT_ALLOWED)
        if time.monotonic() - pending.started > NEXT_ASSERTION_TIMEOUT:
            self._pending = None
            raise Ctap2Error(ERR.NOT_ALLOWED)
        found = pending.remaining.pop(0)
        pending.started = time.monotonic()
        return self._assertion(pending, found, discoverable=True)

    def _assertion(self, pending: _PendingAssertions, found: _Found,
                   discoverable: bool) -> dict[int, Any]:
        cred = found.cred
        ext_out: dict[str, Any] = {}
        if pending.hmac is not None:
            ext_out["hmac-secret"] = pending.hmac.output(cred, pending.uv)
        if pending.ext.get("credBlob") is True:
            ext_out["credBlob"] = cred.cred_blob
        flags = (FLAG_UP if pending.up else 0) | (FLAG_UV if pending.uv else 0)
        if ext_out:
            flags |= FLAG_ED
        counter = self.counter.next()
        auth_data = pending.rp_id_hash + bytes([flags]) + struct.pack(">I", counter)
        if ext_out:
            auth_data += cbor.encode(ext_out)
        response: dict[int, Any] = {
            0x01: {"id": found.credential_id, "type": "public-key"},
            0x02: auth_data,
            0x03: cred.sign(auth_data + pending.client_data_hash),
        }
        rec = found.record
        if rec is not None:
            user: dict[str, Any] = {"id": rec.user_id}
            if pending.uv and discoverable:
                for f in ("name", "displayName", "icon"):
                    if f in rec.user:
                        user[f] = rec.user[f]
            response[0x04] = user
            if pending.ext.get("largeBlobKey") is True and rec.large_blob_key:
                response[0x07] = cred.large_blob_key()
        return response

    # -- reset and selection ------------------------------------------------------------------
    def reset(self, p: Params, cancel: threading.Event,
              keepalive: Keepalive | None) -> None:
        if self.key.seconds_since_power_up() > RESET_WINDOW:
            raise Ctap2Error(ERR.NOT_ALLOWED)
        self.user_presence("reset", cancel, keepalive)
        self.state.reset()
        self.state.commit()
        self.pin.power_cycle()
        self.credential_management.power_cycle()
        self.large_blobs.power_cycle()
        return None

    def selection(self, p: Params, cancel: threading.Event,
                  keepalive: Keepalive | None) -> None:
        self.user_presence("selection", cancel, keepalive)
        return None
