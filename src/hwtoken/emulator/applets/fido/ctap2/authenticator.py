"""The CTAP 2.1/2.2 authenticator of the virtual key: command byte + CBOR in, status + CBOR out.

:meth:`Authenticator.process` never raises: malformed CBOR, wrong types, missing
parameters and unknown commands all become the status codes the spec assigns, and a
failing command leaves the state as it was, in memory and on disk (a failed write rolls
the store back; a state-changing command that fails returns it to what was last saved).
What the authenticator offers -- getInfo, algorithms, extensions, CTAP 2.2 features -- is
the key's profile (:mod:`hwtoken.emulator.profiles`).

Responses never exceed what CTAPHID can carry (:data:`MAX_RESPONSE`): a response that would
(an ML-DSA-87 signature with a very large user entity, say) is CTAP2_ERR_REQUEST_TOO_LARGE,
and a makeCredential whose attestation does not fit stores nothing.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from fido2 import cbor

from hwtoken.emulator.applets.fido import algorithms, attestation
from hwtoken.emulator.applets.fido.credentials import (
    CredentialKey,
    ResidentRecord,
    signature_counter,
    unwrap,
    wrap,
)
from hwtoken.emulator.applets.fido.ctap2 import extensions, preview_sign
from hwtoken.emulator.applets.fido.ctap2.bio_enrollment import (
    UV_MODALITY_FINGERPRINT,
    BioEnrollment,
    BioStore,
    BuiltInUv,
)
from hwtoken.emulator.applets.fido.ctap2.cbor import CborError
from hwtoken.emulator.applets.fido.ctap2.cbor import decode as decode_cbor
from hwtoken.emulator.applets.fido.ctap2.client_pin import ClientPin, Permission
from hwtoken.emulator.applets.fido.ctap2.errors import ERR, Ctap2Error
from hwtoken.emulator.applets.fido.ctap2.params import (
    Params,
    check_type,
    descriptor_list,
    options,
)
from hwtoken.emulator.applets.fido.ctap2.pin_protocols import PinProtocolV1
from hwtoken.emulator.applets.fido.ctap2.state import FidoState

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.context import KeyContext

Keepalive = Callable[[], None]

#: the largest response body: CTAPHID's largest message (7609 bytes) minus the status byte
MAX_RESPONSE = 7609 - 1
MAX_PIN_LENGTH = 63
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
    CREDENTIAL_MGMT_PRE = 0x41  # credentialMgmtPreview (FIDO_2_1_PRE), as YubiKey 5 answers
    BIO_ENROLLMENT = 0x09
    BIO_ENROLLMENT_PRE = 0x40  # userVerificationMgmtPreview (FIDO_2_1_PRE)


#: commands that change the key's state: when one fails, the state returns to the last save
_MUTATING = frozenset({Cmd.MAKE_CREDENTIAL, Cmd.CLIENT_PIN, Cmd.RESET, Cmd.CREDENTIAL_MGMT,
                       Cmd.CREDENTIAL_MGMT_PRE, Cmd.LARGE_BLOBS, Cmd.CONFIG,
                       Cmd.BIO_ENROLLMENT, Cmd.BIO_ENROLLMENT_PRE})


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
    channel: Any = None
    sign_output: dict[int, Any] | None = None  #: previewSign's {6: signature} (allow list)


class Authenticator:
    """CTAP 2.1/2.2 for one key (:class:`~hwtoken.emulator.context.KeyContext`) (pure logic)."""

    #: Strict mode, for tests (what ``CardOS(strict=True)`` is for the card applets): when
    #: a list, every internal exception -- a bug, still answered CTAP1_ERR_OTHER -- is
    #: appended to it, whichever thread (CTAPHID's worker, a USB/IP server) ran the
    #: request, so the test can fail on it. A failed write (OSError) is not a bug.
    internal_errors: ClassVar[list[BaseException] | None] = None

    def __init__(self, key: KeyContext) -> None:
        from hwtoken.emulator.applets.fido.ctap2.config import AuthenticatorConfig
        from hwtoken.emulator.applets.fido.ctap2.credential_management import CredentialManagement
        from hwtoken.emulator.applets.fido.ctap2.large_blobs import LargeBlobs

        self.key = key
        self.profile = key.profile
        self.state = FidoState(key)
        self.uv: BuiltInUv | None = None  # a fingerprint sensor's user verification
        self.bio: BioEnrollment | None = None
        if self.profile.bio is not None:
            store = BioStore(self.state, self.profile.bio)
            self.uv = BuiltInUv(store, lambda: self.key.presence, self.user_presence)
        self.pin = ClientPin(self.state, self.profile, self.uv)
        if self.uv is not None:
            self.bio = BioEnrollment(self.uv.store, self.pin, self.uv,
                                     lambda: self.key.presence, self.user_presence)
        self.counter = signature_counter(key)
        self.credential_management = CredentialManagement(self)
        self.config = AuthenticatorConfig(self)
        self.large_blobs = LargeBlobs(self)
        self._lock = threading.RLock()
        self._pending: _PendingAssertions | None = None
        #: the channel the request being processed came on (see :meth:`process`)
        self.channel: Any = None
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
            if self.bio is not None:
                self.bio.power_cycle()

    @property
    def u2f_enabled(self) -> bool:
        """False while alwaysUv is on: CTAP 2.1 then disables CTAP1/U2F."""
        return not self.state.always_uv

    def next_signature_counter(self) -> int:
        """The key's global signature counter, shared with U2F."""
        return self.counter.next()

    # -- entry point ------------------------------------------------------------------------
    def process(self, request: bytes, cancel: threading.Event | None = None,
                keepalive: Keepalive | None = None, channel: Any = None) -> bytes:
        """One CTAP2 request -> status byte (+ canonical CBOR). Never raises.

        ``channel`` names where the request came from (a CTAPHID channel, a card session):
        getNextAssertion and credential enumeration only continue on the channel that
        started them.
        """
        with self._lock:
            request = bytes(request)
            self.channel = channel
            try:
                result = self._dispatch(request, cancel or _NEVER, keepalive)
                if result is None:
                    return b"\x00"
                if not isinstance(result, bytes):  # (getAssertion's fast path encodes)
                    result = cbor.encode(result)
                if len(result) > MAX_RESPONSE:
                    raise Ctap2Error(ERR.REQUEST_TOO_LARGE)
                return b"\x00" + result
            except Ctap2Error as e:
                code = e.code
            except CborError:
                code = ERR.INVALID_CBOR
            except Exception as exc:  # a bug or a failed write must not take the key down
                code = ERR.OTHER
                if self.internal_errors is not None and not isinstance(exc, OSError):
                    self.internal_errors.append(exc)
            self._pending = None
            if request[:1] and request[0] in _MUTATING:
                self.key.store.rollback()
            return bytes([code])

    def _dispatch(self, request: bytes, cancel: threading.Event,
                  keepalive: Keepalive | None) -> dict[Any, Any] | bytes | None:
        if not request:
            raise Ctap2Error(ERR.INVALID_LENGTH)
        if len(request) > self.profile.max_msg_size:
            raise Ctap2Error(ERR.REQUEST_TOO_LARGE)
        cmd, body = request[0], request[1:]
        if cmd != Cmd.GET_NEXT_ASSERTION:
            self._pending = None
        if cmd not in (Cmd.CREDENTIAL_MGMT, Cmd.CREDENTIAL_MGMT_PRE):
            self.credential_management.drop()
        handler = self._handler_table.get(cmd)
        if handler is None:
            raise Ctap2Error(ERR.INVALID_COMMAND)
        params = Params(decode_cbor(body) if body else None)
        return handler(params, cancel, keepalive)

    def _handlers(self) -> dict[int, Callable[..., dict[Any, Any] | bytes | None]]:
        table: dict[int, Callable[..., dict[Any, Any] | bytes | None]] = {
            Cmd.MAKE_CREDENTIAL: self.make_credential,
            Cmd.GET_ASSERTION: self.get_assertion,
            Cmd.GET_INFO: lambda p, c, k: self.get_info(),
            Cmd.CLIENT_PIN: lambda p, c, k: self.pin.process(p, c, k),
            Cmd.RESET: self.reset,
            Cmd.GET_NEXT_ASSERTION: lambda p, c, k: self.get_next_assertion(),
            Cmd.CREDENTIAL_MGMT: lambda p, c, k: self.credential_management.process(p),
            Cmd.SELECTION: self.selection,
            Cmd.LARGE_BLOBS: lambda p, c, k: self.large_blobs.process(p),
            Cmd.CONFIG: lambda p, c, k: self.config.process(p),
        }
        if self.profile.credential_mgmt_preview:
            table[Cmd.CREDENTIAL_MGMT_PRE] = (
                lambda p, c, k: self.credential_management.process(p, preview=True))
        bio = self.bio
        if bio is not None:
            table[Cmd.BIO_ENROLLMENT] = bio.process
            table[Cmd.BIO_ENROLLMENT_PRE] = lambda p, c, k: bio.process(p, c, k, preview=True)
        return table

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
    @property
    def algorithms(self) -> list[int]:
        """The COSE algorithms this key offers, in its order of preference."""
        return [a for a in self.profile.algorithms if algorithms.available(a)]

    def get_info(self) -> dict[int, Any]:
        st, prof = self.state, self.profile
        major, minor, patch = self.key.version
        options = {
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
        }
        if prof.credential_mgmt_preview:
            options["credentialMgmtPreview"] = True
        if prof.enterprise_attestation:
            options["ep"] = st.ep_enabled
        if prof.persistent_token:
            options["perCredMgmtRO"] = True
        if self.uv is not None and prof.bio is not None:
            enrolled = self.uv.configured  # supported, and configured once a finger is
            options.update(uv=enrolled, bioEnroll=enrolled,
                           userVerificationMgmtPreview=enrolled)
            if prof.bio.uv_bio_enroll:
                options["uvBioEnroll"] = True
        info: dict[int, Any] = {
            # CTAP 2.1 §7.2.2: alwaysUv disables CTAP1/U2F, so U2F_V2 is not offered then
            0x01: [v for v in prof.versions if not (v == "U2F_V2" and st.always_uv)],
            0x02: list(prof.extensions),
            0x03: self.key.aaguid,
            0x04: options,
            0x05: prof.max_msg_size,
            0x06: [2, 1],
            0x07: prof.max_creds_in_list,
            0x08: prof.max_cred_id_length,
            0x09: prof.transports,
            0x0A: [{"alg": alg, "type": "public-key"} for alg in self.algorithms],
            0x0B: prof.max_large_blob,
            0x0C: st.force_pin_change,
            0x0D: st.min_pin_length,
            0x0E: (major << 16) | (minor << 8) | patch,
            0x0F: 32,
            0x10: prof.max_rpids_for_min_pin,
            0x14: max(0, prof.max_resident - len(st.residents)),
        }
        if prof.bio is not None:
            info[0x11] = prof.bio.preferred_platform_uv_attempts
            info[0x12] = UV_MODALITY_FINGERPRINT
        if prof.attestation_formats:
            info[0x16] = list(prof.attestation_formats)
        if prof.ctap22:
            info[0x1D] = MAX_PIN_LENGTH
        token = self.pin.persistent_token
        if token is not None:  # CTAP 2.2 §6.4: readable with the persistent token only
            info[0x19] = self.pin.encrypt_info(token, b"encIdentifier",
                                               st.device_identifier)
            info[0x1E] = self.pin.encrypt_info(token, b"encCredStoreState",
                                               st.cred_store_state)
        return info

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

        alg = self._choose_algorithm(cred_params)
        if opts.get("up") is False:
            raise Ctap2Error(ERR.INVALID_OPTION)
        builtin_uv = self._wants_builtin_uv(opts, pin_auth)
        rk = opts.get("rk", False)
        enterprise_att = self._enterprise_attestation(enterprise, rp_id)

        uv = touched = False  # touched: the user already touched for this request
        if proto is not None:
            self.pin.verify(proto, client_data_hash, pin_auth)
            self.pin.require(Permission.MAKE_CREDENTIAL, rp_id)
            uv = True
            touched = self.pin.take_user_presence()
        elif builtin_uv:
            self._verify_builtin("makeCredential", cancel, keepalive)
            uv = touched = True
        elif self.state.always_uv:
            # CTAP 2.1 §6.1.2 step 6: alwaysUv with no pinUvAuthParam is PUAT_REQUIRED,
            # PIN set or not (the platform then sets one)
            raise Ctap2Error(ERR.PUAT_REQUIRED)
        elif self.state.pin_set and rk:
            raise Ctap2Error(ERR.PUAT_REQUIRED)

        rp_id_hash = hashlib.sha256(rp_id.encode()).digest()
        for typ, cid in exclude:
            if typ != "public-key":
                continue
            found = self.open_credential(rp_id_hash, cid)
            if found is not None and (found.cred.protection < 3 or uv):
                # CTAP 2.1 §6.1.2 step 11: the key asks for a touch (unless built-in UV
                # already had one), then answers CREDENTIAL_EXCLUDED "regardless of whether
                # user presence is obtained" (a refused or timed-out touch too); only the
                # host's cancel ends it else
                if not touched:
                    try:
                        self.user_presence("makeCredential (excluded)", cancel, keepalive)
                    except Ctap2Error as exc:
                        if exc.code == ERR.KEEPALIVE_CANCEL:
                            raise
                raise Ctap2Error(ERR.CREDENTIAL_EXCLUDED)

        exts = extensions.registration(ext, rk, rp_id, self.state.min_pin_length,
                                       self.state.min_pin_rp_ids, self.profile.extensions)
        signing = None
        if preview_sign.NAME in ext and preview_sign.NAME in self.profile.extensions:
            signing = preview_sign.registration(ext[preview_sign.NAME])
        hmac_mc = None
        if ("hmac-secret-mc" in ext and "hmac-secret-mc" in self.profile.extensions
                and exts.hmac_secret):
            # CTAP 2.2: evaluate the new credential's PRF already at registration
            hmac_mc = extensions.hmac_secret_request(ext["hmac-secret-mc"],
                                                     self.pin.protocols)
        if not touched:
            self.user_presence("makeCredential", cancel, keepalive)

        cred = CredentialKey.generate(alg, cred_protect=exts.cred_protect, resident=rk,
                                      cred_blob=exts.cred_blob, hmac_secret=exts.hmac_secret,
                                      third_party_payment=exts.third_party_payment)
        cid = wrap(self.state.wrap_secret, rp_id_hash, cred)
        if hmac_mc is not None:
            exts.outputs["hmac-secret-mc"] = hmac_mc.output(cred, uv)
        sign_key = preview_sign.generate(signing, cred) if signing is not None else None
        if sign_key is not None:
            exts.outputs[preview_sign.NAME] = sign_key.signed_output
        counter = self.counter.next()

        flags = FLAG_UP | FLAG_AT | (FLAG_UV if uv else 0)
        ext_out = b""
        if exts.outputs:
            flags |= FLAG_ED
            ext_out = cbor.encode(exts.outputs)
        cred_data = (self.key.aaguid + struct.pack(">H", len(cid)) + cid
                     + cbor.encode(cred.cose_public_key()))
        auth_data = (rp_id_hash + bytes([flags]) + struct.pack(">I", counter) + cred_data
                     + ext_out)

        none = not enterprise_att and formats is not None and self._wants_none(formats)

        def attest(data: bytes) -> tuple[str, dict[str, Any]]:
            if none:
                return "none", {}
            sig = attestation.sign(self.key, data + client_data_hash, enterprise=enterprise_att)
            return "packed", {"alg": -7, "sig": sig, "x5c": [
                attestation.attestation_certificate(self.key, enterprise=enterprise_att)]}

        fmt, statement = attest(auth_data)
        response: dict[int, Any] = {0x01: fmt, 0x02: auth_data, 0x03: statement}
        if enterprise_att:
            response[0x04] = True  # epAtt
        if exts.large_blob_key:
            response[0x05] = cred.large_blob_key()
        if sign_key is not None:  # unsignedExtensionOutputs
            response[0x06] = {preview_sign.NAME: sign_key.unsigned_output(
                rp_id_hash, flags, self.key.aaguid, attest)}
        encoded = cbor.encode(response)
        if len(encoded) > MAX_RESPONSE:  # nothing is stored for a response that cannot go
            raise Ctap2Error(ERR.REQUEST_TOO_LARGE)

        if rk:
            record = ResidentRecord(
                credential_id=cid, rp_id=rp_id, rp=_entity(rp, ("id", "name")),
                user=_entity(user_p, ("id", "name", "displayName", "icon")),
                created=counter, large_blob_key=exts.large_blob_key,
            )
            if not self.state.put_resident(record, self.profile.max_resident):
                raise Ctap2Error(ERR.KEY_STORE_FULL)
            self.state.commit()
        if pin_auth is not None:
            self.pin.spend()
        return encoded

    def _wants_builtin_uv(self, opts: dict[str, bool], pin_auth: bytes | None,
                          up: bool = True) -> bool:
        """Whether to verify the user with the fingerprint sensor (CTAP 2.1 §6.1.2 steps
        5-6, §6.2.2 steps 5-6): "uv" without a pinUvAuthParam, or alwaysUv on a key whose
        sensor has a finger enrolled. "uv" on a key without (an enrolled) sensor is
        INVALID_OPTION; with a pinUvAuthParam "uv" is treated as false."""
        if pin_auth is not None:
            return False
        configured = self.uv is not None and self.uv.configured
        if opts.get("uv") is True:
            if not configured:
                raise Ctap2Error(ERR.INVALID_OPTION)
            return True
        return configured and up and self.state.always_uv

    def _verify_builtin(self, reason: str, cancel: threading.Event,
                        keepalive: Keepalive | None) -> None:
        assert self.uv is not None
        self.uv.verify(reason, cancel, keepalive)

    def _choose_algorithm(self, cred_params: list[Any]) -> int:
        """The first entry of pubKeyCredParams (the platform's preference) this key offers."""
        offered = self.algorithms
        alg = None
        for entry in cred_params:
            cp = Params(entry)
            typ, a = cp.req("type", str), cp.req("alg", int)
            if typ == "public-key" and a in offered and alg is None:
                alg = a
        if alg is None:
            raise Ctap2Error(ERR.UNSUPPORTED_ALGORITHM)
        return alg

    def _enterprise_attestation(self, value: int | None, rp_id: str) -> bool:
        """CTAP 2.1 §6.1.2 step 9: whether to give an enterprise attestation."""
        if value is None:
            return False
        if not self.profile.enterprise_attestation or not self.state.ep_enabled:
            raise Ctap2Error(ERR.INVALID_PARAMETER)
        if value not in (1, 2):
            raise Ctap2Error(ERR.INVALID_OPTION)
        if value == 1:  # vendor-facilitated: only for the RP IDs the "vendor" listed
            return rp_id in self.state.enterprise_rp_ids
        return True  # platform-managed: the platform checked its own list

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
        up = opts.get("up", True)
        builtin_uv = self._wants_builtin_uv(opts, pin_auth, up)  # see makeCredential

        uv = touched = False
        if proto is not None:
            self.pin.verify(proto, client_data_hash, pin_auth)
            self.pin.require(Permission.GET_ASSERTION, rp_id)
            uv = True
        elif builtin_uv:
            self._verify_builtin("getAssertion", cancel, keepalive)
            uv = touched = True
        elif self.state.always_uv and up:
            raise Ctap2Error(ERR.PUAT_REQUIRED)  # as in makeCredential, PIN set or not

        ext = {k: v for k, v in ext.items() if k in self.profile.extensions}
        hmac_req = None
        if "hmac-secret" in ext:
            hmac_req = extensions.hmac_secret_request(ext["hmac-secret"], self.pin.protocols)
        if "credBlob" in ext:
            check_type(ext["credBlob"], bool)
        if "largeBlobKey" in ext and check_type(ext["largeBlobKey"], bool) is not True:
            raise Ctap2Error(ERR.INVALID_OPTION)
        if "thirdPartyPayment" in ext:
            check_type(ext["thirdPartyPayment"], bool)
        sign_request = None
        if preview_sign.NAME in ext:
            sign_request = preview_sign.sign_request(ext[preview_sign.NAME], bool(allow))

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
        sign_output = None
        if sign_request is not None:  # (an allow list: one credential)
            sign_output = preview_sign.sign(sign_request, found[0].cred, up, uv)

        if up:
            if not touched and not (pin_auth is not None and self.pin.take_user_presence()):
                self.user_presence("getAssertion", cancel, keepalive)
            if pin_auth is not None:
                # a touch consumed the token's mc/ga rights; silent pre-flights do not
                self.pin.spend()

        pending = _PendingAssertions(rp_id_hash, client_data_hash, up, uv, ext, hmac_req,
                                     found[1:], time.monotonic(), self.channel, sign_output)
        # CTAP 2.1 §6.2.2 (member user): "for single account per RP case, authenticator
        # returns 'id' field" -- names only to choose among several accounts (Chromium
        # shows its account chooser when it gets one)
        response = self._assertion(pending, found[0], discoverable=not allow and len(found) > 1)
        if not allow and len(found) > 1:
            response[0x05] = len(found)
            self._pending = pending
        if len(response) == 3:
            return _encode_plain_assertion(response)
        return response

    def get_next_assertion(self) -> dict[int, Any]:
        pending = self._pending
        if pending is None or not pending.remaining or pending.channel != self.channel:
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
        if pending.hmac is not None and cred.hmac_secret:  # only if made with hmac-secret
            ext_out["hmac-secret"] = pending.hmac.output(cred, pending.uv)
        if pending.ext.get("credBlob") is True:
            ext_out["credBlob"] = cred.cred_blob
        if pending.ext.get("thirdPartyPayment") is True:
            ext_out["thirdPartyPayment"] = cred.third_party_payment
        if pending.sign_output is not None:
            ext_out[preview_sign.NAME] = pending.sign_output
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
        if self.bio is not None:
            self.bio.power_cycle()
        return None

    def selection(self, p: Params, cancel: threading.Event,
                  keepalive: Keepalive | None) -> None:
        self.user_presence("selection", cancel, keepalive)
        return None
