"""Key management commands of the Security Domain, parsed: PUT KEY, GENERATE KEY, DELETE
KEY and STORE DATA (GPC 2.3 11.8, 11.5, 11.11; Yubico's GENERATE KEY), as yubikit's
``SecurityDomainSession`` sends them.

PUT KEY data is the new KVN, then each key as components (``88`` AES, ``B1`` EC private,
``B0`` EC public, ``F0`` curve parameters) followed by the length of its check value and
the check value. Secret components come encrypted with the session's DEK (AES-CBC, zero
ICV). Malformed input raises :class:`~hwtoken.emulator.iso7816.ApduError` ``6A80``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from hwtoken.emulator import tlv
from hwtoken.emulator.applets.securitydomain.attestation import private_key
from hwtoken.emulator.applets.securitydomain.handshake import load_point
from hwtoken.emulator.applets.securitydomain.records import (
    KID_SCP03,
    KLOC_KIDS,
    SCP11_KIDS,
    Ref,
)
from hwtoken.emulator.iso7816 import SW, ApduError
from hwtoken.emulator.scp import cbc, kcv

KEY_TYPE_AES = 0x88
KEY_TYPE_EC_PUBLIC = 0xB0
KEY_TYPE_EC_PRIVATE = 0xB1
KEY_TYPE_EC_PARAMETERS = 0xF0
CURVE_P256 = b"\x00"
AES_KEY_LEN = 16
EC_SCALAR_LEN = 32
WRONG_CHECK_VALUE = 0x9485  # GPC 11.8.3.2: invalid key check value

TAG_CONTROL_REFERENCE = 0xA6
TAG_KEY_REFERENCE = 0x83
TAG_KLCC_FLAG = 0x80
TAG_SKI = 0x42
TAG_CERTIFICATE_STORE = 0xBF21
TAG_ALLOWLIST = 0x70
TAG_SERIAL = 0x93
TAG_DELETE_KID = 0xD0
TAG_DELETE_KVN = 0xD2


def _bad() -> ApduError:
    return ApduError(SW.INCORRECT_PARAMETERS)


def split_keys(data: bytes) -> list[tuple[list[tuple[int, bytes]], bytes]]:
    """The keys of a PUT KEY key data field: each its components and its check value."""
    keys: list[tuple[list[tuple[int, bytes]], bytes]] = []
    components: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        if data[i] >= 0x80:  # a component's type (all are >= 80)
            tag, value, i = tlv.read_one(data, i)
            components.append((tag, value))
            continue
        size = data[i]
        if not components or i + 1 + size > len(data):
            raise _bad()
        keys.append((components, bytes(data[i + 1:i + 1 + size])))
        components = []
        i += 1 + size
    if components or not keys:
        raise _bad()
    return keys


@dataclass(frozen=True)
class PutKey:
    """What a PUT KEY brings: SCP03 static keys (enc, mac, dek) or one EC key."""

    kvn: int
    scp03: tuple[bytes, bytes, bytes] | None = None
    private: bytes = b""
    public: bytes = b""
    check_values: bytes = b""  # what the card answers after the KVN


def parse_put_key(kid: int, data: bytes, dek: bytes | None) -> PutKey:
    """The key of a PUT KEY for ``kid``, decrypted with the session's ``dek``."""
    if not data:
        raise _bad()
    kvn, keys = data[0], split_keys(data[1:])
    if kid == KID_SCP03:
        if len(keys) != 3 or dek is None:
            raise _bad()
        plain: list[bytes] = []
        for components, check in keys:
            if len(components) != 1 or components[0][0] != KEY_TYPE_AES \
                    or len(components[0][1]) != AES_KEY_LEN:
                raise _bad()
            key = cbc(dek, components[0][1], decrypt=True)
            if check and check != kcv(key)[:len(check)]:
                raise ApduError(WRONG_CHECK_VALUE)
            plain.append(key)
        return PutKey(kvn, scp03=(plain[0], plain[1], plain[2]),
                      check_values=b"".join(kcv(k) for k in plain))
    if len(keys) != 1:
        raise _bad()
    components, _check = keys[0]
    parts = dict(components)
    if len(parts) != 2 or parts.get(KEY_TYPE_EC_PARAMETERS) != CURVE_P256:
        raise _bad()
    if kid in SCP11_KIDS:
        encrypted = parts.get(KEY_TYPE_EC_PRIVATE, b"")
        if dek is None or len(encrypted) != EC_SCALAR_LEN:
            raise _bad()
        scalar = cbc(dek, encrypted, decrypt=True)
        try:
            private_key(scalar)
        except ValueError:
            raise _bad() from None
        return PutKey(kvn, private=scalar)
    if kid in KLOC_KIDS:
        point = parts.get(KEY_TYPE_EC_PUBLIC, b"")
        load_point(point)
        return PutKey(kvn, public=point)
    raise _bad()


def parse_generate(data: bytes) -> int:
    """The KVN of a GENERATE KEY (P-256 only)."""
    if not data:
        raise _bad()
    if tlv.parse_dict(data[1:]) != {KEY_TYPE_EC_PARAMETERS: CURVE_P256}:
        raise _bad()
    return data[0]


def parse_delete(data: bytes) -> tuple[int, int]:
    """(KID, KVN) of a DELETE KEY; 0 matches any, at least one is given."""
    fields = tlv.parse_dict(data)
    if not fields or set(fields) - {TAG_DELETE_KID, TAG_DELETE_KVN} \
            or any(len(v) != 1 for v in fields.values()):
        raise _bad()
    kid = fields.get(TAG_DELETE_KID, b"\0")[0]
    kvn = fields.get(TAG_DELETE_KVN, b"\0")[0]
    if not kid and not kvn:
        raise _bad()
    return kid, kvn


@dataclass(frozen=True)
class StoreData:
    """One STORE DATA: for key ``ref``, a CA identifier, a certificate bundle and/or an
    allowlist (None: not given; an empty list removes)."""

    ref: Ref
    ca_identifier: tuple[bool, bytes] | None = None
    certificates: list[bytes] | None = None
    allowlist: list[int] | None = None


def _certificates(value: bytes) -> list[bytes]:
    out = []
    i = 0
    while i < len(value):
        _, _, end = tlv.read_one(value, i)
        der = bytes(value[i:end])
        try:
            x509.load_der_x509_certificate(der)
        except ValueError:
            raise _bad() from None
        out.append(der)
        i = end
    return out


def parse_store_data(data: bytes) -> StoreData:
    """A STORE DATA of yubikit's: ``A6 {83 ref [80 klcc] [42 ski]}`` then ``BF21`` or
    ``70``."""
    items = tlv.parse(data)
    if not items or items[0][0] != TAG_CONTROL_REFERENCE:
        raise _bad()
    control = tlv.parse_dict(items[0][1])
    ref = control.get(TAG_KEY_REFERENCE, b"")
    if len(ref) != 2:
        raise _bad()
    ca = None
    if TAG_SKI in control:
        ca = (control.get(TAG_KLCC_FLAG, b"\0") == b"\1", control[TAG_SKI])
    certificates = allowlist = None
    for tag, value in items[1:]:
        if tag == TAG_CERTIFICATE_STORE and certificates is None:
            certificates = _certificates(value)
        elif tag == TAG_ALLOWLIST and allowlist is None:
            allowlist = []
            for inner, serial in tlv.parse(value):
                if inner != TAG_SERIAL or not serial:
                    raise _bad()
                allowlist.append(int.from_bytes(serial, "big"))
        else:
            raise _bad()
    if ca is None and certificates is None and allowlist is None:
        raise _bad()
    return StoreData((ref[0], ref[1]), ca, certificates, allowlist)
