"""authenticatorClientPIN (0x06): PIN management and pinUvAuthTokens (CTAP 2.1 §6.5).

The PIN itself is never stored: the state keeps an HMAC of LEFT(SHA-256(PIN), 16) with
the retry counter (8, persisted before each comparison). Three wrong PINs in a row block
PIN auth until a power cycle (PIN_AUTH_BLOCKED); at zero retries the PIN is blocked for
good (PIN_BLOCKED) until a reset.

On a key with a fingerprint sensor (:mod:`.bio_enrollment`), getUVRetries answers and
getPinUvAuthTokenUsingUvWithPermissions issues a token for a matching finger: the token
carries user presence too (the finger touched), spent by the next makeCredential or
getAssertion instead of another touch. The right PIN restores the UV retries.

CTAP 2.2's persistent PIN/UV auth token (profiles that offer it): asking for a token with
exactly the ``pcmr`` permission returns the key's *persistent* token, which survives power
cycles and serves read-only credential management (and decrypts getInfo's encIdentifier and
encCredStoreState). It is kept in the state file and voided when the PIN is set or
changed and by a reset; ordinary tokens come and go without touching it.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hwtoken.emulator.applets.fido.ctap2.errors import ERR, Ctap2Error
from hwtoken.emulator.applets.fido.ctap2.params import Params
from hwtoken.emulator.applets.fido.ctap2.pin_protocols import PROTOCOLS, PinProtocolV1
from hwtoken.emulator.applets.fido.ctap2.state import FidoState

if TYPE_CHECKING:  # pragma: no cover
    import threading

    from hwtoken.emulator.applets.fido.ctap2.bio_enrollment import BuiltInUv

MAX_CONSECUTIVE_FAILS = 3
MAX_PIN_BYTES = 63
TOKEN_LIFETIME = 600.0  # seconds (the spec's maximum usage time period)


class Sub(IntEnum):
    GET_PIN_RETRIES = 0x01
    GET_KEY_AGREEMENT = 0x02
    SET_PIN = 0x03
    CHANGE_PIN = 0x04
    GET_PIN_TOKEN = 0x05
    GET_TOKEN_USING_UV = 0x06
    GET_UV_RETRIES = 0x07
    GET_TOKEN_USING_PIN = 0x09


class Permission(IntFlag):
    MAKE_CREDENTIAL = 0x01
    GET_ASSERTION = 0x02
    CREDENTIAL_MGMT = 0x04
    BIO_ENROLL = 0x08
    LARGE_BLOB_WRITE = 0x10
    AUTHENTICATOR_CFG = 0x20
    PERSISTENT_CREDENTIAL_MGMT = 0x40


SUPPORTED_PERMISSIONS = (Permission.MAKE_CREDENTIAL | Permission.GET_ASSERTION
                         | Permission.CREDENTIAL_MGMT | Permission.LARGE_BLOB_WRITE
                         | Permission.AUTHENTICATOR_CFG)
PERSISTENT_TOKEN_LEN = 32


@dataclass
class Token:
    """The current pinUvAuthToken and what it may be used for."""

    value: bytes
    protocol: int = 0
    permissions: int = 0
    rp_id: str | None = None
    issued: float = 0.0
    active: bool = False
    user_present: bool = False  #: obtained with a touch (built-in UV), not yet spent


class ClientPin:
    """PIN state machine plus token verification for the other commands."""

    def __init__(self, state: FidoState, profile: Any = None,
                 uv: BuiltInUv | None = None) -> None:
        self.state = state
        self.uv = uv
        self.persistent_supported = bool(getattr(profile, "persistent_token", False))
        # (plain ints: ~ of an IntFlag keeps only the defined bits, so an undefined bit
        # like 0x80 would pass the check below as a supported permission)
        self.supported_permissions = int(SUPPORTED_PERMISSIONS | (
            Permission.PERSISTENT_CREDENTIAL_MGMT if self.persistent_supported else 0) | (
            Permission.BIO_ENROLL if uv is not None else 0))
        sensor = getattr(profile, "bio", None)
        #: what a token made by built-in UV may carry (CTAP 2.1: be only with uvBioEnroll,
        #: acfg only with uvAcfg, which no profile has)
        not_by_uv = Permission.AUTHENTICATOR_CFG | Permission.PERSISTENT_CREDENTIAL_MGMT | (
            0 if sensor is not None and sensor.uv_bio_enroll else Permission.BIO_ENROLL)
        self.uv_permissions = self.supported_permissions & ~int(not_by_uv)
        self.protocols: dict[int, PinProtocolV1] = {p.VERSION: p() for p in PROTOCOLS}
        self.consecutive_fails = 0
        self.token = Token(secrets.token_bytes(32))

    # -- volatile state ----------------------------------------------------------------------
    def power_cycle(self) -> None:
        self.consecutive_fails = 0
        for proto in self.protocols.values():
            proto.regenerate()
        self.reset_token()

    def reset_token(self) -> None:
        """Invalidate the current token (a new random value, no permissions)."""
        self.token = Token(secrets.token_bytes(32))

    def protocol(self, version: Any) -> PinProtocolV1:
        """The protocol object for ``version`` (INVALID_PARAMETER if unsupported)."""
        if type(version) is not int:
            raise Ctap2Error(ERR.CBOR_UNEXPECTED_TYPE)
        proto = self.protocols.get(version)
        if proto is None:
            raise Ctap2Error(ERR.INVALID_PARAMETER)
        return proto

    def protocol_param(self, p: Params, key: int) -> PinProtocolV1:
        """The protocol named by ``p[key]``, which must be present alongside a pinUvAuthParam
        (MISSING_PARAMETER when absent)."""
        if key not in p:
            raise Ctap2Error(ERR.MISSING_PARAMETER)
        return self.protocol(p.raw(key))

    @property
    def auth_blocked(self) -> bool:
        return self.consecutive_fails >= MAX_CONSECUTIVE_FAILS

    # -- token checks used by the other commands ------------------------------------------
    def verify(self, protocol: PinProtocolV1, message: bytes, param: Any) -> None:
        """PIN_AUTH_INVALID unless ``param`` authenticates ``message`` with the live token."""
        tok = self.token
        if (not tok.active or tok.protocol != protocol.VERSION
                or time.monotonic() - tok.issued > TOKEN_LIFETIME):
            if tok.active and time.monotonic() - tok.issued > TOKEN_LIFETIME:
                self.reset_token()
            raise Ctap2Error(ERR.PIN_AUTH_INVALID)
        if not protocol.verify(tok.value, message, param):
            raise Ctap2Error(ERR.PIN_AUTH_INVALID)

    def require(self, permission: int, rp_id: str | None = None) -> None:
        """PIN_AUTH_INVALID unless the token has ``permission`` (and fits ``rp_id``)."""
        tok = self.token
        if not tok.permissions & permission:
            raise Ctap2Error(ERR.PIN_AUTH_INVALID)
        if rp_id is not None:
            if tok.rp_id is None:
                tok.rp_id = rp_id
            elif tok.rp_id != rp_id:
                raise Ctap2Error(ERR.PIN_AUTH_INVALID)

    def require_no_rp(self) -> None:
        """For commands over all RPs: a token bound to one RP is not enough."""
        if self.token.rp_id is not None:
            raise Ctap2Error(ERR.PIN_AUTH_INVALID)

    # -- the persistent token (CTAP 2.2) ----------------------------------------------------
    @property
    def persistent_token(self) -> bytes | None:
        """The persistent PIN/UV auth token, if one has been issued since the PIN was set."""
        if not self.persistent_supported:
            return None
        return self.state.persistent_token

    def verify_persistent(self, protocol: PinProtocolV1, message: bytes, param: Any) -> bool:
        """True if ``param`` authenticates ``message`` with the persistent token."""
        token = self.persistent_token
        return token is not None and protocol.verify(token, message, param)

    @staticmethod
    def encrypt_info(token: bytes, label: bytes, plaintext: bytes) -> bytes:
        """iv || AES-128-CBC(HKDF-SHA-256(token, salt 0^32, ``label``), iv, plaintext):
        how getInfo's encIdentifier / encCredStoreState are sealed (CTAP 2.2 §6.4)."""
        key = HKDF(hashes.SHA256(), 16, bytes(32), label).derive(token)
        iv = secrets.token_bytes(16)
        enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        return iv + enc.update(plaintext) + enc.finalize()

    def spend(self) -> None:
        """After a makeCredential/getAssertion: keep only the large-blob-write permission."""
        self.token.permissions &= Permission.LARGE_BLOB_WRITE

    def take_user_presence(self) -> bool:
        """True (once) if the current token was obtained with a touch that no command has
        used yet: the caller need not ask for another (CTAP 2.1 getUserPresentFlagValue)."""
        present, self.token.user_present = self.token.user_present, False
        return present

    # -- the command ---------------------------------------------------------------------------
    def process(self, params: Params, cancel: threading.Event | None = None,
                keepalive: Any = None) -> dict[int, Any] | None:
        sub = params.req(0x02, int)
        version = params.raw(0x01)
        if sub in (Sub.GET_PIN_RETRIES, Sub.GET_UV_RETRIES) and version is None:
            proto = None
        else:
            if version is None:
                raise Ctap2Error(ERR.MISSING_PARAMETER)
            proto = self.protocol(version)
        if sub == Sub.GET_PIN_RETRIES:
            if not self.state.pin_set:  # as YubiKeys answer (python-fido2's device tests)
                raise Ctap2Error(ERR.PIN_NOT_SET)
            return {0x03: self.state.pin_retries, 0x04: self.auth_blocked}
        if sub == Sub.GET_KEY_AGREEMENT:
            assert proto is not None
            return {0x01: proto.key_agreement()}
        assert proto is not None or sub in (Sub.GET_UV_RETRIES,)
        if sub == Sub.SET_PIN:
            return self._set_pin(params, proto)
        if sub == Sub.CHANGE_PIN:
            return self._change_pin(params, proto)
        if sub == Sub.GET_PIN_TOKEN:
            return self._get_token(params, proto, legacy=True)
        if sub == Sub.GET_TOKEN_USING_PIN:
            return self._get_token(params, proto, legacy=False)
        if self.uv is None:  # no built-in user verification on this key
            raise Ctap2Error(ERR.INVALID_SUBCOMMAND)
        if sub == Sub.GET_UV_RETRIES:
            return {0x05: self.uv.retries}
        if sub == Sub.GET_TOKEN_USING_UV:
            assert cancel is not None
            return self._get_token_using_uv(params, proto, cancel, keepalive)
        raise Ctap2Error(ERR.INVALID_SUBCOMMAND)

    def _new_pin(self, proto: PinProtocolV1, shared: bytes,
                 new_pin_enc: bytes) -> tuple[bytes, int]:
        """Decrypt and check a new PIN -> (LEFT(SHA-256(pin), 16), length in code points)."""
        if len(new_pin_enc) != (64 if proto.VERSION == 1 else 80):
            raise Ctap2Error(ERR.INVALID_PARAMETER)
        padded = proto.decrypt(shared, new_pin_enc)
        pin = padded.rstrip(b"\0")
        if b"\0" in pin or len(pin) > MAX_PIN_BYTES:
            raise Ctap2Error(ERR.PIN_POLICY_VIOLATION)
        try:
            length = len(pin.decode("utf-8"))
        except UnicodeDecodeError:
            raise Ctap2Error(ERR.PIN_POLICY_VIOLATION) from None
        if length < self.state.min_pin_length:
            raise Ctap2Error(ERR.PIN_POLICY_VIOLATION)
        return hashlib.sha256(pin).digest()[:16], length

    def _set_pin(self, params: Params, proto: Any) -> None:
        key_agreement = params.req(0x03, dict)
        pin_auth = params.req(0x04, bytes)
        new_pin_enc = params.req(0x05, bytes)
        if self.state.pin_set:
            raise Ctap2Error(ERR.NOT_ALLOWED)
        shared = proto.shared_secret(key_agreement)
        if not proto.verify(shared, new_pin_enc, pin_auth):
            raise Ctap2Error(ERR.PIN_AUTH_INVALID)
        pin_hash, length = self._new_pin(proto, shared, new_pin_enc)
        self.state.set_pin(pin_hash, length)
        self.state.persistent_token = None
        self.state.commit()
        return None

    def _check_pin(self, proto: PinProtocolV1, shared: bytes, pin_hash_enc: bytes) -> None:
        """Compare the encrypted PIN hash, counting retries per the spec."""
        if len(pin_hash_enc) != (16 if proto.VERSION == 1 else 32):
            raise Ctap2Error(ERR.INVALID_PARAMETER)
        self.state.pin_retries = self.state.pin_retries - 1
        self.state.commit()
        pin_hash = proto.decrypt(shared, pin_hash_enc)
        if not self.state.pin_matches(pin_hash):
            proto.regenerate()
            self.consecutive_fails += 1
            if self.state.pin_retries <= 0:
                raise Ctap2Error(ERR.PIN_BLOCKED)
            if self.auth_blocked:
                raise Ctap2Error(ERR.PIN_AUTH_BLOCKED)
            raise Ctap2Error(ERR.PIN_INVALID)
        self.consecutive_fails = 0
        self.state.pin_retries = 8
        self.state.commit()
        if self.uv is not None:  # the PIN is the fallback: it restores the UV retries
            self.uv.reset_retries()

    def _precheck(self) -> None:
        if not self.state.pin_set:
            raise Ctap2Error(ERR.PIN_NOT_SET)
        if self.state.pin_retries <= 0:
            raise Ctap2Error(ERR.PIN_BLOCKED)
        if self.auth_blocked:
            raise Ctap2Error(ERR.PIN_AUTH_BLOCKED)

    def _change_pin(self, params: Params, proto: Any) -> None:
        key_agreement = params.req(0x03, dict)
        pin_auth = params.req(0x04, bytes)
        new_pin_enc = params.req(0x05, bytes)
        pin_hash_enc = params.req(0x06, bytes)
        self._precheck()
        shared = proto.shared_secret(key_agreement)
        if not proto.verify(shared, new_pin_enc + pin_hash_enc, pin_auth):
            raise Ctap2Error(ERR.PIN_AUTH_INVALID)
        self._check_pin(proto, shared, pin_hash_enc)
        pin_hash, length = self._new_pin(proto, shared, new_pin_enc)
        if self.state.force_pin_change and self.state.pin_matches(pin_hash):
            raise Ctap2Error(ERR.PIN_POLICY_VIOLATION)
        self.state.set_pin(pin_hash, length)
        self.state.persistent_token = None  # CTAP 2.2: a new PIN voids the persistent token
        self.state.commit()
        self.reset_token()
        return None

    def _get_token_using_uv(self, params: Params, proto: Any, cancel: threading.Event,
                            keepalive: Any) -> dict[int, Any]:
        """getPinUvAuthTokenUsingUvWithPermissions (CTAP 2.1 §6.5.5.7.3)."""
        assert self.uv is not None
        key_agreement = params.req(0x03, dict)
        permissions = params.req(0x09, int)
        rp_id = params.opt(0x0A, str)
        if permissions <= 0:
            raise Ctap2Error(ERR.INVALID_PARAMETER)
        if permissions & ~self.uv_permissions:
            raise Ctap2Error(ERR.UNAUTHORIZED_PERMISSION)
        if permissions & (Permission.MAKE_CREDENTIAL | Permission.GET_ASSERTION) \
                and rp_id is None:
            raise Ctap2Error(ERR.MISSING_PARAMETER)
        if not self.uv.configured:  # no finger enrolled
            raise Ctap2Error(ERR.NOT_ALLOWED)
        if self.uv.retries <= 0:
            raise Ctap2Error(ERR.UV_BLOCKED)
        shared = proto.shared_secret(key_agreement)
        self.uv.verify("getPinUvAuthTokenUsingUv", cancel, keepalive)
        self.token = Token(secrets.token_bytes(32), proto.VERSION, permissions, rp_id,
                           time.monotonic(), True, user_present=True)
        return {0x02: proto.encrypt(shared, self.token.value)}

    def _get_token(self, params: Params, proto: Any, legacy: bool) -> dict[int, Any]:
        key_agreement = params.req(0x03, dict)
        pin_hash_enc = params.req(0x06, bytes)
        if legacy:
            if 0x09 in params or 0x0A in params:
                raise Ctap2Error(ERR.INVALID_PARAMETER)
            permissions = int(Permission.MAKE_CREDENTIAL | Permission.GET_ASSERTION)
            rp_id = None
        else:
            permissions = params.req(0x09, int)
            rp_id = params.opt(0x0A, str)
            # CTAP 2.1 §6.5.5.7.2: a token for nothing (0) is INVALID_PARAMETER
            if permissions <= 0:
                raise Ctap2Error(ERR.INVALID_PARAMETER)
            if permissions & ~self.supported_permissions:
                raise Ctap2Error(ERR.UNAUTHORIZED_PERMISSION)
            # the persistent token carries pcmr and nothing else
            if permissions & Permission.PERSISTENT_CREDENTIAL_MGMT \
                    and permissions != Permission.PERSISTENT_CREDENTIAL_MGMT:
                raise Ctap2Error(ERR.UNAUTHORIZED_PERMISSION)
            if permissions & (Permission.MAKE_CREDENTIAL | Permission.GET_ASSERTION) \
                    and rp_id is None:
                raise Ctap2Error(ERR.MISSING_PARAMETER)
        self._precheck()
        shared = proto.shared_secret(key_agreement)
        self._check_pin(proto, shared, pin_hash_enc)
        if self.state.force_pin_change:  # the PIN must be changed before any use
            raise Ctap2Error(ERR.PIN_INVALID)
        if permissions == Permission.PERSISTENT_CREDENTIAL_MGMT:
            token = self.state.persistent_token
            if token is None:
                token = secrets.token_bytes(PERSISTENT_TOKEN_LEN)
                self.state.persistent_token = token
                self.state.commit()
            return {0x02: proto.encrypt(shared, token)}
        self.token = Token(secrets.token_bytes(32), proto.VERSION, permissions, rp_id,
                           time.monotonic(), True)
        return {0x02: proto.encrypt(shared, self.token.value)}
