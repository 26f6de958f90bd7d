"""The PIV applet (NIST SP 800-73-4 with Yubico's extensions, as firmware 5.7 answers;
a key of older firmware answers as that firmware does, :mod:`.firmware`).

Pure logic over the key's ``piv`` store section (:mod:`.records`); every change is
committed before the answer leaves the card, and a PIN/PUK try is counted (and committed)
before the value is compared, so pulling the key mid-command never gives a free guess.

* SELECT answers the application property template; GET VERSION, GET SERIAL.
* VERIFY (empty data asks the status: ``9000``, ``63Cx`` or ``6983``; P1 ``FF`` forgets
  the PIN), CHANGE REFERENCE DATA (PIN ``80``, PUK ``81``), RESET RETRY COUNTER.
* GENERAL AUTHENTICATE: card management key (9B) mutual or external authentication
  with 3DES / AES-128/192/256 (P1 must be the stored type, else ``6A80``); with a slot
  key, raw RSA, ECDSA, Ed25519 (``81``) or ECDH / X25519 (``85``), under the key's PIN
  policy (NEVER, ONCE, ALWAYS = a VERIFY right before each use) and touch policy (asks
  the key's presence; CACHED lasts 15 s).
* GENERATE, IMPORT KEY (RSA 1024-4096, P-256, P-384, Ed25519, X25519), MOVE/DELETE KEY,
  ATTEST (slot F9 signs keys the card generated), GET METADATA.
* GET DATA / PUT DATA of data objects (discovery ``7E`` is built in; fingerprints,
  facial image, printed information and iris need the PIN), SET MGMKEY, SET PIN RETRIES,
  RESET (only with PIN and PUK blocked; the F9 key, its certificate and the attestation
  root survive).

Volatile state (PIN verified, management key authenticated, pending challenge, touch
cache) is dropped when another applet is selected, on card reset and on power loss.
"""

from __future__ import annotations

import gzip
import hmac
import os
import time
from typing import Any, Protocol

from hwtoken.emulator import tlv
from hwtoken.emulator.applets.management import CAP_PIV, FORM_FACTOR_USB_A_KEYCHAIN
from hwtoken.emulator.applets.piv import attestation, firmware, keys
from hwtoken.emulator.applets.piv.constants import (
    AID_PIV,
    ALGO_PIN,
    CACHED_TOUCH_SECONDS,
    DEFAULT_PIN,
    DEFAULT_PIN_POLICY,
    DEFAULT_PUK,
    INS_ATTEST,
    INS_AUTHENTICATE,
    INS_CHANGE_REFERENCE,
    INS_GENERATE_ASYMMETRIC,
    INS_GET_DATA,
    INS_GET_METADATA,
    INS_GET_SERIAL,
    INS_GET_VERSION,
    INS_IMPORT_KEY,
    INS_MOVE_KEY,
    INS_PUT_DATA,
    INS_RESET,
    INS_RESET_RETRY,
    INS_SET_MGMKEY,
    INS_SET_PIN_RETRIES,
    INS_VERIFY,
    KEY_SLOTS,
    KEY_TYPE,
    MANAGEMENT_KEY_TYPE,
    MAX_OBJECT_SIZE,
    MIN_PIN_LEN,
    OBJ_ATTESTATION,
    OBJ_DISCOVERY,
    ORIGIN_GENERATED,
    ORIGIN_IMPORTED,
    PIN_LEN,
    PIN_P2,
    PIN_POLICY,
    PIN_PROTECTED_OBJECTS,
    PUK_P2,
    SLOT_ATTESTATION,
    SLOT_CARD_MANAGEMENT,
    SW_INCORRECT_P1P2,
    SW_RETRIES,
    TAG_AID,
    TAG_APT,
    TAG_AUTH_CHALLENGE,
    TAG_AUTH_EXPONENTIATION,
    TAG_AUTH_RESPONSE,
    TAG_AUTH_WITNESS,
    TAG_CERT_INFO,
    TAG_CERTIFICATE,
    TAG_COEXISTENT_TAG_ALLOCATION,
    TAG_DISCOVERY,
    TAG_DYN_AUTH,
    TAG_GEN_ALGORITHM,
    TAG_GEN_TEMPLATE,
    TAG_LRC,
    TAG_METADATA_ALGO,
    TAG_METADATA_IS_DEFAULT,
    TAG_METADATA_ORIGIN,
    TAG_METADATA_POLICY,
    TAG_METADATA_PUBLIC_KEY,
    TAG_METADATA_RETRIES,
    TAG_OBJ_DATA,
    TAG_OBJ_ID,
    TAG_PIN_POLICY,
    TAG_PIN_USAGE_POLICY,
    TAG_PUBLIC_KEY,
    TAG_TOUCH_POLICY,
    TOUCH_POLICY,
)
from hwtoken.emulator.applets.piv.records import (
    ManagementKeyRecord,
    PinRecord,
    SlotKeyRecord,
    default_pin,
    default_puk,
    object_name,
    slot_name,
)
from hwtoken.emulator.iso7816 import SW, Apdu, ApduError
from hwtoken.emulator.presence import UserPresence

SECTION = "piv"

#: The SELECT answer: PIV's application property template (AID PIX, coexistent tag
#: allocation authority = NIST), as a YubiKey 5 sends it.
APPLICATION_PROPERTY_TEMPLATE = tlv.tlv(TAG_APT, tlv.tlv(TAG_AID, AID_PIV[5:])
                                        + tlv.tlv(TAG_COEXISTENT_TAG_ALLOCATION,
                                                  tlv.tlv(TAG_AID, AID_PIV[:5])))
#: The discovery object (``7E``): the PIV AID and the PIN usage policy "PIV PIN only".
DISCOVERY = tlv.tlv(TAG_DISCOVERY, tlv.tlv(TAG_AID, AID_PIV)
                    + tlv.tlv(TAG_PIN_USAGE_POLICY, b"\x40\x00"))


class PivStore(Protocol):
    """The part of the key's store the applet uses."""

    def section(self, name: str) -> dict[str, Any]: ...

    def commit(self) -> None: ...


class PivHost(Protocol):
    """What the PIV applet needs from the virtual key: a store section, the user's
    presence (touch), and its identity (serial, firmware version)."""

    store: PivStore
    presence: UserPresence

    @property
    def serial(self) -> int: ...

    @property
    def version(self) -> tuple[int, int, int]: ...


def _retries_sw(remaining: int) -> ApduError:
    return ApduError(SW_RETRIES | min(max(remaining, 0), 15))


def _new_pin_ok(value: bytes) -> bool:
    """8 bytes: 6-8 bytes of PIN, then ``FF`` padding only."""
    if len(value) != PIN_LEN:
        return False
    body = value.rstrip(b"\xff")
    return len(body) >= MIN_PIN_LEN and b"\xff" not in body


def _cert_object(cert_der: bytes) -> bytes:
    """A certificate data object's content (70 cert, 71 uncompressed, FE LRC)."""
    return tlv.tlv(TAG_CERTIFICATE, cert_der) + tlv.tlv(TAG_CERT_INFO, b"\0") + tlv.tlv(TAG_LRC)


def _object_id(data: bytes) -> int:
    """The object id of a GET/PUT DATA tag list ``5C``: 7E, 7F61, or any three-byte id
    from 5F0000 to 5FFFFF (SP 800-73-4's 5FC1xx, Yubico's 5FFFxx and the rest a YubiKey
    stores as well)."""
    if not 1 <= len(data) <= 3:
        raise ApduError(SW.INCORRECT_PARAMETERS)
    oid = int.from_bytes(data, "big")
    if oid in (OBJ_DISCOVERY, 0x7F61) or (len(data) == 3 and data[0] == 0x5F):
        return oid
    raise ApduError(SW.INCORRECT_PARAMETERS)


class PivApplet:
    """PIV on a virtual key (``key.piv``)."""

    aid = AID_PIV
    capability = CAP_PIV

    def __init__(self, key: PivHost) -> None:
        self.key = key
        self._loaded: dict[bytes, keys.PrivateKey] = {}
        self.power_cycle()

    # -- volatile state ---------------------------------------------------------------------
    def power_cycle(self) -> None:
        """Forget the PIN, the management key authentication and the touch cache."""
        self._pin_verified = False
        self._pin_fresh = False  # a VERIFY since the last PIN-ALWAYS key use
        self._mgm_authenticated = False
        self._challenge: tuple[str, bytes] | None = None
        self._touched_at: float | None = None

    card_reset = power_cycle
    deselect = power_cycle

    # -- persisted state --------------------------------------------------------------------
    @property
    def _section(self) -> dict[str, Any]:
        sec = self.key.store.section(SECTION)
        if "pin" not in sec:
            self._factory_setup(sec)
        return sec

    def initialise(self) -> None:
        """Set up a new key: the defaults of its firmware and its attestation PKI."""
        self._section  # noqa: B018 - creates and commits the section

    def _factory_setup(self, sec: dict[str, Any]) -> None:
        authority = attestation.new_authority(self.key.serial)
        f9 = SlotKeyRecord(KEY_TYPE.ECCP256, keys.to_der(authority.key), PIN_POLICY.NEVER,
                           TOUCH_POLICY.NEVER, ORIGIN_IMPORTED)
        sec.clear()
        sec.update({
            "pin": default_pin().to_store(),
            "puk": default_puk().to_store(),
            "management_key": self._factory_management_key().to_store(),
            "keys": {slot_name(SLOT_ATTESTATION): f9.to_store()},
            "objects": {object_name(OBJ_ATTESTATION): _cert_object(authority.cert)},
            "attestation_root": authority.root_cert,
        })
        self.key.store.commit()

    def _commit(self) -> None:
        self.key.store.commit()

    @property
    def _version(self) -> tuple[int, int, int]:
        return self.key.version

    def _factory_management_key(self) -> ManagementKeyRecord:
        """The default management key, with the algorithm of this firmware (3DES < 5.7)."""
        return ManagementKeyRecord(firmware.default_management_key_type(self._version))

    @property
    def attestation_root(self) -> bytes:
        """The DER certificate that anchors this key's attestation chain."""
        return bytes(self._section["attestation_root"])

    def _pin(self) -> PinRecord:
        return PinRecord.from_store(self._section["pin"], DEFAULT_PIN)

    def _puk(self) -> PinRecord:
        return PinRecord.from_store(self._section["puk"], DEFAULT_PUK)

    def _put_pin(self, name: str, record: PinRecord) -> None:
        self._section[name] = record.to_store()

    def _management_key(self) -> ManagementKeyRecord:
        return ManagementKeyRecord.from_store(self._section["management_key"])

    def _slot_key(self, slot: int) -> SlotKeyRecord | None:
        raw = self._section["keys"].get(slot_name(slot))
        return SlotKeyRecord.from_store(raw) if raw is not None else None

    def _put_slot_key(self, slot: int, record: SlotKeyRecord | None) -> None:
        if record is None:
            self._section["keys"].pop(slot_name(slot), None)
        else:
            self._section["keys"][slot_name(slot)] = record.to_store()

    def _private(self, record: SlotKeyRecord) -> keys.PrivateKey:
        key = self._loaded.get(record.private)
        if key is None:
            if len(self._loaded) > 32:
                self._loaded.clear()
            key = self._loaded[record.private] = keys.from_der(record.private)
        return key

    def _objects(self) -> dict[str, bytes]:
        objects: dict[str, bytes] = self._section["objects"]
        return objects

    # -- ISO 7816 ---------------------------------------------------------------------------
    def select(self, apdu: Apdu) -> bytes:
        """The application property template. Selecting PIV again keeps the PIN state."""
        self._section  # noqa: B018 - a key made before PIV existed gets its setup now
        return APPLICATION_PROPERTY_TEMPLATE

    def process(self, apdu: Apdu) -> bytes:
        if apdu.cla != 0x00:
            raise ApduError(SW.CLASS_NOT_SUPPORTED)
        handler = self._HANDLERS.get(apdu.ins)
        if handler is None or not firmware.has_instruction(self._version, apdu.ins):
            raise ApduError(SW.INVALID_INSTRUCTION)
        result: bytes = handler(self, apdu)
        return result

    # -- access conditions ------------------------------------------------------------------
    def _require_management(self) -> None:
        if not self._mgm_authenticated:
            raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)

    def _require_pin(self, policy: PIN_POLICY) -> None:
        if policy is PIN_POLICY.NEVER:
            return
        if policy is PIN_POLICY.ALWAYS:
            if not self._pin_fresh:
                raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
            self._pin_fresh = False
            return
        if not self._pin_verified:
            raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)

    def _require_touch(self, policy: TOUCH_POLICY, what: str) -> None:
        """Ask the key's presence policy for a touch (CACHED: unless one came lately)."""
        if policy is TOUCH_POLICY.NEVER:
            return
        now = time.monotonic()
        if policy is TOUCH_POLICY.CACHED and self._touched_at is not None \
                and now - self._touched_at < CACHED_TOUCH_SECONDS:
            return
        if not self.key.presence.wait(f"PIV {what}"):
            raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
        self._touched_at = time.monotonic()

    def _policies(self, slot: int, fields: dict[int, bytes]) -> tuple[PIN_POLICY, TOUCH_POLICY]:
        """The PIN and touch policies a GENERATE/IMPORT asks for, DEFAULT resolved."""
        try:
            pin = PIN_POLICY(fields[TAG_PIN_POLICY][0]) if TAG_PIN_POLICY in fields \
                else PIN_POLICY.DEFAULT
            touch = TOUCH_POLICY(fields[TAG_TOUCH_POLICY][0]) if TAG_TOUCH_POLICY in fields \
                else TOUCH_POLICY.DEFAULT
        except (ValueError, IndexError):
            raise ApduError(SW.INCORRECT_PARAMETERS) from None
        if any(len(fields.get(t, b"x")) != 1 for t in (TAG_PIN_POLICY, TAG_TOUCH_POLICY)):
            raise ApduError(SW.INCORRECT_PARAMETERS)
        if pin in (PIN_POLICY.MATCH_ONCE, PIN_POLICY.MATCH_ALWAYS):
            raise ApduError(SW.INCORRECT_PARAMETERS)  # no fingerprint reader
        if not firmware.supports_policies(self._version, pin, touch):
            raise ApduError(SW.INCORRECT_PARAMETERS)
        if pin is PIN_POLICY.DEFAULT:
            pin = DEFAULT_PIN_POLICY.get(slot, PIN_POLICY.ONCE)
        if touch is TOUCH_POLICY.DEFAULT:
            touch = TOUCH_POLICY.NEVER
        return pin, touch

    # -- PIN and PUK ------------------------------------------------------------------------
    def _verify(self, apdu: Apdu) -> bytes:
        if apdu.p1 == 0xFF:  # SP 800-73-4: reset the PIN's security status
            if apdu.data:
                raise ApduError(SW.INCORRECT_PARAMETERS)
            self._pin_verified = self._pin_fresh = False
            return b""
        if apdu.p1 != 0x00:
            raise ApduError(SW_INCORRECT_P1P2)
        if apdu.p2 != PIN_P2:
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        pin = self._pin()
        if not apdu.data:  # status only (yubico-piv-tool sends it with Le = 00)
            if pin.blocked:
                raise ApduError(SW.AUTH_METHOD_BLOCKED)
            if self._pin_verified:
                return b""
            raise _retries_sw(pin.remaining)
        if len(apdu.data) != PIN_LEN:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        if pin.blocked:
            raise ApduError(SW.AUTH_METHOD_BLOCKED)
        pin.remaining -= 1  # count the try durably before comparing
        self._put_pin("pin", pin)
        self._commit()
        if not hmac.compare_digest(apdu.data, pin.value):
            self._pin_verified = self._pin_fresh = False
            raise _retries_sw(pin.remaining)
        pin.remaining = pin.total
        self._put_pin("pin", pin)
        self._commit()
        self._pin_verified = self._pin_fresh = True
        return b""

    def _check_reference(self, name: str, record: PinRecord, given: bytes) -> None:
        """Count a try for ``record`` (committed), then compare; a miss raises ``63Cx``."""
        if record.blocked:
            raise ApduError(SW.AUTH_METHOD_BLOCKED)
        record.remaining -= 1
        self._put_pin(name, record)
        self._commit()
        if not hmac.compare_digest(given, record.value):
            if name == "pin":
                self._pin_verified = self._pin_fresh = False
            raise _retries_sw(record.remaining)
        record.remaining = record.total

    def _change_reference(self, apdu: Apdu) -> bytes:
        if apdu.p1 != 0x00:
            raise ApduError(SW_INCORRECT_P1P2)
        if apdu.p2 not in (PIN_P2, PUK_P2):
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        if len(apdu.data) != 2 * PIN_LEN:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        name = "pin" if apdu.p2 == PIN_P2 else "puk"
        record = self._pin() if name == "pin" else self._puk()
        old, new = apdu.data[:PIN_LEN], apdu.data[PIN_LEN:]
        self._check_reference(name, record, old)  # the try counts whatever ``new`` is
        ok = _new_pin_ok(new)
        if ok:
            record.value = new
        self._put_pin(name, record)
        self._commit()
        if not ok:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        return b""

    def _reset_retry(self, apdu: Apdu) -> bytes:
        if apdu.p1 != 0x00:
            raise ApduError(SW_INCORRECT_P1P2)
        if apdu.p2 != PIN_P2:
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        if len(apdu.data) != 2 * PIN_LEN:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        puk_given, new = apdu.data[:PIN_LEN], apdu.data[PIN_LEN:]
        puk = self._puk()
        # The PUK try counts whatever ``new`` is: yubikit blocks the PUK (before a RESET)
        # with FF-only PUK and PIN.
        self._check_reference("puk", puk, puk_given)
        self._put_pin("puk", puk)
        ok = _new_pin_ok(new)
        if ok:
            pin = self._pin()
            pin.value, pin.remaining = new, pin.total
            self._put_pin("pin", pin)
        self._commit()
        if not ok:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        return b""

    # -- GENERAL AUTHENTICATE -----------------------------------------------------------------
    def _authenticate(self, apdu: Apdu) -> bytes:
        fields = tlv.parse_dict(tlv.unpack(TAG_DYN_AUTH, apdu.data))
        if apdu.p2 == SLOT_CARD_MANAGEMENT:
            return self._authenticate_management(apdu.p1, fields)
        record = self._slot_key(apdu.p2) if apdu.p2 in KEY_SLOTS else None
        if record is None or apdu.p1 != record.key_type:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        if fields.get(TAG_AUTH_RESPONSE, b"x") != b"":
            raise ApduError(SW.INCORRECT_PARAMETERS)
        challenge = fields.get(TAG_AUTH_CHALLENGE)
        peer = fields.get(TAG_AUTH_EXPONENTIATION)
        if (challenge is None) == (peer is None):
            raise ApduError(SW.INCORRECT_PARAMETERS)
        self._require_pin(record.pin_policy)
        self._require_touch(record.touch_policy, f"key {apdu.p2:02x}")
        private = self._private(record)
        if challenge is not None:
            result = keys.sign(record.key_type, private, challenge)
        else:
            assert peer is not None
            result = keys.agree(record.key_type, private, peer)
        return tlv.tlv(TAG_DYN_AUTH, tlv.tlv(TAG_AUTH_RESPONSE, result))

    def _authenticate_management(self, p1: int, fields: dict[int, bytes]) -> bytes:
        mk = self._management_key()
        if p1 != mk.key_type:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        size = mk.key_type.challenge_len
        witness = fields.get(TAG_AUTH_WITNESS)
        challenge = fields.get(TAG_AUTH_CHALLENGE)
        response = fields.get(TAG_AUTH_RESPONSE)
        pending, self._challenge = self._challenge, None
        self._mgm_authenticated = False
        if witness == b"" and challenge is None and response is None:
            # mutual authentication, step 1: the card's encrypted witness
            plain = os.urandom(size)
            self._challenge = ("witness", plain)
            return tlv.tlv(TAG_DYN_AUTH, tlv.tlv(
                TAG_AUTH_WITNESS, keys.encrypt_block(mk.key_type, mk.key, plain)))
        if witness and challenge is not None and response is None:
            # step 2: the host decrypted the witness and sends its own challenge
            if len(witness) != size or len(challenge) != size:
                raise ApduError(SW.INCORRECT_PARAMETERS)
            if pending is None or pending[0] != "witness":
                raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
            if not hmac.compare_digest(witness, pending[1]):
                raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
            self._require_touch(mk.touch, "management key")
            self._mgm_authenticated = True
            return tlv.tlv(TAG_DYN_AUTH, tlv.tlv(
                TAG_AUTH_RESPONSE, keys.encrypt_block(mk.key_type, mk.key, challenge)))
        if challenge == b"" and witness is None and response is None:
            # external authentication, step 1: a challenge for the host to encrypt
            plain = os.urandom(size)
            self._challenge = ("challenge", plain)
            return tlv.tlv(TAG_DYN_AUTH, tlv.tlv(TAG_AUTH_CHALLENGE, plain))
        if response and witness is None and challenge is None:
            if pending is None or pending[0] != "challenge":
                raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
            expected = keys.encrypt_block(mk.key_type, mk.key, pending[1])
            if not hmac.compare_digest(response, expected):
                raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
            self._require_touch(mk.touch, "management key")
            self._mgm_authenticated = True
            return b""
        raise ApduError(SW.INCORRECT_PARAMETERS)

    # -- keys --------------------------------------------------------------------------------
    def _generate(self, apdu: Apdu) -> bytes:
        if apdu.p1 != 0x00 or apdu.p2 not in KEY_SLOTS or apdu.p2 == SLOT_ATTESTATION:
            raise ApduError(SW_INCORRECT_P1P2)
        self._require_management()
        fields = tlv.parse_dict(tlv.unpack(TAG_GEN_TEMPLATE, apdu.data))
        algorithm = fields.get(TAG_GEN_ALGORITHM, b"")
        if len(algorithm) != 1 or algorithm[0] not in KEY_TYPE._value2member_map_:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        key_type = KEY_TYPE(algorithm[0])
        if not firmware.supports_key_type(self._version, key_type, generate=True):
            raise ApduError(SW.INCORRECT_PARAMETERS)
        pin_policy, touch_policy = self._policies(apdu.p2, fields)
        private = keys.generate(key_type)
        self._put_slot_key(apdu.p2, SlotKeyRecord(key_type, keys.to_der(private), pin_policy,
                                                  touch_policy, ORIGIN_GENERATED))
        self._commit()
        return tlv.tlv(TAG_PUBLIC_KEY, keys.public_key_data(key_type, private.public_key()))

    def _import_key(self, apdu: Apdu) -> bytes:
        if apdu.p2 not in KEY_SLOTS:
            raise ApduError(SW_INCORRECT_P1P2)
        self._require_management()
        if apdu.p1 not in KEY_TYPE._value2member_map_:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        key_type = KEY_TYPE(apdu.p1)
        if not firmware.supports_key_type(self._version, key_type, generate=False):
            raise ApduError(SW.INCORRECT_PARAMETERS)
        fields = tlv.parse_dict(apdu.data)
        pin_policy, touch_policy = self._policies(apdu.p2, fields)
        private = keys.from_import(key_type, fields)
        self._put_slot_key(apdu.p2, SlotKeyRecord(key_type, keys.to_der(private), pin_policy,
                                                  touch_policy, ORIGIN_IMPORTED))
        self._commit()
        return b""

    def _move_key(self, apdu: Apdu) -> bytes:
        """P2 = from, P1 = to; P1 = FF deletes the key (its certificate stays)."""
        dest, source = apdu.p1, apdu.p2
        if source not in KEY_SLOTS or source == SLOT_ATTESTATION \
                or (dest != 0xFF and (dest not in KEY_SLOTS or dest == SLOT_ATTESTATION)):
            raise ApduError(SW_INCORRECT_P1P2)
        self._require_management()
        record = self._slot_key(source)
        if record is None:
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        if dest != 0xFF:
            if dest == source or self._slot_key(dest) is not None:
                raise ApduError(SW.INCORRECT_PARAMETERS)
            self._put_slot_key(dest, record)
        self._put_slot_key(source, None)
        self._commit()
        return b""

    def _attest(self, apdu: Apdu) -> bytes:
        slot = apdu.p1
        if apdu.p2 != 0x00 or slot not in KEY_SLOTS or slot == SLOT_ATTESTATION:
            raise ApduError(SW_INCORRECT_P1P2)
        record = self._slot_key(slot)
        if record is None:
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        if record.origin != ORIGIN_GENERATED:
            raise ApduError(SW.INCORRECT_PARAMETERS)  # only keys born on the card
        signer = self._slot_key(SLOT_ATTESTATION)
        signer_cert = self._certificate(OBJ_ATTESTATION)
        if signer is None or signer_cert is None:
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        try:
            return attestation.attest(
                signer=self._private(signer), signer_cert=signer_cert,
                public_key=self._private(record).public_key(), slot=slot,
                serial=self.key.serial, version=self.key.version,
                pin_policy=record.pin_policy, touch_policy=record.touch_policy,
                form_factor=FORM_FACTOR_USB_A_KEYCHAIN)
        except ValueError:  # an F9 certificate or key the card cannot sign with
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED) from None

    def _certificate(self, object_id: int) -> bytes | None:
        """The DER certificate stored in a certificate object (gunzipped if needed)."""
        content = self._objects().get(object_name(object_id))
        if content is None:
            return None
        try:
            parts = tlv.parse_dict(bytes(content))
            cert = parts[TAG_CERTIFICATE]
            if parts.get(TAG_CERT_INFO, b"\0")[:1] == b"\1":
                cert = gzip.decompress(cert)
        except (ApduError, KeyError, OSError, EOFError):
            return None
        return cert

    def _get_metadata(self, apdu: Apdu) -> bytes:
        if apdu.p1 != 0x00:
            raise ApduError(SW_INCORRECT_P1P2)
        ref = apdu.p2
        if ref in (PIN_P2, PUK_P2):
            rec = self._pin() if ref == PIN_P2 else self._puk()
            return (tlv.tlv(TAG_METADATA_ALGO, bytes([ALGO_PIN]))
                    + tlv.tlv(TAG_METADATA_IS_DEFAULT, bytes([rec.is_default]))
                    + tlv.tlv(TAG_METADATA_RETRIES, bytes([rec.total, max(rec.remaining, 0)])))
        if ref == SLOT_CARD_MANAGEMENT:
            mk = self._management_key()
            return (tlv.tlv(TAG_METADATA_ALGO, bytes([mk.key_type]))
                    + tlv.tlv(TAG_METADATA_POLICY, bytes([PIN_POLICY.NEVER, mk.touch]))
                    + tlv.tlv(TAG_METADATA_IS_DEFAULT, bytes([mk.is_default])))
        record = self._slot_key(ref) if ref in KEY_SLOTS else None
        if record is None:
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        public = self._private(record).public_key()
        return (tlv.tlv(TAG_METADATA_ALGO, bytes([record.key_type]))
                + tlv.tlv(TAG_METADATA_POLICY, bytes([record.pin_policy, record.touch_policy]))
                + tlv.tlv(TAG_METADATA_ORIGIN, bytes([record.origin]))
                + tlv.tlv(TAG_METADATA_PUBLIC_KEY, keys.public_key_data(record.key_type,
                                                                        public)))

    # -- data objects ------------------------------------------------------------------------
    def _get_data(self, apdu: Apdu) -> bytes:
        if (apdu.p1, apdu.p2) != (0x3F, 0xFF):
            raise ApduError(SW_INCORRECT_P1P2)
        object_id = _object_id(tlv.unpack(TAG_OBJ_ID, apdu.data))
        if object_id == OBJ_DISCOVERY:
            return DISCOVERY
        if object_id in PIN_PROTECTED_OBJECTS and not self._pin_verified:
            raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
        content = self._objects().get(object_name(object_id))
        if content is None:
            raise ApduError(SW.FILE_NOT_FOUND)
        return tlv.tlv(TAG_OBJ_DATA, bytes(content))

    def _put_data(self, apdu: Apdu) -> bytes:
        if (apdu.p1, apdu.p2) != (0x3F, 0xFF):
            raise ApduError(SW_INCORRECT_P1P2)
        self._require_management()
        items = tlv.parse(apdu.data)
        if len(items) != 2 or items[0][0] != TAG_OBJ_ID or items[1][0] != TAG_OBJ_DATA:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        object_id = _object_id(items[0][1])
        if object_id == OBJ_DISCOVERY:
            raise ApduError(SW.INCORRECT_PARAMETERS)  # built in, read-only
        content = items[1][1]
        if len(content) > MAX_OBJECT_SIZE:
            raise ApduError(SW.NO_SPACE)
        if content:
            self._objects()[object_name(object_id)] = content
        else:
            self._objects().pop(object_name(object_id), None)
        self._commit()
        return b""

    # -- configuration -----------------------------------------------------------------------
    def _set_management_key(self, apdu: Apdu) -> bytes:
        if apdu.p1 != 0xFF or apdu.p2 not in (0xFF, 0xFE):
            raise ApduError(SW_INCORRECT_P1P2)
        self._require_management()
        if len(apdu.data) < 3 or apdu.data[0] not in MANAGEMENT_KEY_TYPE._value2member_map_:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        key_type = MANAGEMENT_KEY_TYPE(apdu.data[0])
        if not firmware.supports_management_key(self._version, key_type):
            raise ApduError(SW.INCORRECT_PARAMETERS)
        new = tlv.unpack(SLOT_CARD_MANAGEMENT, apdu.data[1:])
        if len(new) != key_type.key_len:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        touch = TOUCH_POLICY.ALWAYS if apdu.p2 == 0xFE else TOUCH_POLICY.NEVER
        self._section["management_key"] = ManagementKeyRecord(key_type, new, touch).to_store()
        self._commit()
        return b""

    def _set_pin_retries(self, apdu: Apdu) -> bytes:
        """P1 PIN tries, P2 PUK tries; PIN and PUK go back to their defaults."""
        self._require_management()
        if not self._pin_verified:
            raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
        if not apdu.p1 or not apdu.p2:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        self._put_pin("pin", PinRecord.factory(DEFAULT_PIN, apdu.p1))
        self._put_pin("puk", PinRecord.factory(DEFAULT_PUK, apdu.p2))
        self._commit()
        return b""

    def _reset(self, apdu: Apdu) -> bytes:
        """Factory reset, allowed only once PIN and PUK are both blocked."""
        if (apdu.p1, apdu.p2) != (0x00, 0x00):
            raise ApduError(SW_INCORRECT_P1P2)
        if not (self._pin().blocked and self._puk().blocked):
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
        sec = self._section
        f9 = sec["keys"].get(slot_name(SLOT_ATTESTATION))
        f9_cert = sec["objects"].get(object_name(OBJ_ATTESTATION))
        sec.update({
            "pin": default_pin().to_store(),
            "puk": default_puk().to_store(),
            "management_key": self._factory_management_key().to_store(),
            "keys": {} if f9 is None else {slot_name(SLOT_ATTESTATION): f9},
            "objects": {} if f9_cert is None else {object_name(OBJ_ATTESTATION): f9_cert},
        })
        self._commit()
        self.power_cycle()
        return b""

    def _get_version(self, apdu: Apdu) -> bytes:
        return bytes(self.key.version)

    def _get_serial(self, apdu: Apdu) -> bytes:
        return int(self.key.serial).to_bytes(4, "big")

    _HANDLERS = {
        INS_VERIFY: _verify,
        INS_CHANGE_REFERENCE: _change_reference,
        INS_RESET_RETRY: _reset_retry,
        INS_GENERATE_ASYMMETRIC: _generate,
        INS_AUTHENTICATE: _authenticate,
        INS_GET_DATA: _get_data,
        INS_PUT_DATA: _put_data,
        INS_MOVE_KEY: _move_key,
        INS_GET_METADATA: _get_metadata,
        INS_GET_SERIAL: _get_serial,
        INS_ATTEST: _attest,
        INS_SET_PIN_RETRIES: _set_pin_retries,
        INS_RESET: _reset,
        INS_GET_VERSION: _get_version,
        INS_IMPORT_KEY: _import_key,
        INS_SET_MGMKEY: _set_management_key,
    }
