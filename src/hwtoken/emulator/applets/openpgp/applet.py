"""The OpenPGP card applet (OpenPGP card 3.4, as a YubiKey 5.7 implements it).

Pure logic over the key's ``openpgp`` store section (:mod:`.records`); every change -- a
PIN try, the signature counter, a key -- is committed before the answer leaves the card,
and a PIN try is counted (and committed) before the value is compared, so pulling the key
mid-command never gives a free guess.

* SELECT by the AID ``D2 76 00 01 24 01`` (the full AID carries version 3.4, manufacturer
  0006 Yubico and the serial in BCD); in the termination state it answers ``6285``.
* VERIFY PW1 (81 for signatures, 82 for the rest) or PW3 (83); an empty body asks the
  status (``9000``, ``63Cx``, ``6983``), P1 ``FF`` forgets it; a wrong PIN answers ``6982``.
  CHANGE REFERENCE DATA, RESET RETRY COUNTER (by the resetting code or with PW3).
* GET DATA / PUT DATA of the data objects (:mod:`.objects`); SELECT DATA and GET NEXT DATA
  pick the cardholder certificate (``7F21``); key import through PUT DATA ``3FFF``.
* GENERATE ASYMMETRIC KEY PAIR, PSO: COMPUTE DIGITAL SIGNATURE, PSO: DECIPHER, INTERNAL
  AUTHENTICATE (:mod:`.keys`), GET CHALLENGE, TERMINATE DF and ACTIVATE FILE (factory
  reset; the attestation key stays).
* Yubico's GET VERSION, SET PIN RETRIES and GET ATTESTATION (:mod:`.attestation`); the
  user interaction flags (touch policies) ask the key's presence, CACHED lasts 15 s.

Volatile state (which PINs are verified, the selected certificate, the touch cache) is
dropped when another applet is selected, on card reset and on power loss.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hwtoken.emulator import tlv
from hwtoken.emulator.applets.management import CAP_OPENPGP, FORM_FACTOR_USB_A_KEYCHAIN
from hwtoken.emulator.applets.openpgp import attestation, keys, objects
from hwtoken.emulator.applets.openpgp.algorithms import ALGO_ECDSA, SECP256R1, Attributes
from hwtoken.emulator.applets.openpgp.constants import (
    ATT,
    AUT,
    BUTTON,
    CA_FINGERPRINT_DOS,
    CACHED_TOUCH_SECONDS,
    CLA_YUBICO,
    DEC,
    DEFAULT_PW1,
    DEFAULT_PW3,
    DO,
    FINGERPRINT_LEN,
    GENERATE,
    HISTORICAL_BYTES,
    INS_ACTIVATE,
    INS_CHANGE_REFERENCE,
    INS_GENERATE_ASYM,
    INS_GET_ATTESTATION,
    INS_GET_CHALLENGE,
    INS_GET_DATA,
    INS_GET_NEXT_DATA,
    INS_GET_VERSION,
    INS_INTERNAL_AUTHENTICATE,
    INS_PSO,
    INS_PUT_DATA,
    INS_PUT_DATA_ODD,
    INS_RESET_RETRY,
    INS_SELECT_DATA,
    INS_SET_PIN_RETRIES,
    INS_TERMINATE,
    INS_VERIFY,
    KDF_ITERSALTED_S2K,
    KDF_NONE,
    KEY_STATUS,
    MAX_CERTIFICATE,
    MAX_CHALLENGE,
    MAX_LANGUAGE,
    MAX_NAME,
    MAX_PIN,
    MAX_RETRIES,
    MAX_SPECIAL_DO,
    MIN_PW1,
    MIN_PW3,
    MIN_RC,
    PSO_CDS,
    PSO_DECIPHER,
    PW,
    READ_PUBLIC,
    SIG,
    SIGNATURE_COUNTER_MAX,
    SLOT_BY_OCCURRENCE,
    SLOTS,
    SW_TERMINATED,
    SW_WRONG_PIN,
    TAG_EXTENDED_HEADER_LIST,
    TAG_PRIVATE_KEY_DATA,
    TAG_PRIVATE_KEY_TEMPLATE,
    TAG_SELECT_DATA,
    TAG_TAG_LIST,
    UIF,
    KeySlot,
)
from hwtoken.emulator.applets.openpgp.records import CardState, KeyRecord, PinRecord, object_name
from hwtoken.emulator.iso7816 import SW, Apdu, ApduError

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.context import KeyContext

SECTION = "openpgp"

#: cardholder data objects: their longest value (PUT DATA needs PW3 unless noted)
_PLAIN_OBJECTS = {DO.NAME: MAX_NAME, DO.LOGIN_DATA: MAX_SPECIAL_DO, DO.LANGUAGE: MAX_LANGUAGE,
                  DO.SEX: 1, DO.URL: MAX_SPECIAL_DO, DO.PRIVATE_USE_1: MAX_SPECIAL_DO,
                  DO.PRIVATE_USE_2: MAX_SPECIAL_DO, DO.PRIVATE_USE_3: MAX_SPECIAL_DO,
                  DO.PRIVATE_USE_4: MAX_SPECIAL_DO}
#: private use DOs: who may read and write them (PW1 in mode 82, or PW3)
_PRIVATE_READ = {DO.PRIVATE_USE_3: PW.USER_OTHER, DO.PRIVATE_USE_4: PW.ADMIN}
_PRIVATE_WRITE = {DO.PRIVATE_USE_1: PW.USER_OTHER, DO.PRIVATE_USE_3: PW.USER_OTHER}
_SLOT_BY_DO = {do: slot for slot in SLOTS
               for do in (slot.attributes_do, slot.fingerprint_do, slot.generation_time_do,
                          slot.uif_do)}
_SLOT_BY_CRT = {slot.crt: slot for slot in SLOTS}
_CERTIFICATE_TAG_LIST = tlv.tlv(TAG_SELECT_DATA, tlv.tlv(TAG_TAG_LIST, b"\x7f\x21"))
_KDF_HASH_LEN = {0x08: 32, 0x0A: 64}  # SHA-256, SHA-512


def _tag(apdu: Apdu) -> int:
    return (apdu.p1 << 8) | apdu.p2


def _wrong_p1p2() -> ApduError:
    return ApduError(SW.WRONG_PARAMETERS_P1P2)


def _pin_ok(value: bytes, minimum: int) -> bool:
    return minimum <= len(value) <= MAX_PIN


class OpenPgpApplet:
    """OpenPGP on a virtual key (``key.openpgp``)."""

    capability = CAP_OPENPGP

    def __init__(self, key: KeyContext) -> None:
        self.key = key
        self._loaded: dict[bytes, keys.PrivateKey] = {}
        self.power_cycle()

    @property
    def aid(self) -> bytes:
        """The full AID (``D2 76 00 01 24 01 03 04 00 06`` + serial + ``00 00``)."""
        return objects.aid(self.key.serial)

    # -- volatile state ---------------------------------------------------------------------
    def power_cycle(self) -> None:
        """Forget verified PINs, the selected certificate and the touch cache."""
        self._verified: set[PW] = set()
        self._occurrence = 0
        self._touched_at: float | None = None

    card_reset = power_cycle
    deselect = power_cycle

    # -- persisted state --------------------------------------------------------------------
    def _state(self) -> CardState:
        sec = self.key.store.section(SECTION)
        if "pw1" not in sec:
            self._factory_setup(sec)
        return CardState.from_store(sec)

    def _save(self, state: CardState) -> None:
        sec = self.key.store.section(SECTION)
        sec.clear()
        sec.update(state.to_store())
        self.key.store.commit()

    def initialise(self) -> None:
        """Set up a new key: defaults of firmware 5.7, the ATT key and its PKI."""
        self._state()

    def _factory_setup(self, sec: dict[str, Any]) -> None:
        authority = attestation.new_authority(self.key.serial)
        state = CardState(attestation_root=authority.root_cert)
        state.keys[ATT.name] = KeyRecord(
            bytes(Attributes.ecc(ALGO_ECDSA, SECP256R1)), keys.to_der(authority.key),
            KEY_STATUS.IMPORTED, certificate=authority.cert)
        sec.update(state.to_store())
        self.key.store.commit()

    @property
    def attestation_root(self) -> bytes:
        """The DER certificate that anchors this key's OpenPGP attestation chain."""
        return self._state().attestation_root

    def _private(self, record: KeyRecord) -> keys.PrivateKey:
        if not record.private:
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        key = self._loaded.get(record.private)
        if key is None:
            if len(self._loaded) > 16:
                self._loaded.clear()
            key = self._loaded[record.private] = keys.from_der(record.private)
        return key

    # -- ISO 7816 ---------------------------------------------------------------------------
    def select(self, apdu: Apdu) -> bytes:
        """Nothing, or ``6285`` while terminated (the host then sends ACTIVATE)."""
        if self._state().terminated:
            raise ApduError(SW_TERMINATED)
        return b""

    def process(self, apdu: Apdu) -> bytes:
        if apdu.cla != 0x00 and not (apdu.cla == CLA_YUBICO
                                     and apdu.ins == INS_GET_ATTESTATION):
            raise ApduError(SW.CLASS_NOT_SUPPORTED)
        handler = self._HANDLERS.get(apdu.ins)
        if handler is None:
            raise ApduError(SW.INVALID_INSTRUCTION)
        state = self._state()
        if state.terminated and apdu.ins != INS_ACTIVATE:
            raise ApduError(SW_TERMINATED)
        certificate_command = apdu.ins in (INS_SELECT_DATA, INS_GET_NEXT_DATA) or (
            apdu.ins in (INS_GET_DATA, INS_PUT_DATA)
            and _tag(apdu) == DO.CARDHOLDER_CERTIFICATE)
        try:
            return handler(self, apdu, state)
        finally:
            if not certificate_command:  # SELECT DATA holds for the next 7F21 access only
                self._occurrence = 0

    # -- access conditions ------------------------------------------------------------------
    def _require(self, *pws: PW) -> None:
        if not self._verified.intersection(pws):
            raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)

    def _touch(self, record: KeyRecord, what: str) -> None:
        """Ask the key's presence policy for a touch if the key's UIF says so."""
        if record.uif is UIF.OFF:
            return
        now = time.monotonic()
        if record.uif.is_cached and self._touched_at is not None \
                and now - self._touched_at < CACHED_TOUCH_SECONDS:
            return
        if not self.key.presence.wait(f"OpenPGP {what}"):
            raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
        self._touched_at = time.monotonic()

    def _forget(self, pw: PW) -> None:
        if pw is PW.ADMIN:
            self._verified.discard(PW.ADMIN)
        else:
            self._verified -= {PW.USER, PW.USER_OTHER}

    def _check(self, state: CardState, record: PinRecord, given: bytes) -> bool:
        """Count a try for ``record`` (committed), then compare; True if it matched (the
        counter is full again, not yet committed)."""
        record.remaining -= 1
        self._save(state)
        if not hmac.compare_digest(given, record.value):
            return False
        record.remaining = record.total
        return True

    # -- PINs -------------------------------------------------------------------------------
    def _verify(self, apdu: Apdu, state: CardState) -> bytes:
        if apdu.p1 not in (0x00, 0xFF) or apdu.p2 not in PW._value2member_map_:
            raise _wrong_p1p2()
        pw = PW(apdu.p2)
        if apdu.p1 == 0xFF:  # forget the verification
            if apdu.data:
                raise ApduError(SW.WRONG_LENGTH)
            self._verified.discard(pw)
            return b""
        record = state.pw3 if pw is PW.ADMIN else state.pw1
        if not apdu.data:  # status only
            if pw in self._verified:
                return b""
            if record.blocked:
                raise ApduError(SW.AUTH_METHOD_BLOCKED)
            raise ApduError(0x63C0 | min(record.remaining, 15))
        if record.blocked:
            raise ApduError(SW.AUTH_METHOD_BLOCKED)
        if not self._check(state, record, apdu.data):
            self._forget(pw)
            raise ApduError(SW_WRONG_PIN)
        self._save(state)
        self._verified.add(pw)
        return b""

    def _change_reference(self, apdu: Apdu, state: CardState) -> bytes:
        if apdu.p1 != 0x00 or apdu.p2 not in (PW.USER, PW.ADMIN):
            raise _wrong_p1p2()
        pw = PW(apdu.p2)
        record, minimum = (state.pw3, MIN_PW3) if pw is PW.ADMIN else (state.pw1, MIN_PW1)
        if record.blocked:
            raise ApduError(SW.AUTH_METHOD_BLOCKED)
        size = len(record.value)
        old, new = apdu.data[:size], apdu.data[size:]
        if not self._check(state, record, old):
            self._forget(pw)
            raise ApduError(SW_WRONG_PIN)
        if not _pin_ok(new, minimum):
            self._save(state)
            raise ApduError(SW.WRONG_LENGTH)
        record.value = new
        self._save(state)
        return b""

    def _reset_retry(self, apdu: Apdu, state: CardState) -> bytes:
        if apdu.p2 != PW.USER:
            raise _wrong_p1p2()
        if apdu.p1 == 0x00:  # resetting code + new PIN
            rc = state.rc
            if rc.blocked:
                raise ApduError(SW.AUTH_METHOD_BLOCKED)
            size = len(rc.value)
            if not self._check(state, rc, apdu.data[:size]):
                raise ApduError(SW_WRONG_PIN)
            new = apdu.data[size:]
        elif apdu.p1 == 0x02:  # new PIN, with PW3 verified
            self._require(PW.ADMIN)
            new = apdu.data
        else:
            raise _wrong_p1p2()
        if not _pin_ok(new, MIN_PW1):
            self._save(state)
            raise ApduError(SW.WRONG_LENGTH)
        state.pw1 = PinRecord(new, state.pw1.total, state.pw1.total)
        self._save(state)
        return b""

    def _set_pin_retries(self, apdu: Apdu, state: CardState) -> bytes:
        """Yubico's SET PIN RETRIES: PW1, RC and PW3 tries; the counters start full."""
        if (apdu.p1, apdu.p2) != (0, 0):
            raise _wrong_p1p2()
        self._require(PW.ADMIN)
        if len(apdu.data) != 3:
            raise ApduError(SW.WRONG_LENGTH)
        pw1, rc, pw3 = apdu.data
        if not (1 <= pw1 <= MAX_RETRIES and 0 <= rc <= MAX_RETRIES and 1 <= pw3 <= MAX_RETRIES):
            raise ApduError(SW.INCORRECT_PARAMETERS)
        for record, total in ((state.pw1, pw1), (state.rc, rc), (state.pw3, pw3)):
            record.total = record.remaining = total
        self._save(state)
        return b""

    # -- data objects -----------------------------------------------------------------------
    def _get_data(self, apdu: Apdu, state: CardState) -> bytes:
        tag = _tag(apdu)
        slot = _SLOT_BY_DO.get(tag)
        if slot is not None and tag == slot.attributes_do:
            return state.key(slot.name).attributes
        if slot is not None and tag == slot.uif_do:
            return objects.uif(state, slot.name)
        if tag in _PLAIN_OBJECTS and tag not in (DO.NAME, DO.LANGUAGE, DO.SEX):
            if tag in _PRIVATE_READ:
                self._require(_PRIVATE_READ[tag])
            return state.objects.get(object_name(tag), b"")
        if tag == DO.CARDHOLDER_CERTIFICATE:
            return self._certificate_record(state).certificate
        computed: dict[int, Callable[[], bytes]] = {
            DO.AID: lambda: objects.aid(self.key.serial),
            DO.HISTORICAL_BYTES: lambda: HISTORICAL_BYTES,
            DO.CARDHOLDER_RELATED_DATA: lambda: objects.cardholder_related_data(state),
            DO.APPLICATION_RELATED_DATA:
                lambda: objects.application_related_data(state, self.key.serial),
            DO.SECURITY_SUPPORT_TEMPLATE: lambda: objects.security_support_template(state),
            DO.EXTENDED_LENGTH_INFO: objects.extended_length_info,
            DO.GENERAL_FEATURE_MANAGEMENT: objects.general_feature_management,
            DO.EXTENDED_CAPABILITIES: objects.extended_capabilities,
            DO.PW_STATUS_BYTES: lambda: objects.pw_status(state),
            DO.FINGERPRINTS: lambda: objects.fingerprints(state),
            DO.CA_FINGERPRINTS: lambda: objects.ca_fingerprints(state),
            DO.GENERATION_TIMES: lambda: objects.generation_times(state),
            DO.KEY_INFORMATION: lambda: objects.key_information(state),
            DO.ALGORITHM_INFORMATION: objects.algorithm_info,
            DO.KDF: lambda: state.kdf,
            DO.ATT_CERTIFICATE: lambda: state.key(ATT.name).certificate,
        }
        build = computed.get(tag)
        if build is None:
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        return build()

    def _certificate_record(self, state: CardState) -> KeyRecord:
        slot = SLOT_BY_OCCURRENCE.get(self._occurrence)
        if slot is None:
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        return state.key(slot.name)

    def _select_data(self, apdu: Apdu, state: CardState) -> bytes:
        """Pick the cardholder certificate (occurrence P1: 0 AUT, 1 DEC, 2 SIG)."""
        if apdu.p2 != 0x04 or apdu.p1 not in SLOT_BY_OCCURRENCE:
            raise _wrong_p1p2()
        data = apdu.data
        if data[:1] == bytes([len(_CERTIFICATE_TAG_LIST)]):  # firmware up to 5.4.3's form
            data = data[1:]
        if data != _CERTIFICATE_TAG_LIST:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        self._occurrence = apdu.p1
        return b""

    def _get_next_data(self, apdu: Apdu, state: CardState) -> bytes:
        if _tag(apdu) != DO.CARDHOLDER_CERTIFICATE:
            raise _wrong_p1p2()
        self._occurrence += 1
        return self._certificate_record(state).certificate

    def _put_data(self, apdu: Apdu, state: CardState) -> bytes:
        tag, data = _tag(apdu), apdu.data
        self._require(_PRIVATE_WRITE.get(tag, PW.ADMIN))
        slot = _SLOT_BY_DO.get(tag)
        if tag in _PLAIN_OBJECTS:
            if len(data) > _PLAIN_OBJECTS[tag]:
                raise ApduError(SW.WRONG_LENGTH)
            state.objects[object_name(tag)] = data
        elif tag in (DO.CARDHOLDER_CERTIFICATE, DO.ATT_CERTIFICATE):
            if len(data) > MAX_CERTIFICATE:
                raise ApduError(SW.WRONG_LENGTH)
            record = state.key(ATT.name) if tag == DO.ATT_CERTIFICATE \
                else self._certificate_record(state)
            record.certificate = data
        elif slot is not None:
            self._put_slot_data(slot, tag, data, state.key(slot.name))
        elif tag in CA_FINGERPRINT_DOS:
            if len(data) != FINGERPRINT_LEN:
                raise ApduError(SW.WRONG_LENGTH)
            state.ca_fingerprints[CA_FINGERPRINT_DOS.index(DO(tag))] = data
        elif tag == DO.PW_STATUS_BYTES:
            if len(data) != 1:
                raise ApduError(SW.WRONG_LENGTH)
            if data[0] not in (0, 1):
                raise ApduError(SW.INCORRECT_PARAMETERS)
            state.signature_pin_policy = data[0]
        elif tag == DO.RESETTING_CODE:
            if data and not _pin_ok(data, MIN_RC):
                raise ApduError(SW.WRONG_LENGTH)
            state.rc = PinRecord(data, state.rc.total, state.rc.total if data else 0)
        elif tag == DO.KDF:
            self._put_kdf(data, state)
        else:
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        self._save(state)
        return b""

    @staticmethod
    def _put_slot_data(slot: KeySlot, tag: int, data: bytes, record: KeyRecord) -> None:
        if tag == slot.attributes_do:
            attributes = Attributes.parse(data)
            if not attributes.fits(slot):
                raise ApduError(SW.INCORRECT_PARAMETERS)
            if attributes.key_type != record.key_type.key_type:  # a new type deletes the key
                record.attributes = bytes(attributes)
                record.delete_key()
        elif tag == slot.fingerprint_do:
            if len(data) != FINGERPRINT_LEN:
                raise ApduError(SW.WRONG_LENGTH)
            record.fingerprint = data
        elif tag == slot.generation_time_do:
            if len(data) != 4:
                raise ApduError(SW.WRONG_LENGTH)
            record.generated_at = int.from_bytes(data, "big")
        else:  # user interaction flag
            if len(data) != 2:
                raise ApduError(SW.WRONG_LENGTH)
            if data[0] not in UIF._value2member_map_ or data[1] != BUTTON:
                raise ApduError(SW.INCORRECT_PARAMETERS)
            if record.uif.is_fixed:
                raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
            record.uif = UIF(data[0])

    @staticmethod
    def _put_kdf(data: bytes, state: CardState) -> None:
        """Switch the PIN KDF: PW1 and PW3 go back to their defaults (hashed by the new
        KDF's initial values), the resetting code is cleared."""
        fields = tlv.parse_dict(data)
        algorithm = fields.get(0x81, b"")
        if algorithm == KDF_NONE[2:]:
            pw1, pw3 = DEFAULT_PW1, DEFAULT_PW3
        elif algorithm == bytes([KDF_ITERSALTED_S2K]):
            hash_id = fields.get(0x82, b"")
            size = _KDF_HASH_LEN.get(hash_id[0]) if len(hash_id) == 1 else None
            pw1, pw3 = fields.get(0x87, b""), fields.get(0x88, b"")
            if size is None or len(fields.get(0x83, b"")) != 4 \
                    or len(fields.get(0x84, b"")) != 8 or len(pw1) != size or len(pw3) != size:
                raise ApduError(SW.INCORRECT_PARAMETERS)
        else:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        state.kdf = data
        state.pw1 = PinRecord(pw1, state.pw1.total, state.pw1.total)
        state.pw3 = PinRecord(pw3, state.pw3.total, state.pw3.total)
        state.rc = PinRecord(b"", state.rc.total, 0)

    # -- keys -------------------------------------------------------------------------------
    def _generate(self, apdu: Apdu, state: CardState) -> bytes:
        slot = _SLOT_BY_CRT.get(apdu.data)
        if apdu.p2 != 0x00 or apdu.p1 not in (GENERATE, READ_PUBLIC):
            raise _wrong_p1p2()
        if slot is None:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        record = state.key(slot.name)
        if apdu.p1 == READ_PUBLIC:
            private = self._private(record)
            return keys.public_key_template(record.key_type, private.public_key())
        self._require(PW.ADMIN)
        if slot is ATT:
            raise ApduError(SW.INCORRECT_PARAMETERS)  # the attestation key is imported
        attributes = record.key_type
        private = keys.generate(attributes)
        self._store_key(state, slot, record, private, KEY_STATUS.GENERATED)
        return keys.public_key_template(attributes, private.public_key())

    def _store_key(self, state: CardState, slot: KeySlot, record: KeyRecord,
                   private: keys.PrivateKey, status: KEY_STATUS) -> None:
        record.delete_key()
        record.private, record.status = keys.to_der(private), status
        self._loaded[record.private] = private
        if slot is SIG:
            state.signature_counter = 0
        self._save(state)

    def _import_key(self, apdu: Apdu, state: CardState) -> bytes:
        """PUT DATA ``3FFF``: ``4D { CRT, 7F48 { tags and lengths }, 5F48 { values } }``."""
        if (apdu.p1, apdu.p2) != (0x3F, 0xFF):
            raise _wrong_p1p2()
        self._require(PW.ADMIN)
        items = tlv.parse(tlv.unpack(TAG_EXTENDED_HEADER_LIST, apdu.data))
        if len(items) != 3 or items[1][0] != TAG_PRIVATE_KEY_TEMPLATE \
                or items[2][0] != TAG_PRIVATE_KEY_DATA:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        slot = _SLOT_BY_CRT.get(tlv.tlv(*items[0]))
        if slot is None:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        values = items[2][1]
        fields: dict[int, bytes] = {}
        offset = 0
        for tag, length in tlv.parse_headers(items[1][1]):
            if tag in fields or offset + length > len(values):
                raise ApduError(SW.INCORRECT_PARAMETERS)
            fields[tag] = values[offset:offset + length]
            offset += length
        if offset != len(values):
            raise ApduError(SW.INCORRECT_PARAMETERS)
        record = state.key(slot.name)
        private = keys.from_template(record.key_type, fields)
        self._store_key(state, slot, record, private, KEY_STATUS.IMPORTED)
        return b""

    def _use(self, state: CardState, slot: KeySlot, what: str) -> tuple[Attributes,
                                                                           keys.PrivateKey]:
        record = state.key(slot.name)
        private = self._private(record)
        self._touch(record, what)
        return record.key_type, private

    def _pso(self, apdu: Apdu, state: CardState) -> bytes:
        if (apdu.p1, apdu.p2) == PSO_CDS:
            self._require(PW.USER)
            attributes, private = self._use(state, SIG, "sign")
            signature = keys.sign(attributes, private, apdu.data)
            if state.signature_pin_policy == 0:  # PW1 is good for one signature
                self._verified.discard(PW.USER)
            state.signature_counter = min(state.signature_counter + 1, SIGNATURE_COUNTER_MAX)
            self._save(state)
            return signature
        if (apdu.p1, apdu.p2) == PSO_DECIPHER:
            self._require(PW.USER_OTHER)
            attributes, private = self._use(state, DEC, "decrypt")
            return keys.decipher(attributes, private, apdu.data)
        raise _wrong_p1p2()

    def _internal_authenticate(self, apdu: Apdu, state: CardState) -> bytes:
        if (apdu.p1, apdu.p2) != (0, 0):
            raise _wrong_p1p2()
        self._require(PW.USER_OTHER)
        attributes, private = self._use(state, AUT, "authenticate")
        return keys.sign(attributes, private, apdu.data)

    def _get_attestation(self, apdu: Apdu, state: CardState) -> bytes:
        """Yubico's GET ATTESTATION: the ATT key certifies a generated key; the
        certificate becomes that key's cardholder certificate."""
        slot = next((s for s in (SIG, DEC, AUT) if s.ref == apdu.p1), None)
        if slot is None or apdu.p2 != 0x00:
            raise _wrong_p1p2()
        self._require(PW.USER, PW.USER_OTHER)
        record = state.key(slot.name)
        public = self._private(record).public_key()
        if record.status is not KEY_STATUS.GENERATED:
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED)  # only keys born on the card
        att = state.key(ATT.name)
        if not att.certificate:
            raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
        signer = self._private(att)
        self._touch(att, "attest")
        what = attestation.Attested(
            slot=slot.name.upper(), public_key=public,
            cardholder_name=state.objects.get(object_name(DO.NAME), b""),
            fingerprint=record.fingerprint, generated_at=record.generated_at,
            signature_counter=state.signature_counter if slot is SIG else None,
            uif=record.uif, serial=self.key.serial, version=self.key.version,
            form_factor=getattr(self.key.profile, "form_factor", FORM_FACTOR_USB_A_KEYCHAIN))
        try:
            record.certificate = attestation.attest(signer=signer, signer_cert=att.certificate,
                                                    what=what)
        except ValueError:  # an ATT certificate or key the card cannot sign with
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED) from None
        self._save(state)
        return b""

    # -- the rest ---------------------------------------------------------------------------
    def _get_challenge(self, apdu: Apdu, state: CardState) -> bytes:
        if (apdu.p1, apdu.p2) != (0, 0):
            raise _wrong_p1p2()
        if not 0 < apdu.ne <= MAX_CHALLENGE:
            raise ApduError(SW.WRONG_LENGTH)
        return os.urandom(apdu.ne)

    def _terminate(self, apdu: Apdu, state: CardState) -> bytes:
        """TERMINATE DF: with PW3 verified, or once PW3 is blocked."""
        if (apdu.p1, apdu.p2) != (0, 0):
            raise _wrong_p1p2()
        if not state.pw3.blocked:
            self._require(PW.ADMIN)
        state.terminated = True
        self._save(state)
        self.power_cycle()
        return b""

    def _activate(self, apdu: Apdu, state: CardState) -> bytes:
        """ACTIVATE FILE: a terminated application starts afresh (factory reset); an
        operational one ignores it."""
        if (apdu.p1, apdu.p2) != (0, 0):
            raise _wrong_p1p2()
        if state.terminated:
            self._save(state.factory_reset())
            self.power_cycle()
        return b""

    def _get_version(self, apdu: Apdu, state: CardState) -> bytes:
        return objects.version_bcd(self.key.version)

    _HANDLERS: dict[int, Callable[[OpenPgpApplet, Apdu, CardState], bytes]] = {
        INS_VERIFY: _verify,
        INS_CHANGE_REFERENCE: _change_reference,
        INS_RESET_RETRY: _reset_retry,
        INS_GET_DATA: _get_data,
        INS_SELECT_DATA: _select_data,
        INS_GET_NEXT_DATA: _get_next_data,
        INS_PUT_DATA: _put_data,
        INS_PUT_DATA_ODD: _import_key,
        INS_GENERATE_ASYM: _generate,
        INS_PSO: _pso,
        INS_INTERNAL_AUTHENTICATE: _internal_authenticate,
        INS_GET_CHALLENGE: _get_challenge,
        INS_TERMINATE: _terminate,
        INS_ACTIVATE: _activate,
        INS_GET_VERSION: _get_version,
        INS_SET_PIN_RETRIES: _set_pin_retries,
        INS_GET_ATTESTATION: _get_attestation,
    }

