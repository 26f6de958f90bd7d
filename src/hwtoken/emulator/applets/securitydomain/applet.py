"""The Security Domain (GlobalPlatform, as a YubiKey 5.7.2+ has it): SCP03 and SCP11 keys,
and the secure channels every applet is reached through.

Pure logic over the key's ``securitydomain`` section (:mod:`.records`), created as it
leaves the factory (:func:`.attestation.factory_state`) the first time it is used and
committed before every answer that changed it -- keys, data, and failed authentications.

* As the card OS's :class:`~hwtoken.emulator.scp.ChannelAuthority` it answers the handshake
  commands (class ``80``/``84``) whichever applet is selected: INITIALIZE UPDATE and
  EXTERNAL AUTHENTICATE (SCP03), PERFORM SECURITY OPERATION (the OCE's certificates, for
  SCP11a/c), EXTERNAL AUTHENTICATE (SCP11a/c) and INTERNAL AUTHENTICATE (SCP11b)
  (:mod:`.handshake`). The card OS then unwraps and wraps the session's commands.
* Selected, it answers GET DATA (:mod:`.data`) to anyone, and PUT KEY, GENERATE KEY,
  DELETE KEY and STORE DATA (:mod:`.keyload`) only in a session whose host proved a key the
  card trusts (SCP03, SCP11a): ``6982`` otherwise.
* Failed authentications count per key; after :data:`.records.BLOCK_AFTER` the key is
  blocked (``6983``). When every key is blocked, or none is left, the Security Domain resets
  itself to the factory state with a new SCP11b key: this is how yubikit's
  ``SecurityDomainSession.reset`` (``ykman sd reset``) works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from cryptography.hazmat.primitives.asymmetric import ec

from hwtoken.emulator import tlv
from hwtoken.emulator.applets.securitydomain import data, handshake, keyload
from hwtoken.emulator.applets.securitydomain.attestation import (
    factory_state,
    generate,
    point,
    private_key,
)
from hwtoken.emulator.applets.securitydomain.records import (
    DEFAULT_KVN,
    KID_SCP03,
    KID_SCP11B,
    KLOC_KIDS,
    MAX_EC_KEYS,
    MAX_SCP03_SETS,
    SCP11_KIDS,
    CaIdentifier,
    EcKey,
    Ref,
    Scp03KeySet,
    SdState,
)
from hwtoken.emulator.iso7816 import SW, Apdu, ApduError
from hwtoken.emulator.scp import CLA_PROPRIETARY, SecureChannel

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.context import KeyContext

AID_SECURITY_DOMAIN = bytes.fromhex("a000000151000000")

INS_INITIALIZE_UPDATE = 0x50
INS_EXTERNAL_AUTHENTICATE = 0x82
INS_INTERNAL_AUTHENTICATE = 0x88
INS_PERFORM_SECURITY_OPERATION = 0x2A
HANDSHAKE_INS = (INS_INITIALIZE_UPDATE, INS_EXTERNAL_AUTHENTICATE, INS_INTERNAL_AUTHENTICATE,
                 INS_PERFORM_SECURITY_OPERATION)
INS_GET_DATA = 0xCA
INS_PUT_KEY = 0xD8
INS_STORE_DATA = 0xE2
INS_DELETE = 0xE4
INS_GENERATE_KEY = 0xF1
P2_MORE = 0x80  # PSO: more certificates follow; PUT KEY: more than one key


@dataclass
class OceChain:
    """OCE certificates PERFORM SECURITY OPERATION brought, checked against a CA key."""

    ca: Ref
    issuer: ec.EllipticCurvePublicKey
    complete: bool = False


class SecurityDomainApplet:
    """The Security Domain on a :class:`~hwtoken.emulator.context.KeyContext`; one per card
    OS, which keeps the session it opened in :attr:`channel`."""

    aid = AID_SECURITY_DOMAIN
    capability = 0  # not switchable in the management applet

    def __init__(self, key: KeyContext) -> None:
        self.key = key
        self.channel: SecureChannel | None = None
        self._pending: handshake.PendingScp03 | None = None
        self._oce: OceChain | None = None

    # -- state ------------------------------------------------------------------------------
    def load(self) -> SdState:
        """The stored state; made (and saved) as from the factory on first use."""
        section = self.key.store.section("securitydomain")
        if not section:
            state = factory_state(self.key.serial)
            self.save(state)
            return state
        return SdState.from_store(section)

    def save(self, state: SdState) -> None:
        """Write ``state`` and make it durable (before the answer)."""
        section = self.key.store.section("securitydomain")
        section.clear()
        section.update(state.to_store())
        self.key.store.commit()

    # -- lifecycle ------------------------------------------------------------------------------
    def close_channel(self) -> None:
        self.channel = None
        self._pending = None
        self._oce = None

    power_cycle = card_reset = deselect = close_channel

    def select(self, apdu: Apdu) -> bytes:
        self.load()  # a key's first use of its Security Domain makes it
        return tlv.tlv(0x6F, tlv.tlv(0x84, self.aid) + tlv.tlv(0xA5, tlv.tlv(0x9F65, b"\xff")))

    # -- failed attempts -----------------------------------------------------------------------
    def _count_failure(self, state: SdState, keys: list[Scp03KeySet | EcKey]) -> bool:
        """Count a failed authentication against ``keys`` (saved); True if that blocked
        one. Every key blocked resets the Security Domain."""
        for k in keys:
            k.failures += 1
        if all(k.blocked for k in [*state.scp03, *state.ec_keys]):
            state = factory_state(self.key.serial, state.authority)
        self.save(state)
        return any(k.blocked for k in keys)

    def _failed(self, state: SdState, keys: list[Scp03KeySet | EcKey], sw: int) -> NoReturn:
        """Count a failed authentication and answer ``sw``, or ``6983`` if it blocked."""
        raise ApduError(SW.AUTH_METHOD_BLOCKED if self._count_failure(state, keys) else sw)

    def _succeeded(self, state: SdState, key: Scp03KeySet | EcKey) -> None:
        if key.failures:
            key.failures = 0
            self.save(state)

    # -- handshake (any applet selected) --------------------------------------------------------
    def is_handshake(self, apdu: Apdu) -> bool:
        return bool(apdu.cla & CLA_PROPRIETARY) and apdu.ins in HANDSHAKE_INS

    def handshake(self, apdu: Apdu) -> bytes:
        self.channel = None  # a new handshake ends the session
        if apdu.ins == INS_INITIALIZE_UPDATE:
            return self._initialize_update(apdu)
        pending, self._pending = self._pending, None
        if apdu.ins == INS_PERFORM_SECURITY_OPERATION:
            return self._perform_security_operation(apdu)
        if apdu.ins == INS_EXTERNAL_AUTHENTICATE and apdu.p2 == 0:
            if pending is None:
                raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
            return self._external_authenticate_scp03(pending, apdu)
        return self._scp11_authenticate(apdu)

    def _initialize_update(self, apdu: Apdu) -> bytes:
        self._pending = self._oce = None
        state = self.load()
        if apdu.p1 == 0:
            keys = next((s for s in state.scp03 if not s.blocked), None)
            if keys is None and state.scp03:
                raise ApduError(SW.AUTH_METHOD_BLOCKED)
        else:
            keys = state.scp03_set(apdu.p1)
        if keys is None:
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        if keys.blocked:
            raise ApduError(SW.AUTH_METHOD_BLOCKED)
        diversification = bytes(6) + self.key.serial.to_bytes(4, "big")
        answer, pending = handshake.initialize_update(keys, apdu.data, diversification)
        if self._count_failure(state, [keys]):  # until EXTERNAL AUTHENTICATE succeeds
            raise ApduError(SW.AUTH_METHOD_BLOCKED)
        self._pending = pending
        return answer

    def _external_authenticate_scp03(self, pending: handshake.PendingScp03,
                                     apdu: Apdu) -> bytes:
        channel = handshake.external_authenticate(pending, apdu)
        state = self.load()
        keys = state.scp03_set(pending.kvn)
        if keys is not None:
            self._succeeded(state, keys)
        self.channel = channel
        return b""

    def _scp11_authenticate(self, apdu: Apdu) -> bytes:
        kid, kvn = apdu.p2, apdu.p1
        state = self.load()
        key = next((k for k in state.ec_keys if k.kid == kid and k.kid in SCP11_KIDS
                    and kvn in (0, k.kvn)), None)
        if key is None:
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        if key.blocked:
            raise ApduError(SW.AUTH_METHOD_BLOCKED)
        oce, self._oce = self._oce, None
        wanted = INS_INTERNAL_AUTHENTICATE if kid == KID_SCP11B else INS_EXTERNAL_AUTHENTICATE
        try:
            if apdu.ins != wanted:
                raise ApduError(SW.INCORRECT_PARAMETERS)
            request = handshake.parse_scp11(apdu.data, kid)
            if kid != KID_SCP11B and (oce is None or not oce.complete):
                raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
        except ApduError as exc:
            self._failed(state, [key], exc.sw)
        answer, channel = handshake.agree(kid, key.private, request, apdu.data,
                                          oce.issuer if oce is not None else None)
        self._succeeded(state, key)
        self.channel = channel
        return answer

    def _perform_security_operation(self, apdu: Apdu) -> bytes:
        """One certificate of the OCE's chain (leaf last; P2 bit 80: more follow)."""
        kid, kvn, more = apdu.p2 & ~P2_MORE, apdu.p1, bool(apdu.p2 & P2_MORE)
        state = self.load()
        oce, self._oce = self._oce, None
        if oce is not None and oce.complete:
            oce = None  # a new chain
        if oce is None:
            keys = [k for k in state.ec_keys if k.kid in KLOC_KIDS
                    and kid in (0, k.kid) and kvn in (0, k.kvn)]
        else:
            keys = [k for k in state.ec_keys if k.ref == oce.ca]
        if not keys:
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        if all(k.blocked for k in keys):
            raise ApduError(SW.AUTH_METHOD_BLOCKED)
        try:
            cert = handshake.load_certificate(apdu.data)
        except ApduError as exc:
            self._failed(state, keys, exc.sw)
        if oce is None:
            ca = next((k for k in keys if not k.blocked and handshake.verify_certificate(
                cert, handshake.load_point(k.public))), None)
        else:
            ca = keys[0] if handshake.verify_certificate(cert, oce.issuer) else None
        if ca is None:
            self._failed(state, keys, SW.INCORRECT_PARAMETERS)
        allowed = state.allowlists.get(ca.ref)
        if allowed is not None and cert.serial_number not in allowed:
            self._failed(state, [ca], SW.SECURITY_CONDITION_NOT_SATISFIED)
        public = cert.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) \
                or not isinstance(public.curve, ec.SECP256R1):
            self._failed(state, [ca], SW.INCORRECT_PARAMETERS)
        self._oce = OceChain(ca.ref, public, complete=not more)
        if not more:
            self._succeeded(state, ca)
        return b""

    # -- commands to the selected Security Domain -------------------------------------------
    def process(self, apdu: Apdu) -> bytes:
        if apdu.ins == INS_GET_DATA:
            return data.get_data(self.load(), (apdu.p1 << 8) | apdu.p2, apdu.data)
        handlers = {INS_PUT_KEY: self._put_key, INS_GENERATE_KEY: self._generate_key,
                    INS_DELETE: self._delete_key, INS_STORE_DATA: self._store_data}
        handler = handlers.get(apdu.ins)
        if handler is None:
            raise ApduError(SW.INVALID_INSTRUCTION)
        if self.channel is None or not self.channel.oce_authenticated:
            raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
        return handler(apdu)

    def _place(self, state: SdState, kid: int, kvn: int, replace: int) -> None:
        """Make room for the key ``kid``/``kvn``: drop the key it replaces (KVN ``replace``),
        check the KVN is free and that there is space (``6A88``, ``6A80``, ``6A84``)."""
        scp03 = kid == KID_SCP03
        if not kvn or (scp03 and kvn == DEFAULT_KVN):
            raise ApduError(SW.INCORRECT_PARAMETERS)
        if replace:
            old: Scp03KeySet | EcKey | None = (state.scp03_set(replace) if scp03
                                               else state.ec_key((kid, replace)))
            if old is None:
                raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
            if scp03:
                state.scp03.remove(old)  # type: ignore[arg-type]
            else:
                state.ec_keys.remove(old)  # type: ignore[arg-type]
                state.forget((kid, replace))
        if (state.scp03_set(kvn) if scp03 else state.ec_key((kid, kvn))) is not None:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        if scp03:
            default = state.scp03_set(DEFAULT_KVN)
            if default is not None:  # the first own key set replaces the default one
                state.scp03.remove(default)
            if len(state.scp03) >= MAX_SCP03_SETS:
                raise ApduError(SW.NO_SPACE)
        elif len(state.ec_keys) >= MAX_EC_KEYS:
            raise ApduError(SW.NO_SPACE)

    def _put_key(self, apdu: Apdu) -> bytes:
        kid = apdu.p2 & ~P2_MORE
        assert self.channel is not None  # noqa: S101 - process() checked
        new = keyload.parse_put_key(kid, apdu.data, self.channel.keys.dek)
        state = self.load()
        self._place(state, kid, new.kvn, apdu.p1)
        if new.scp03 is not None:
            state.scp03.append(Scp03KeySet(new.kvn, *new.scp03))
        else:
            state.ec_keys.append(EcKey(kid, new.kvn, private=new.private, public=new.public))
        self.save(state)
        return bytes([new.kvn]) + new.check_values

    def _generate_key(self, apdu: Apdu) -> bytes:
        kid = apdu.p2
        if kid not in SCP11_KIDS:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        kvn = keyload.parse_generate(apdu.data)
        state = self.load()
        self._place(state, kid, kvn, apdu.p1)
        key = generate(state, (kid, kvn), self.key.serial)
        state.ec_keys.append(key)
        self.save(state)
        return tlv.tlv(keyload.KEY_TYPE_EC_PUBLIC, point(private_key(key.private)))

    def _delete_key(self, apdu: Apdu) -> bytes:
        if apdu.p1 != 0 or apdu.p2 not in (0, 1):
            raise ApduError(SW.WRONG_PARAMETERS_P1P2)
        kid, kvn = keyload.parse_delete(apdu.data)
        state = self.load()
        sets = [s for s in state.scp03 if kid in (0, 1, 2, 3) and kvn in (0, s.kvn)]
        keys = [k for k in state.ec_keys if kid in (0, k.kid) and kvn in (0, k.kvn)]
        if not sets and not keys:
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        left_sets = [s for s in state.scp03 if s not in sets]
        left_keys = [k for k in state.ec_keys if k not in keys]
        if not apdu.p2 and not left_sets and not any(k.kid in SCP11_KIDS for k in left_keys):
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED)  # the last key: reset instead
        state.scp03, state.ec_keys = left_sets, left_keys
        for k in keys:
            state.forget(k.ref)
        if not state.scp03 and not state.ec_keys:
            state = factory_state(self.key.serial, state.authority)
        self.save(state)
        return b""

    def _store_data(self, apdu: Apdu) -> bytes:
        request = keyload.parse_store_data(apdu.data)
        state = self.load()
        ref = request.ref
        if ref not in state.refs():
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        if request.ca_identifier is not None:
            state.ca_identifiers[ref] = CaIdentifier(*request.ca_identifier)
        for store, value in ((state.certificates, request.certificates),
                             (state.allowlists, request.allowlist)):
            if value:
                store[ref] = value  # type: ignore[index]
            elif value is not None:
                store.pop(ref, None)  # type: ignore[attr-defined]
        self.save(state)
        return b""
