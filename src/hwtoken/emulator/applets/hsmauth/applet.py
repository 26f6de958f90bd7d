"""The YubiHSM Auth applet (firmware 5.4.3+): long-lived YubiHSM 2 credentials on the key.

Pure logic over the key's ``hsmauth`` section (:mod:`.records`), committed before every
answer that changed it -- a credential, a key, or a retry counter. Speaks the protocol of
yubikit's ``HsmAuthSession``, ``ykman hsmauth`` and Yubico's libykhsmauth:

* SELECT answers the version (``79``); PUT (``01``), DELETE (``02``) and PUT MANAGEMENT KEY
  (``08``) need the 16-byte management key (``7B``), 8 tries, reset by the right key;
  a wrong one answers ``63Cx``, a blocked one ``63C0`` until RESET (``06``, P1P2 ``DEAD``).
* Credentials (up to 32, labels of 1-64 bytes) are AES-128 (K-ENC, K-MAC) or, from 5.6,
  EC P-256 (imported, or generated when the private key is empty); each is guarded by a
  16-byte credential password with 8 tries (the credential is deleted when they run out) and
  optionally by a touch (``6982`` when refused).
* CALCULATE (``03``) gives S-ENC || S-MAC || S-RMAC (:mod:`.session_keys`); GET CHALLENGE
  (``04``, 5.6+) gives 8 random bytes or, for an EC credential, a new ephemeral public key
  (from 5.7.1 after its credential password); LIST (``05``), GET VERSION (``07``),
  GET MANAGEMENT KEY RETRIES (``09``), GET PUBLIC KEY (``0A``, 5.6+) and, from 5.8, CHANGE
  CREDENTIAL PASSWORD (``0B``; P1 1 with the management key instead of the old password).

Status words as the YubiKey answers them: ``6983`` a label that exists, ``6A84`` no room,
``6A82`` no such credential, ``6A80`` malformed data.
"""

from __future__ import annotations

import hmac
import os
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec

from hwtoken.emulator.applets.hsmauth import session_keys
from hwtoken.emulator.applets.hsmauth.records import (
    AES_KEY_LEN,
    EC_PRIVATE_LEN,
    INITIAL_RETRIES,
    MANAGEMENT_KEY_LEN,
    MAX_CREDENTIALS,
    MAX_LABEL_LEN,
    MIN_LABEL_LEN,
    PASSWORD_LEN,
    Algorithm,
    Credential,
    HsmAuthState,
)
from hwtoken.emulator.applets.management import parse_tlvs, tlv
from hwtoken.emulator.iso7816 import SW, Apdu, ApduError

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.context import KeyContext

AID_HSMAUTH = bytes.fromhex("a000000527210701")
CAP_HSMAUTH = 0x100

TAG_LABEL = 0x71
TAG_LABEL_LIST = 0x72
TAG_CREDENTIAL_PASSWORD = 0x73
TAG_ALGORITHM = 0x74
TAG_KEY_ENC = 0x75
TAG_KEY_MAC = 0x76
TAG_CONTEXT = 0x77
TAG_RESPONSE = 0x78
TAG_VERSION = 0x79
TAG_TOUCH = 0x7A
TAG_MANAGEMENT_KEY = 0x7B
TAG_PUBLIC_KEY = 0x7C
TAG_PRIVATE_KEY = 0x7D

INS_PUT = 0x01
INS_DELETE = 0x02
INS_CALCULATE = 0x03
INS_GET_CHALLENGE = 0x04
INS_LIST = 0x05
INS_RESET = 0x06
INS_GET_VERSION = 0x07
INS_PUT_MANAGEMENT_KEY = 0x08
INS_GET_MANAGEMENT_KEY_RETRIES = 0x09
INS_GET_PUBLIC_KEY = 0x0A
INS_CHANGE_CREDENTIAL_PASSWORD = 0x0B

SYMMETRIC_CHALLENGE_LEN = 8
ASYMMETRIC_SINCE = (5, 6, 0)
CHALLENGE_PASSWORD_SINCE = (5, 7, 1)
CHANGE_PASSWORD_SINCE = (5, 8, 0)


def _fields(data: bytes) -> dict[int, list[bytes]]:
    """The command's TLVs by tag (a tag may repeat: old and new management key)."""
    out: dict[int, list[bytes]] = {}
    for tag, value in parse_tlvs(data):
        out.setdefault(tag, []).append(value)
    return out


def _one(fields: dict[int, list[bytes]], tag: int, size: int | None = None) -> bytes:
    """The single value of ``tag`` (of ``size`` bytes if given); ``6A80`` otherwise."""
    values = fields.get(tag, [])
    if len(values) != 1 or (size is not None and len(values[0]) != size):
        raise ApduError(SW.INCORRECT_PARAMETERS)
    return values[0]


def _label(fields: dict[int, list[bytes]]) -> bytes:
    label = _one(fields, TAG_LABEL)
    if not MIN_LABEL_LEN <= len(label) <= MAX_LABEL_LEN:
        raise ApduError(SW.INCORRECT_PARAMETERS)
    return label


def _wrong(retries: int) -> ApduError:
    return ApduError(SW.VERIFY_FAIL_NO_RETRY | retries)


class HsmAuthApplet:
    """YubiHSM Auth on a :class:`~hwtoken.emulator.context.KeyContext`."""

    aid = AID_HSMAUTH
    capability = CAP_HSMAUTH

    def __init__(self, key: KeyContext) -> None:
        self.key = key
        #: ephemeral keys GET CHALLENGE handed out, by credential label (volatile)
        self._ephemeral: dict[bytes, ec.EllipticCurvePrivateKey] = {}

    # -- state ------------------------------------------------------------------------------
    def load(self) -> HsmAuthState:
        return HsmAuthState.from_store(self.key.store.section("hsmauth"))

    def save(self, state: HsmAuthState) -> None:
        """Write ``state`` to the section and make it durable (before the answer)."""
        section = self.key.store.section("hsmauth")
        section.clear()
        section.update(state.to_store())
        self.key.store.commit()

    def _since(self, version: tuple[int, int, int]) -> bool:
        return tuple(self.key.version) >= version

    # -- lifecycle --------------------------------------------------------------------------
    def power_cycle(self) -> None:
        self._ephemeral.clear()

    card_reset = power_cycle
    deselect = power_cycle

    # -- ISO 7816 ---------------------------------------------------------------------------
    def select(self, apdu: Apdu) -> bytes:
        self._ephemeral.clear()
        return tlv(TAG_VERSION, bytes(self.key.version))

    def process(self, apdu: Apdu) -> bytes:
        handlers = {
            INS_PUT: self._put, INS_DELETE: self._delete, INS_CALCULATE: self._calculate,
            INS_LIST: self._list, INS_RESET: self._reset, INS_GET_VERSION: self._version,
            INS_PUT_MANAGEMENT_KEY: self._put_management_key,
            INS_GET_MANAGEMENT_KEY_RETRIES: self._management_retries,
        }
        if self._since(ASYMMETRIC_SINCE):
            handlers[INS_GET_CHALLENGE] = self._get_challenge
            handlers[INS_GET_PUBLIC_KEY] = self._get_public_key
        if self._since(CHANGE_PASSWORD_SINCE):
            handlers[INS_CHANGE_CREDENTIAL_PASSWORD] = self._change_password
        handler = handlers.get(apdu.ins)
        if handler is None:
            raise ApduError(SW.INVALID_INSTRUCTION)
        return handler(apdu)

    # -- authentication ---------------------------------------------------------------------
    def _check_management_key(self, state: HsmAuthState, given: bytes) -> None:
        """Verify ``given``; a wrong or blocked key answers ``63Cx`` (saved first)."""
        if state.management_retries <= 0:
            raise _wrong(0)
        if not hmac.compare_digest(given, state.management_key):
            state.management_retries -= 1
            self.save(state)
            raise _wrong(state.management_retries)
        if state.management_retries != INITIAL_RETRIES:
            state.management_retries = INITIAL_RETRIES
            self.save(state)

    def _check_password(self, state: HsmAuthState, cred: Credential, given: bytes) -> None:
        """Verify a credential password; the last wrong one deletes the credential."""
        if len(given) != PASSWORD_LEN:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        if not hmac.compare_digest(given, cred.password):
            cred.retries -= 1
            if cred.retries <= 0:
                state.credentials.remove(cred)
                self._ephemeral.pop(cred.label, None)
            self.save(state)
            raise _wrong(max(cred.retries, 0))
        if cred.retries != INITIAL_RETRIES:
            cred.retries = INITIAL_RETRIES
            self.save(state)

    def _credential(self, state: HsmAuthState, label: bytes) -> Credential:
        cred = state.find(label)
        if cred is None:
            raise ApduError(SW.FILE_NOT_FOUND)
        return cred

    # -- commands -------------------------------------------------------------------------
    def _put(self, apdu: Apdu) -> bytes:
        fields = _fields(apdu.data)
        management_key = _one(fields, TAG_MANAGEMENT_KEY, MANAGEMENT_KEY_LEN)
        cred = self._parse_credential(fields)
        state = self.load()
        self._check_management_key(state, management_key)
        if state.find(cred.label) is not None:
            raise ApduError(SW.AUTH_METHOD_BLOCKED)  # YubiKey: "label exists"
        if len(state.credentials) >= MAX_CREDENTIALS:
            raise ApduError(SW.NO_SPACE)
        if not cred.symmetric and not cred.private:  # an empty key: generate one
            scalar = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value
            cred.private = scalar.to_bytes(EC_PRIVATE_LEN, "big")
        state.credentials.append(cred)
        self.save(state)
        return b""

    def _parse_credential(self, fields: dict[int, list[bytes]]) -> Credential:
        label = _label(fields)
        try:
            algorithm = Algorithm(int.from_bytes(_one(fields, TAG_ALGORITHM, 1), "big"))
        except ValueError:
            raise ApduError(SW.INCORRECT_PARAMETERS) from None
        password = _one(fields, TAG_CREDENTIAL_PASSWORD, PASSWORD_LEN)
        touch = fields.get(TAG_TOUCH, [b"\0"])
        if len(touch) != 1 or touch[0] not in (b"\0", b"\1"):
            raise ApduError(SW.INCORRECT_PARAMETERS)
        cred = Credential(label, algorithm, password, touch[0] == b"\1")
        if algorithm == Algorithm.AES128_YUBICO_AUTHENTICATION:
            cred.key_enc = _one(fields, TAG_KEY_ENC, AES_KEY_LEN)
            cred.key_mac = _one(fields, TAG_KEY_MAC, AES_KEY_LEN)
        else:
            if not self._since(ASYMMETRIC_SINCE):
                raise ApduError(SW.INCORRECT_PARAMETERS)
            private = _one(fields, TAG_PRIVATE_KEY)
            if private:
                if len(private) != EC_PRIVATE_LEN:
                    raise ApduError(SW.INCORRECT_PARAMETERS)
                session_keys.private_key(private)  # a scalar in range
            cred.private = private
        return cred

    def _delete(self, apdu: Apdu) -> bytes:
        fields = _fields(apdu.data)
        management_key = _one(fields, TAG_MANAGEMENT_KEY, MANAGEMENT_KEY_LEN)
        label = _label(fields)
        state = self.load()
        self._check_management_key(state, management_key)
        state.credentials.remove(self._credential(state, label))
        self._ephemeral.pop(label, None)
        self.save(state)
        return b""

    def _calculate(self, apdu: Apdu) -> bytes:
        fields = _fields(apdu.data)
        label = _label(fields)
        context = _one(fields, TAG_CONTEXT)
        password = _one(fields, TAG_CREDENTIAL_PASSWORD)
        state = self.load()
        cred = self._credential(state, label)
        if cred.symmetric:
            responses = fields.get(TAG_RESPONSE, [])
            if len(responses) > 1:
                raise ApduError(SW.INCORRECT_PARAMETERS)
            card_cryptogram = responses[0] if responses else None
        else:
            public, receipt = _one(fields, TAG_PUBLIC_KEY), _one(fields, TAG_RESPONSE)
        self._check_password(state, cred, password)
        if cred.touch and not self.key.presence.wait("hsmauth"):
            raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
        if cred.symmetric:
            return session_keys.symmetric(cred.key_enc, cred.key_mac, context, card_cryptogram)
        ephemeral = self._ephemeral.pop(label, None)
        if ephemeral is None:  # no GET CHALLENGE before
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
        return session_keys.asymmetric(cred.private, ephemeral, context, public, receipt)

    def _get_challenge(self, apdu: Apdu) -> bytes:
        fields = _fields(apdu.data)
        label = _label(fields)
        state = self.load()
        cred = self._credential(state, label)
        if cred.symmetric:
            return os.urandom(SYMMETRIC_CHALLENGE_LEN)
        if self._since(CHALLENGE_PASSWORD_SINCE):
            self._check_password(state, cred, _one(fields, TAG_CREDENTIAL_PASSWORD))
        ephemeral = ec.generate_private_key(ec.SECP256R1())
        self._ephemeral[label] = ephemeral
        return session_keys.public_point(ephemeral)

    def _get_public_key(self, apdu: Apdu) -> bytes:
        state = self.load()
        cred = self._credential(state, _label(_fields(apdu.data)))
        if cred.symmetric:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        return session_keys.public_point(session_keys.private_key(cred.private))

    def _list(self, apdu: Apdu) -> bytes:
        return b"".join(
            tlv(TAG_LABEL_LIST, bytes([c.algorithm, c.touch]) + c.label + bytes([c.retries]))
            for c in self.load().credentials)

    def _reset(self, apdu: Apdu) -> bytes:
        if (apdu.p1, apdu.p2) != (0xDE, 0xAD):
            raise ApduError(SW.WRONG_PARAMETERS_P1P2)
        self._ephemeral.clear()
        self.save(HsmAuthState())
        return b""

    def _version(self, apdu: Apdu) -> bytes:
        return bytes(self.key.version)

    def _put_management_key(self, apdu: Apdu) -> bytes:
        keys = _fields(apdu.data).get(TAG_MANAGEMENT_KEY, [])
        if len(keys) != 2 or any(len(k) != MANAGEMENT_KEY_LEN for k in keys):
            raise ApduError(SW.INCORRECT_PARAMETERS)
        state = self.load()
        self._check_management_key(state, keys[0])
        state.management_key = keys[1]
        self.save(state)
        return b""

    def _management_retries(self, apdu: Apdu) -> bytes:
        return bytes([self.load().management_retries])

    def _change_password(self, apdu: Apdu) -> bytes:
        fields = _fields(apdu.data)
        label = _label(fields)
        passwords = fields.get(TAG_CREDENTIAL_PASSWORD, [])
        if apdu.p1 not in (0, 1) or apdu.p2 != 0:
            raise ApduError(SW.WRONG_PARAMETERS_P1P2)
        with_admin = apdu.p1 == 1
        if len(passwords) != (1 if with_admin else 2) or any(
                len(p) != PASSWORD_LEN for p in passwords):
            raise ApduError(SW.INCORRECT_PARAMETERS)
        management_key = (_one(fields, TAG_MANAGEMENT_KEY, MANAGEMENT_KEY_LEN)
                          if with_admin else b"")
        state = self.load()
        cred = self._credential(state, label)
        if with_admin:
            self._check_management_key(state, management_key)
        else:
            self._check_password(state, cred, passwords[0])
        cred.password = passwords[-1]
        self.save(state)
        return b""

