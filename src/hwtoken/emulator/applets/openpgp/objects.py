"""The OpenPGP card's constructed and computed data objects, built from a
:class:`~.records.CardState` and the key's identity, laid out as a YubiKey 5.7 sends them.

Application related data (``6E``)::

    6E { 4F AID, 5F52 historical bytes, 7F66 extended length information,
         7F74 general feature management,
         73 { C0 extended capabilities, C1 C2 C3 DA algorithm attributes, C4 PW status,
              C5 fingerprints, C6 CA fingerprints, CD generation times,
              DE key information, D6 D7 D8 D9 user interaction flags } }

ykman parses the outer ``6E`` (and ``65``, ``7A``) strictly, scdaemon reads ``4F``, ``C4``
and ``C0`` on their own: each is also answered alone.
"""

from __future__ import annotations

import struct

from hwtoken.emulator import tlv
from hwtoken.emulator.applets.openpgp.algorithms import algorithm_information
from hwtoken.emulator.applets.openpgp.constants import (
    AID_PREFIX,
    AID_VERSION,
    BUTTON,
    DO,
    EXTENDED_CAPABILITY_FLAGS,
    HISTORICAL_BYTES,
    MANUFACTURER_YUBICO,
    MAX_CERTIFICATE,
    MAX_CHALLENGE,
    MAX_PIN,
    MAX_SPECIAL_DO,
    SLOTS,
)
from hwtoken.emulator.applets.openpgp.records import CardState, object_name


def serial_bcd(serial: int) -> bytes:
    """The serial as the AID carries it: 8 BCD digits (a larger one as a plain number)."""
    if serial < 10**8:
        return bytes.fromhex(f"{serial:08d}")
    return serial.to_bytes(4, "big")


def aid(serial: int) -> bytes:
    """The full AID: RID, PIX, version 3.4, manufacturer Yubico (0006), serial, RFU."""
    return AID_PREFIX + AID_VERSION + MANUFACTURER_YUBICO + serial_bcd(serial) + b"\0\0"


def version_bcd(version: tuple[int, int, int]) -> bytes:
    """GET VERSION's answer: each part of the firmware version in BCD."""
    return bytes(((v // 10) << 4) | (v % 10) for v in version)


def extended_capabilities() -> bytes:
    return struct.pack(">BBHHHBB", EXTENDED_CAPABILITY_FLAGS, 0, MAX_CHALLENGE,
                       MAX_CERTIFICATE, MAX_SPECIAL_DO, 0, 0)


def extended_length_info() -> bytes:
    """``7F66``: the longest command and answer (both the challenge maximum)."""
    size = MAX_CHALLENGE.to_bytes(2, "big")
    return tlv.tlv(0x02, size) + tlv.tlv(0x02, size)


def general_feature_management() -> bytes:
    return tlv.tlv(0x81, bytes([BUTTON]))


def pw_status(state: CardState) -> bytes:
    """``C4``: signature PIN policy, maximum lengths, tries left for PW1, RC and PW3."""
    return bytes([state.signature_pin_policy, MAX_PIN, MAX_PIN, MAX_PIN,
                  state.pw1.shown_remaining, state.rc.shown_remaining,
                  state.pw3.shown_remaining])


def fingerprints(state: CardState) -> bytes:
    return b"".join(state.key(s.name).fingerprint for s in SLOTS)


def ca_fingerprints(state: CardState) -> bytes:
    return b"".join(state.ca_fingerprints)


def generation_times(state: CardState) -> bytes:
    return b"".join(struct.pack(">I", state.key(s.name).generated_at) for s in SLOTS)


def key_information(state: CardState) -> bytes:
    """``DE``: each key reference and whether its key is absent, generated or imported."""
    return b"".join(bytes([s.ref, state.key(s.name).status]) for s in SLOTS)


def uif(state: CardState, slot_name: str) -> bytes:
    return bytes([state.key(slot_name).uif, BUTTON])


def cardholder_related_data(state: CardState) -> bytes:
    """``65 { 5B name, 5F2D language, 5F35 sex }``."""
    body = b"".join(tlv.tlv(tag, state.objects.get(object_name(tag), b""))
                    for tag in (DO.NAME, DO.LANGUAGE, DO.SEX))
    return tlv.tlv(DO.CARDHOLDER_RELATED_DATA, body)


def security_support_template(state: CardState) -> bytes:
    """``7A { 93 signature counter (3 bytes) }``."""
    return tlv.tlv(DO.SECURITY_SUPPORT_TEMPLATE, tlv.tlv(
        DO.SIGNATURE_COUNTER, state.signature_counter.to_bytes(3, "big")))


def algorithm_info() -> bytes:
    """``FA``: every algorithm attribute each slot accepts."""
    return tlv.tlv(DO.ALGORITHM_INFORMATION,
                   b"".join(tlv.tlv(tag, value) for tag, value in algorithm_information()))


def discretionary(state: CardState) -> bytes:
    parts = [tlv.tlv(DO.EXTENDED_CAPABILITIES, extended_capabilities())]
    parts += [tlv.tlv(s.attributes_do, state.key(s.name).attributes) for s in SLOTS]
    parts += [tlv.tlv(DO.PW_STATUS_BYTES, pw_status(state)),
              tlv.tlv(DO.FINGERPRINTS, fingerprints(state)),
              tlv.tlv(DO.CA_FINGERPRINTS, ca_fingerprints(state)),
              tlv.tlv(DO.GENERATION_TIMES, generation_times(state)),
              tlv.tlv(DO.KEY_INFORMATION, key_information(state))]
    parts += [tlv.tlv(s.uif_do, uif(state, s.name)) for s in SLOTS]
    return tlv.tlv(DO.DISCRETIONARY, b"".join(parts))


def application_related_data(state: CardState, serial: int) -> bytes:
    return tlv.tlv(DO.APPLICATION_RELATED_DATA, b"".join([
        tlv.tlv(DO.AID, aid(serial)),
        tlv.tlv(DO.HISTORICAL_BYTES, HISTORICAL_BYTES),
        tlv.tlv(DO.EXTENDED_LENGTH_INFO, extended_length_info()),
        tlv.tlv(DO.GENERAL_FEATURE_MANAGEMENT, general_feature_management()),
        discretionary(state),
    ]))
