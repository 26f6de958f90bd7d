"""GET DATA objects of the Security Domain, as yubikit's ``SecurityDomainSession`` reads them.

* ``00E0`` key information: one ``C0`` template per key (KID, KVN, then type and length of
  each component: ``88 10`` for each SCP03 key, ``B1 20 F0 01`` for a card key pair,
  ``B0 41 F0 01`` for an OCE CA's public key);
* ``0066`` card recognition data (GPC 2.3 H.2): the ``73`` template with the GP OID, the
  GP version (2.3.1), the card identification scheme and the two secure channel
  protocols, SCP03 (i = ``60``) and SCP11;
* ``FF33`` / ``FF34`` the KLOC / KLCC CA identifiers: ``42 {SKI} 83 {KID KVN}`` pairs;
* ``BF21`` with ``A6 {83 {KID KVN}}`` the key's certificate bundle (DER, leaf last).

A missing object answers ``6A88``.
"""

from __future__ import annotations

from hwtoken.emulator import tlv
from hwtoken.emulator.applets.securitydomain.handshake import SCP03_I
from hwtoken.emulator.applets.securitydomain.records import SdState
from hwtoken.emulator.iso7816 import SW, ApduError

TAG_KEY_INFORMATION = 0x00E0
TAG_CARD_RECOGNITION = 0x0066
TAG_KLOC_IDENTIFIERS = 0xFF33
TAG_KLCC_IDENTIFIERS = 0xFF34
TAG_CERTIFICATE_STORE = 0xBF21

GP_OID = bytes.fromhex("2A864886FC6B")  # 1.2.840.114283 (GlobalPlatform)
SCP11_I = 0x07  # SCP11a, b and c
_OID = 0x06


def _oid(*arcs: int) -> bytes:
    return tlv.tlv(_OID, GP_OID + bytes(arcs))


CARD_RECOGNITION = tlv.tlv(0x73, b"".join([
    _oid(0x01),  # card recognition data
    tlv.tlv(0x60, _oid(0x02, 0x02, 0x03, 0x01)),  # card management: GP 2.3.1
    tlv.tlv(0x63, _oid(0x03)),  # card identification scheme
    tlv.tlv(0x64, _oid(0x04, 0x03, SCP03_I)),  # SCP03
    tlv.tlv(0x64, _oid(0x04, 0x11, SCP11_I)),  # SCP11
]))


def key_information(state: SdState) -> bytes:
    out = []
    for keyset in state.scp03:
        out += [tlv.tlv(0xC0, bytes([kid, kvn, 0x88, 0x10])) for kid, kvn in keyset.refs]
    for key in state.ec_keys:
        component = b"\xb1\x20" if key.private else b"\xb0\x41"
        out.append(tlv.tlv(0xC0, bytes([key.kid, key.kvn]) + component + b"\xf0\x01"))
    return b"".join(out)


def ca_identifiers(state: SdState, klcc: bool) -> bytes:
    out = b"".join(tlv.tlv(0x42, ca.ski) + tlv.tlv(0x83, bytes(ref))
                   for ref, ca in state.ca_identifiers.items() if ca.klcc == klcc)
    if not out:
        raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
    return out


def certificate_bundle(state: SdState, data: bytes) -> bytes:
    control = tlv.parse_dict(tlv.unpack(0xA6, data))
    ref = control.get(0x83, b"")
    if len(ref) != 2:
        raise ApduError(SW.INCORRECT_PARAMETERS)
    bundle = state.certificates.get((ref[0], ref[1]))
    if not bundle:
        raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
    return b"".join(bundle)


def get_data(state: SdState, tag: int, data: bytes) -> bytes:
    """The GET DATA answer for ``tag`` (P1 P2)."""
    if tag == TAG_KEY_INFORMATION:
        return key_information(state)
    if tag == TAG_CARD_RECOGNITION:
        return CARD_RECOGNITION
    if tag in (TAG_KLOC_IDENTIFIERS, TAG_KLCC_IDENTIFIERS):
        return ca_identifiers(state, klcc=tag == TAG_KLCC_IDENTIFIERS)
    if tag == TAG_CERTIFICATE_STORE:
        return certificate_bundle(state, data)
    raise ApduError(SW.REFERENCE_DATA_NOT_FOUND)
