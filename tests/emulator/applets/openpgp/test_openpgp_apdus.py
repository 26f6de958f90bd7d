"""The OpenPGP applet at the APDU level: the management capability and its migration,
what clients other than yubikit send, and hypothesis on the TLV, attribute and command
parsing (every command gets a status word; nothing raises inside the card)."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest
from cryptography import x509
from hypothesis import example, given, settings
from hypothesis import strategies as st
from yubikit.core import TRANSPORT
from yubikit.management import CAPABILITY, DeviceConfig, ManagementSession
from yubikit.support import read_info

from hwtoken.emulator import tlv
from hwtoken.emulator.applets.management import SUPPORTED
from hwtoken.emulator.applets.openpgp.algorithms import Attributes, algorithm_information
from hwtoken.emulator.iso7816 import SW, ApduError, CardOS
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.transports.card_direct import DirectCardConnection

SELECT = bytes.fromhex("00a4040006d27600012401")
VERIFY_PW1_81 = bytes.fromhex("0020008106313233343536")
VERIFY_PW1_82 = bytes.fromhex("0020008206313233343536")
VERIFY_PW3 = bytes.fromhex("00200083083132333435363738")


@pytest.fixture
def key(tmp_path):
    k = VirtualKey.create(tmp_path / "k.key", serial=4242)
    yield k
    k.close()


def card_for(key) -> CardOS:
    card = CardOS(key, strict=True)
    card.power_on()
    assert card.transmit(SELECT) == b"\x90\x00"
    return card


def sw(resp: bytes) -> int:
    return struct.unpack(">H", resp[-2:])[0]


def apdu(ins: int, p1: int, p2: int, data: bytes = b"", cla: int = 0) -> bytes:
    if len(data) > 255:
        return bytes([cla, ins, p1, p2, 0]) + struct.pack(">H", len(data)) + data
    return bytes([cla, ins, p1, p2]) + (bytes([len(data)]) + data if data else b"")


# -- the management capability ------------------------------------------------------------------
def test_capability_is_announced_over_usb_and_nfc(key):
    info = read_info(DirectCardConnection(CardOS(key)))
    for transport in (TRANSPORT.USB, TRANSPORT.NFC):
        assert CAPABILITY.OPENPGP in info.supported_capabilities[transport]
        assert CAPABILITY.OPENPGP in info.config.enabled_capabilities[transport]


def test_key_made_before_openpgp_gains_it_but_keeps_what_its_user_disabled(tmp_path):
    path = tmp_path / "old.key"
    before = SUPPORTED & ~CAPABILITY.OPENPGP
    with VirtualKey.create(path) as k:
        mgmt = k.store.section("management")
        mgmt.clear()  # as a key from before OpenPGP stored it, PIV switched off over NFC
        mgmt.update({"usb_enabled": before, "nfc_enabled": before & ~CAPABILITY.PIV,
                     "supported": before, "auto_eject_timeout": 0, "chalresp_timeout": 15,
                     "device_flags": 0})
        del k.store.data["openpgp"]
    with VirtualKey.load(path) as k:
        info = read_info(DirectCardConnection(CardOS(k)))
        assert info.config.enabled_capabilities[TRANSPORT.USB] == SUPPORTED
        assert info.config.enabled_capabilities[TRANSPORT.NFC] == SUPPORTED & ~CAPABILITY.PIV
        assert CardOS(k).transmit(SELECT) == b"\x90\x00"  # set up on first use
    with VirtualKey.load(path) as k:
        assert k.store.data["management"]["supported"] == SUPPORTED
        assert "attestation_root" in k.store.data["openpgp"]


def test_openpgp_disabled_over_nfc_is_not_selectable_and_stays_off(key):
    ManagementSession(DirectCardConnection(CardOS(key))).write_device_config(
        DeviceConfig({TRANSPORT.NFC: SUPPORTED & ~CAPABILITY.OPENPGP}))
    assert CardOS(key).transmit(SELECT) == b"\x6a\x82"
    assert CardOS(key, transport="usb").transmit(SELECT) == b"\x90\x00"
    path = key.path
    key.close()
    with VirtualKey.load(path) as again:  # the migration does not switch it back on
        assert CardOS(again).transmit(SELECT) == b"\x6a\x82"


# -- what scdaemon and other clients send -------------------------------------------------------
def test_scdaemons_first_reads(key):
    card = card_for(key)
    assert card.transmit(apdu(0xCA, 0, 0x4F)) == bytes.fromhex(
        "d2760001240103040006000042420000 9000")
    c4 = card.transmit(apdu(0xCA, 0, 0xC4))
    assert c4 == bytes.fromhex("017f7f7f030003 9000")
    assert card.transmit(apdu(0xCA, 0, 0xC0)) == bytes.fromhex("7d000bfe080000ff0000 9000")
    assert card.transmit(apdu(0xCA, 0x5F, 0x52)) == bytes.fromhex("00730000e0059000 9000")
    assert card.transmit(apdu(0xCA, 0x7F, 0x74)) == bytes.fromhex("810120 9000")
    assert card.transmit(apdu(0xCA, 0, 0xC1)) == bytes.fromhex("010800001100 9000")
    assert card.transmit(apdu(0xCA, 0, 0xF9)) == bytes.fromhex("810100 9000")
    assert card.transmit(apdu(0xF1, 0, 0)) == bytes.fromhex("050704 9000")
    # the application related data comes in pieces (61xx, GET RESPONSE)
    first = card.transmit(apdu(0xCA, 0, 0x6E))
    assert sw(first) & 0xFF00 == 0x6100
    rest = card.transmit(bytes.fromhex("00c0000000"))
    assert sw(rest) == SW.OK
    ard = tlv.unpack(0x6E, first[:-2] + rest[:-2])
    inner = dict(tlv.parse(ard))
    assert set(inner) == {0x4F, 0x5F52, 0x7F66, 0x7F74, 0x73}
    assert [t for t, _ in tlv.parse(inner[0x73])] == [
        0xC0, 0xC1, 0xC2, 0xC3, 0xDA, 0xC4, 0xC5, 0xC6, 0xCD, 0xDE, 0xD6, 0xD7, 0xD8, 0xD9]


def test_wrong_class_instruction_and_parameters(key):
    card = card_for(key)
    # secure messaging (CLA 0x0C) with no secure channel open: the card OS of a 5.7.2+ key,
    # which has the Security Domain, refuses it before OpenPGP sees it
    assert sw(card.transmit(apdu(0xCA, 0, 0x4F, cla=0x0C))) == SW.SECURITY_CONDITION_NOT_SATISFIED
    assert sw(card.transmit(apdu(0xFB, 1, 0))) == SW.SECURITY_CONDITION_NOT_SATISFIED
    assert sw(card.transmit(apdu(0xF1, 0, 0, cla=0x80))) == SW.CLASS_NOT_SUPPORTED
    assert sw(card.transmit(apdu(0x12, 0, 0))) == SW.INVALID_INSTRUCTION
    assert sw(card.transmit(apdu(0x2A, 0x9E, 0x9B, b"x"))) == SW.WRONG_PARAMETERS_P1P2
    assert sw(card.transmit(apdu(0x47, 0x82, 0, b"\xb6\x00"))) == SW.WRONG_PARAMETERS_P1P2
    assert sw(card.transmit(apdu(0x47, 0x81, 0, b"\xb7\x00"))) == SW.INCORRECT_PARAMETERS
    assert sw(card.transmit(apdu(0xE6, 0, 1))) == SW.WRONG_PARAMETERS_P1P2
    assert sw(card.transmit(apdu(0x20, 0xFF, 0x81, b"x"))) == SW.WRONG_LENGTH
    assert card.transmit(VERIFY_PW3) == b"\x90\x00"
    assert sw(card.transmit(apdu(0x47, 0x80, 0, b"\xb6\x03\x84\x01\x81"))) == \
        SW.INCORRECT_PARAMETERS  # the attestation key is not generated
    assert sw(card.transmit(apdu(0xDA, 0, 0xC4, b"\x02"))) == SW.INCORRECT_PARAMETERS
    assert sw(card.transmit(apdu(0xDA, 0, 0xC7, b"\x01" * 19))) == SW.WRONG_LENGTH
    assert sw(card.transmit(apdu(0xDA, 0, 0xD6, b"\x05\x20"))) == SW.INCORRECT_PARAMETERS
    assert sw(card.transmit(apdu(0xDA, 0, 0xD3, b"1234567"))) == SW.WRONG_LENGTH
    assert sw(card.transmit(apdu(0xDB, 0x3F, 0xFE, b""))) == SW.WRONG_PARAMETERS_P1P2


def test_key_import_as_gpg_builds_it(key):
    """gpg's template: ``4D { B6 00, 7F48 { 92 len }, 5F48 { scalar } }``, the scalar as
    an MPI (a leading zero byte dropped)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    priv = ec.derive_private_key(0x00FFEE, ec.SECP256R1())
    scalar = (0x00FFEE).to_bytes(3, "big")
    card = card_for(key)
    assert card.transmit(VERIFY_PW3) == b"\x90\x00"
    attrs = bytes([0x13]) + bytes.fromhex("2a8648ce3d030107")
    assert card.transmit(apdu(0xDA, 0, 0xC1, attrs + b"\xff")) == b"\x90\x00"  # import fmt
    assert card.transmit(apdu(0xCA, 0, 0xC1)) == attrs + b"\x90\x00"
    template = tlv.tlv(0x4D, b"\xb6\x00" + tlv.tlv(0x7F48, b"\x92\x03")
                       + tlv.tlv(0x5F48, scalar))
    assert card.transmit(apdu(0xDB, 0x3F, 0xFF, template)) == b"\x90\x00"
    public = card.transmit(apdu(0x47, 0x81, 0, b"\xb6\x00"))
    point = tlv.unpack(0x86, tlv.unpack(0x7F49, public[:-2]))
    assert ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point) == \
        priv.public_key()
    for bad in (tlv.tlv(0x4D, b"\xb6\x00" + tlv.tlv(0x7F48, b"\x92\x04")
                        + tlv.tlv(0x5F48, scalar)),  # lengths that do not add up
                tlv.tlv(0x4D, b"\xb6\x00" + tlv.tlv(0x7F48, b"\x92\x03\x92\x00")
                        + tlv.tlv(0x5F48, scalar)),  # a part twice
                tlv.tlv(0x4D, b"\xb6\x00" + tlv.tlv(0x7F48, b"\x92\x03\x99\x41")
                        + tlv.tlv(0x5F48, scalar + b"\x04" + bytes(64))),  # a wrong public
                tlv.tlv(0x4D, b"\xb9\x00" + tlv.tlv(0x7F48, b"\x92\x03")
                        + tlv.tlv(0x5F48, scalar))):  # no such key
        assert sw(card.transmit(apdu(0xDB, 0x3F, 0xFF, bad))) == SW.INCORRECT_PARAMETERS


def test_rsa_import_refuses_factors_that_are_not_prime(key):
    """The card skips OpenSSL's slow RSA check (seconds for RSA-4096, longer than a host
    waits) but a round trip through the imported key still finds composite factors."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    while True:
        small = rsa.generate_private_key(65537, 1024).private_numbers()
        q = rsa.generate_private_key(65537, 2048).private_numbers().p
        p = small.p * small.q  # 1024 bits, not a prime
        if (p * q).bit_length() == 2048 and p.bit_length() == 1024:
            break
    card = card_for(key)
    assert card.transmit(VERIFY_PW3) == b"\x90\x00"
    values = b"\x01\x00\x01" + p.to_bytes(128, "big") + q.to_bytes(128, "big")
    template = tlv.tlv(0x4D, b"\xb8\x00" + tlv.tlv(0x7F48, bytes.fromhex("91039281809381 80"))
                       + tlv.tlv(0x5F48, values))
    assert sw(card.transmit(apdu(0xDB, 0x3F, 0xFF, template))) == SW.INCORRECT_PARAMETERS
    # the same template with real primes imports
    good = rsa.generate_private_key(65537, 2048).private_numbers()
    values = b"\x01\x00\x01" + good.p.to_bytes(128, "big") + good.q.to_bytes(128, "big")
    template = tlv.tlv(0x4D, b"\xb8\x00" + tlv.tlv(0x7F48, bytes.fromhex("91039281809381 80"))
                       + tlv.tlv(0x5F48, values))
    assert card.transmit(apdu(0xDB, 0x3F, 0xFF, template)) == b"\x90\x00"


def test_command_chaining_carries_a_long_certificate(key):
    card = card_for(key)
    assert card.transmit(VERIFY_PW3) == b"\x90\x00"
    cert = bytes(range(256)) * 7  # 1792 bytes
    parts = [cert[i:i + 255] for i in range(0, len(cert), 255)]
    for part in parts[:-1]:
        assert card.transmit(apdu(0xDA, 0x7F, 0x21, part, cla=0x10)) == b"\x90\x00"
    assert card.transmit(apdu(0xDA, 0x7F, 0x21, parts[-1])) == b"\x90\x00"
    got = card.transmit(apdu(0xCA, 0x7F, 0x21) + b"\x00\x00\x00")  # extended Le
    assert got == cert + b"\x90\x00"
    too_long = b"\x30" * 2049
    assert sw(card.transmit(apdu(0xDA, 0x7F, 0x21, too_long))) == SW.WRONG_LENGTH


def test_another_applet_forgets_the_pins(key):
    card = card_for(key)
    assert card.transmit(VERIFY_PW1_82) == b"\x90\x00"
    assert card.transmit(bytes.fromhex("0020008200")) == b"\x90\x00"
    assert sw(card.transmit(bytes.fromhex("00a4040008a000000527471117"))) == SW.OK
    assert card.transmit(SELECT) == b"\x90\x00"
    assert card.transmit(bytes.fromhex("00200082")) == b"\x63\xc3"


# -- hypothesis ---------------------------------------------------------------------------------
tags = st.sampled_from([0x4D, 0x5C, 0x60, 0x86, 0x91, 0x92, 0x99, 0xA6, 0xB6, 0x5F48, 0x7F48,
                        0x7F49, 0x7F21])


@given(items=st.lists(st.tuples(tags, st.integers(0, 70000)), max_size=6))
@settings(max_examples=200)
def test_tag_length_lists_round_trip(items):
    data = b"".join(tlv.encode_tag(t) + tlv.encode_length(n) for t, n in items)
    assert tlv.parse_headers(data) == items


@given(data=st.binary(max_size=40))
@settings(max_examples=300)
def test_tag_length_lists_reject_or_accept_cleanly(data):
    try:
        items = tlv.parse_headers(data)
    except ApduError as exc:
        assert exc.sw == SW.INCORRECT_PARAMETERS
    else:
        again = b"".join(tlv.encode_tag(t) + tlv.encode_length(n) for t, n in items)
        assert tlv.parse_headers(again) == items


known_attributes = st.sampled_from([value for _, value in algorithm_information()])


@given(data=st.one_of(st.binary(max_size=14), known_attributes,
                      known_attributes.map(lambda a: a + b"\xff"),
                      known_attributes.map(lambda a: a[:-1])))
@settings(max_examples=300)
def test_algorithm_attributes_parse_or_refuse(data):
    try:
        attributes = Attributes.parse(data)
    except ApduError as exc:
        assert exc.sw in (SW.INCORRECT_PARAMETERS, SW.WRONG_LENGTH)
    else:
        assert Attributes.parse(bytes(attributes)) == attributes


OPENPGP_INS = [0x20, 0x24, 0x2A, 0x2C, 0x44, 0x47, 0x84, 0x88, 0xA5, 0xCA, 0xCC, 0xDA, 0xDB,
               0xE6, 0xF1, 0xF2, 0xFB, 0xC0]
#: P1/P2 pairs that name something: DOs, PSO modes, PIN references
P1P2 = [(0, 0x81), (0, 0x82), (0, 0x83), (0xFF, 0x81), (0x9E, 0x9A), (0x80, 0x86), (0x3F, 0xFF),
        (0x80, 0), (0x81, 0), (0, 0), (2, 0x81), (0, 0x6E), (0, 0xC1), (0, 0xC2), (0, 0xC4),
        (0, 0xC7), (0, 0xD3), (0, 0xD6), (0, 0xF9), (0x7F, 0x21), (0x5F, 0x50), (1, 0x03),
        (1, 4), (2, 4), (1, 0), (3, 0), (0, 0x5B), (0, 0xDA), (0, 0xFC)]
#: CRTs and templates a GENERATE or import may carry (no RSA: its keys take too long)
crts = st.sampled_from([b"\xb6\x00", b"\xb8\x00", b"\xa4\x00", b"\xb6\x03\x84\x01\x81",
                        b"\xb6", b"\x00"])
ec_attributes = st.sampled_from([value for _, value in algorithm_information()
                                 if value[0] != 0x01])
payload = st.one_of(
    st.binary(max_size=40), crts, ec_attributes,
    st.builds(lambda crt, n, v: tlv.tlv(0x4D, crt + tlv.tlv(0x7F48, b"\x92" + bytes([n]))
                                        + tlv.tlv(0x5F48, v)),
              crts, st.integers(0, 70), st.binary(max_size=70)),
    st.builds(lambda p: tlv.tlv(0xA6, tlv.tlv(0x7F49, tlv.tlv(0x86, p))),
              st.one_of(st.binary(max_size=70), st.just(b"\x04" + bytes(64)))),
    st.sampled_from([bytes.fromhex("60045c027f21"), bytes.fromhex("0660045c027f21"),
                     bytes.fromhex("810100"), b"\x01\x20", b"\x00"]))
command = st.tuples(st.sampled_from(OPENPGP_INS), st.sampled_from(P1P2), payload,
                    st.sampled_from([0x00, 0x00, 0x80, 0x10]))


@given(commands=st.lists(command, max_size=12), pw1=st.booleans(), pw3=st.booleans())
# TERMINATE DF, then the first part of a chain: the card OS refuses the next command of
# another instruction (6985) and drops the chain, so the ACTIVATE below must not be it
@example(commands=[(0xE6, (0, 0), b"", 0x00), (0xDA, (0, 0xC1), b"\x13", 0x10)],
         pw1=False, pw3=True)
@settings(max_examples=150)
def test_fuzzed_commands_always_get_a_status_word(tmp_path_factory, commands, pw1, pw3):
    k = VirtualKey.create(tmp_path_factory.mktemp("pgpfz") / "f.key")
    try:
        card = card_for(k)
        if pw1:
            assert card.transmit(VERIFY_PW1_81) == b"\x90\x00"
            assert card.transmit(VERIFY_PW1_82) == b"\x90\x00"
        if pw3:
            assert card.transmit(VERIFY_PW3) == b"\x90\x00"
        for ins, (p1, p2), data, cla in commands:
            if ins == 0xDA and (p1, p2) in ((0, 0xC1), (0, 0xC2), (0, 0xDA)) \
                    and data[:1] == b"\x01":
                continue  # an RSA key type: a later GENERATE would take seconds
            resp = card.transmit(apdu(ins, p1, p2, data, cla))  # strict: no exception
            assert len(resp) >= 2
        resp = card.transmit(apdu(0xCA, 0, 0x6E))  # ends a chain the commands left open
        assert len(resp) >= 2
        card.transmit(apdu(0x44, 0, 0))  # whatever happened, the card answers afterwards
        assert card.transmit(SELECT) == b"\x90\x00"
        assert sw(card.transmit(apdu(0xF1, 0, 0))) == SW.OK
    finally:
        k.close()


# -- every command's exact answers ----------------------------------------------------------------
OK = b"\x90\x00"


def get(card, tag: int) -> bytes:
    """GET DATA ``tag``: its value and status word."""
    return card.transmit(apdu(0xCA, tag >> 8, tag & 0xFF))


def put(card, tag: int, value: bytes) -> bytes:
    return card.transmit(apdu(0xDA, tag >> 8, tag & 0xFF, value))


def status(card, pw: int) -> bytes:
    return card.transmit(apdu(0x20, 0, pw))


def test_verify_status_forget_and_what_a_wrong_pin_forgets(key):
    card = card_for(key)
    assert card.transmit(apdu(0x20, 0x01, 0x81, b"123456")) == b"\x6b\x00"
    assert card.transmit(apdu(0x20, 0x00, 0x84, b"123456")) == b"\x6b\x00"
    assert card.transmit(VERIFY_PW1_81) == OK
    assert status(card, 0x81) == OK
    assert status(card, 0x82) == b"\x63\xc3"
    assert card.transmit(apdu(0x20, 0xFF, 0x81)) == OK  # forgotten
    assert status(card, 0x81) == b"\x63\xc3"
    # a wrong PW3 forgets PW3 only; a wrong PW1 (either mode) forgets both PW1 modes only
    for command in (VERIFY_PW1_81, VERIFY_PW1_82, VERIFY_PW3):
        assert card.transmit(command) == OK
    assert card.transmit(apdu(0x20, 0, 0x83, b"87654321")) == b"\x69\x82"
    assert status(card, 0x83) == b"\x63\xc2"
    assert status(card, 0x81) == OK and status(card, 0x82) == OK
    assert card.transmit(VERIFY_PW3) == OK
    assert status(card, 0x83) == OK  # the right PIN fills the counter again
    assert card.transmit(apdu(0x20, 0, 0x82, b"654321")) == b"\x69\x82"
    assert status(card, 0x81) == b"\x63\xc2" and status(card, 0x82) == b"\x63\xc2"
    assert status(card, 0x83) == OK
    # more than 15 tries left: the status word says 15
    assert card.transmit(apdu(0xF2, 0, 0, bytes([20, 0, 3]))) == OK
    assert status(card, 0x81) == b"\x63\xcf"
    # a blocked PIN: 6983 for the status and for the right PIN
    for _ in range(3):
        assert card.transmit(apdu(0x20, 0, 0x83, b"87654321")) == b"\x69\x82"
    assert status(card, 0x83) == b"\x69\x83"
    assert card.transmit(VERIFY_PW3) == b"\x69\x83"


def test_change_reference_data_lengths_and_what_a_wrong_pin_forgets(key):
    card = card_for(key)
    assert card.transmit(apdu(0x24, 0x01, 0x81, b"123456654321")) == b"\x6b\x00"
    assert card.transmit(apdu(0x24, 0x00, 0x82, b"123456654321")) == b"\x6b\x00"
    assert card.transmit(apdu(0x24, 0, 0x81, b"123456" + b"65432")) == b"\x67\x00"
    assert card.transmit(apdu(0x24, 0, 0x81, b"123456" + b"654321")) == OK  # 6: the least
    assert card.transmit(apdu(0x20, 0, 0x81, b"654321")) == OK
    assert card.transmit(apdu(0x24, 0, 0x81, b"654321" + b"7" * 128)) == b"\x67\x00"
    assert card.transmit(apdu(0x24, 0, 0x81, b"654321" + b"7" * 127)) == OK  # the most
    assert card.transmit(apdu(0x24, 0, 0x81, b"7" * 127 + b"123456")) == OK
    assert card.transmit(apdu(0x24, 0, 0x83, b"12345678" + b"1234567")) == b"\x67\x00"
    assert card.transmit(apdu(0x24, 0, 0x83, b"12345678" + b"87654321")) == OK  # 8 for PW3
    # a wrong old PW3 forgets PW3, not PW1
    assert card.transmit(VERIFY_PW1_81) == OK
    assert card.transmit(apdu(0x20, 0, 0x83, b"87654321")) == OK
    assert card.transmit(apdu(0x24, 0, 0x83, b"00000000" + b"12345678")) == b"\x69\x82"
    assert status(card, 0x83) == b"\x63\xc2"
    assert status(card, 0x81) == OK
    # and a wrong old PW1 forgets PW1
    assert card.transmit(apdu(0x24, 0, 0x81, b"000000" + b"654321")) == b"\x69\x82"
    assert status(card, 0x81) == b"\x63\xc2"
    for _ in range(2):
        assert card.transmit(apdu(0x24, 0, 0x81, b"000000" + b"654321")) == b"\x69\x82"
    assert card.transmit(apdu(0x24, 0, 0x81, b"123456" + b"654321")) == b"\x69\x83"


def test_reset_retry_counter_by_resetting_code_and_by_pw3(key):
    card = card_for(key)
    assert card.transmit(apdu(0x2C, 0x02, 0x82, b"654321")) == b"\x6b\x00"
    assert card.transmit(apdu(0x2C, 0x01, 0x81, b"654321")) == b"\x6b\x00"
    assert card.transmit(apdu(0x2C, 0x00, 0x81, b"87654321654321")) == b"\x69\x83"  # no RC
    assert card.transmit(apdu(0x2C, 0x02, 0x81, b"654321")) == b"\x69\x82"  # no PW3
    assert card.transmit(VERIFY_PW3) == OK
    assert card.transmit(apdu(0xF2, 0, 0, bytes([5, 4, 6]))) == OK
    assert card.transmit(apdu(0x20, 0, 0x81, b"000000")) == b"\x69\x82"
    assert card.transmit(apdu(0x2C, 0x02, 0x81, b"65432")) == b"\x67\x00"
    assert card.transmit(apdu(0x2C, 0x02, 0x81, b"654321")) == OK
    assert get(card, 0xC4) == bytes.fromhex("017f7f7f050006") + OK  # PW1's counter full
    assert put(card, 0xD3, b"87654321") == OK
    assert get(card, 0xC4) == bytes.fromhex("017f7f7f050406") + OK
    assert card.transmit(apdu(0x2C, 0x00, 0x81, b"00000000" + b"111111")) == b"\x69\x82"
    assert get(card, 0xC4) == bytes.fromhex("017f7f7f050306") + OK
    assert card.transmit(apdu(0x2C, 0x00, 0x81, b"87654321" + b"11111")) == b"\x67\x00"
    assert get(card, 0xC4) == bytes.fromhex("017f7f7f050406") + OK  # the RC was right
    assert card.transmit(apdu(0x2C, 0x00, 0x81, b"87654321" + b"111111")) == OK
    assert card.transmit(apdu(0x20, 0, 0x81, b"111111")) == OK
    assert put(card, 0xD3, b"") == OK  # an empty resetting code clears it
    assert get(card, 0xC4) == bytes.fromhex("017f7f7f050006") + OK
    assert card.transmit(apdu(0x2C, 0x00, 0x81, b"87654321" + b"111111")) == b"\x69\x83"


def test_set_pin_retries_bounds(key):
    card = card_for(key)
    assert card.transmit(apdu(0xF2, 0, 0, b"\x03\x03\x03")) == b"\x69\x82"
    assert card.transmit(VERIFY_PW3) == OK
    assert card.transmit(apdu(0xF2, 1, 0, b"\x03\x03\x03")) == b"\x6b\x00"
    assert card.transmit(apdu(0xF2, 0, 1, b"\x03\x03\x03")) == b"\x6b\x00"
    assert card.transmit(apdu(0xF2, 0, 0, b"\x03\x03")) == b"\x67\x00"
    assert card.transmit(apdu(0xF2, 0, 0, b"\x03\x03\x03\x03")) == b"\x67\x00"
    for bad in ((0, 3, 3), (100, 3, 3), (3, 100, 3), (3, 3, 0), (3, 3, 100)):
        assert card.transmit(apdu(0xF2, 0, 0, bytes(bad))) == b"\x6a\x80", bad
    assert card.transmit(apdu(0xF2, 0, 0, bytes([99, 99, 99]))) == OK
    assert get(card, 0xC4) == bytes.fromhex("017f7f7f630063") + OK  # no RC: shown as 0
    assert card.transmit(apdu(0xF2, 0, 0, bytes([1, 0, 1]))) == OK
    assert get(card, 0xC4) == bytes.fromhex("017f7f7f010001") + OK


def test_get_data_of_each_object_alone(key):
    card = card_for(key)
    for tag in (0x5B, 0x5F2D, 0x5F35, 0xC7, 0xCE, 0x42):  # only inside 65, or nothing
        assert get(card, tag) == b"\x6a\x88", hex(tag)
    for tag in (0x5E, 0x5F50, 0x0101, 0x0102, 0x7F21):
        assert get(card, tag) == OK, hex(tag)  # empty
    assert get(card, 0x0103) == b"\x69\x82"
    assert get(card, 0x0104) == b"\x69\x82"
    assert get(card, 0x65) == bytes.fromhex("65095b005f2d005f350139") + OK
    assert get(card, 0x5F52) == HISTORICAL + OK
    assert get(card, 0x7A) == bytes.fromhex("7a05930300 0000") + OK
    assert get(card, 0x7F66) == bytes.fromhex("02020bfe 02020bfe") + OK
    assert get(card, 0xC5) == bytes(80) + OK
    assert get(card, 0xC6) == bytes(80) + OK
    assert get(card, 0xCD) == bytes(16) + OK
    assert get(card, 0xDE) == bytes.fromhex("0100 0200 0300 8102") + OK
    assert get(card, 0xC2) == bytes.fromhex("010800001100") + OK
    assert get(card, 0xDA) == bytes.fromhex("13 2a8648ce3d030107") + OK
    assert get(card, 0xD6) == bytes.fromhex("0020") + OK
    assert get(card, 0xD9) == bytes.fromhex("0020") + OK
    info = card.transmit(apdu(0xCA, 0, 0xFA) + b"\x00\x00\x00")  # extended Le
    assert sw(info) == SW.OK
    assert tlv.parse(tlv.unpack(0xFA, info[:-2]))[:2] == [
        (0xC1, bytes.fromhex("010800001100")), (0xC1, bytes.fromhex("010c00001100"))]
    att = card.transmit(apdu(0xCA, 0, 0xFC) + b"\x00\x00\x00")
    assert sw(att) == SW.OK
    att = x509.load_der_x509_certificate(att[:-2])
    assert att.subject.rfc4514_string() == "CN=hwtoken Virtual OpenPGP Attestation 4242,O=hwtoken"
    root = x509.load_der_x509_certificate(key.openpgp.attestation_root)
    assert root.subject.rfc4514_string() == "CN=hwtoken Virtual OpenPGP Root CA 4242,O=hwtoken"
    assert att.issuer == root.subject


HISTORICAL = bytes.fromhex("00730000e0059000")


def test_cardholder_certificates_select_data_and_get_next_data(key):
    card = card_for(key)
    assert card.transmit(VERIFY_PW3) == OK
    for occurrence, cert in enumerate((b"aut-cert", b"dec-cert", b"sig-cert")):
        assert card.transmit(apdu(0xA5, occurrence, 4, bytes.fromhex("60045c027f21"))) == OK
        assert put(card, 0x7F21, cert) == OK
    assert put(card, 0xFC, b"att-cert") == OK
    assert get(card, 0xFC) == b"att-cert" + OK
    # a new power-up, a command in between: 7F21 is the AUT certificate
    card = card_for(key)
    assert get(card, 0x7F21) == b"aut-cert" + OK
    assert card.transmit(VERIFY_PW1_82) == OK
    assert get(card, 0x7F21) == b"aut-cert" + OK
    # SELECT DATA holds for the next 7F21 access only
    assert card.transmit(apdu(0xA5, 2, 4, bytes.fromhex("60045c027f21"))) == OK
    assert get(card, 0xC4) == bytes.fromhex("017f7f7f030003") + OK
    assert get(card, 0x7F21) == b"aut-cert" + OK
    # ... and GET NEXT DATA walks on from it: DEC, then SIG, then nothing
    assert card.transmit(apdu(0xA5, 1, 4, bytes.fromhex("60045c027f21"))) == OK
    assert get(card, 0x7F21) == b"dec-cert" + OK
    assert card.transmit(apdu(0xCC, 0x7F, 0x21)) == b"sig-cert" + OK
    assert card.transmit(apdu(0xCC, 0x7F, 0x21)) == b"\x6a\x88"
    assert card.transmit(apdu(0xA5, 1, 4, bytes.fromhex("60045c027f21"))) == OK
    assert card.transmit(apdu(0xCC, 0x7F, 0x21)) == b"sig-cert" + OK
    assert card.transmit(apdu(0xCC, 0x7F, 0x22)) == b"\x6b\x00"
    assert card.transmit(apdu(0xA5, 1, 5, bytes.fromhex("60045c027f21"))) == b"\x6b\x00"
    assert card.transmit(apdu(0xA5, 1, 4, bytes.fromhex("0660045c027f22"))) == b"\x6a\x80"
    # the longest certificate a YubiKey takes: 2048 bytes
    assert card.transmit(VERIFY_PW3) == OK
    assert put(card, 0x7F21, b"\x30" * 2048) == OK
    assert put(card, 0xFC, b"\x30" * 2049) == b"\x67\x00"
    assert get(card, 0xFC) == b"att-cert" + OK


def test_put_data_limits_of_each_object(key):
    card = card_for(key)
    assert card.transmit(VERIFY_PW3) == OK
    assert put(card, 0x5B, b"n" * 39) == OK
    assert put(card, 0x5F35, b"12") == b"\x67\x00"
    assert put(card, 0x5F35, b"1") == OK
    assert put(card, 0x5E, b"l" * 256) == b"\x67\x00"
    assert put(card, 0x5E, b"l" * 255) == OK
    assert get(card, 0x5E) == b"l" * 255 + OK
    assert get(card, 0x65) == bytes.fromhex("6530 5b27") + b"n" * 39 \
        + bytes.fromhex("5f2d00 5f350131") + OK
    for tag, fill in ((0xCA, 1), (0xCB, 2), (0xCC, 3), (0xDC, 4)):
        assert put(card, tag, bytes([fill]) * 20) == OK
    assert get(card, 0xC6) == b"".join(bytes([i]) * 20 for i in (1, 2, 3, 4)) + OK
    assert put(card, 0xCA, b"\x01" * 19) == b"\x67\x00"
    assert put(card, 0xC4, b"\x00") == OK
    assert get(card, 0xC4) == bytes.fromhex("007f7f7f030003") + OK
    assert put(card, 0xC4, b"\x01") == OK
    assert get(card, 0xC4) == bytes.fromhex("017f7f7f030003") + OK
    assert put(card, 0xC4, b"\x00\x01") == b"\x67\x00"
    assert put(card, 0xC4, b"\x02") == b"\x6a\x80"
    assert put(card, 0xCE, b"\x01\x02\x03") == b"\x67\x00"
    assert put(card, 0xCE, b"\x01\x02\x03\x04\x05") == b"\x67\x00"
    assert put(card, 0xD0, b"\x01\x02\x03\x04") == OK
    assert get(card, 0xCD) == bytes(8) + b"\x01\x02\x03\x04" + bytes(4) + OK
    assert put(card, 0xD6, b"\x01") == b"\x67\x00"
    assert put(card, 0xD6, b"\x01\x20\x00") == b"\x67\x00"
    assert put(card, 0xD6, b"\x01\x21") == b"\x6a\x80"
    assert put(card, 0xD7, b"\x03\x20") == OK
    assert get(card, 0xD7) == b"\x03\x20" + OK
    assert put(card, 0x42, b"x") == b"\x6a\x88"


def _kdf(**change: bytes | None) -> bytes:
    """An iterated and salted S2K KDF DO; ``change`` replaces (or with None drops) fields
    by their tag's name (``h81`` ...)."""
    fields = {"h81": b"\x03", "h82": b"\x08", "h83": (100000).to_bytes(4, "big"),
              "h84": b"\x01" * 8, "h85": b"\x02" * 8, "h86": b"\x03" * 8,
              "h87": b"\x87" * 32, "h88": b"\x88" * 32}
    fields.update(change)
    return b"".join(tlv.tlv(int(name[1:], 16), value) for name, value in fields.items()
                    if value is not None)


@pytest.mark.parametrize("change", [
    {"h81": b"\x02"}, {"h81": None}, {"h82": b"\x09"}, {"h82": None}, {"h82": b"\x08\x08"},
    {"h83": b"\x01\x00\x00"}, {"h84": b"\x01" * 7}, {"h87": b"\x87" * 31},
    {"h88": b"\x88" * 31}, {"h87": None}, {"h88": None},
    {"h82": b"\x0a"},  # SHA-512 wants 64-byte hashes
], ids=lambda change: "-".join(
    f"{k}={'none' if v is None else f'{v.hex()[:8]}-{len(v)}'}" for k, v in change.items()))
def test_kdf_refuses_each_wrong_field(key, change):
    card = card_for(key)
    assert card.transmit(VERIFY_PW3) == OK
    assert put(card, 0xF9, _kdf(**change)) == b"\x6a\x80"
    assert get(card, 0xF9) == bytes.fromhex("810100") + OK


def test_kdf_keeps_the_retry_counters_and_clears_the_resetting_code(key):
    card = card_for(key)
    assert card.transmit(VERIFY_PW3) == OK
    assert card.transmit(apdu(0xF2, 0, 0, bytes([5, 4, 6]))) == OK
    assert put(card, 0xD3, b"87654321") == OK
    kdf = _kdf(h82=b"\x0a", h87=b"\x87" * 64, h88=b"\x88" * 64)  # SHA-512
    assert put(card, 0xF9, kdf) == OK
    assert get(card, 0xF9) == kdf + OK
    assert get(card, 0xC4) == bytes.fromhex("017f7f7f050006") + OK
    assert card.transmit(apdu(0x20, 0, 0x81, b"\x87" * 64)) == OK
    assert card.transmit(apdu(0x20, 0, 0x83, b"\x88" * 64)) == OK
    assert put(card, 0xD3, b"\x33" * 64) == OK
    assert get(card, 0xC4) == bytes.fromhex("017f7f7f050406") + OK
    assert put(card, 0xF9, bytes.fromhex("810100")) == OK
    assert get(card, 0xC4) == bytes.fromhex("017f7f7f050006") + OK
    assert card.transmit(apdu(0xF2, 0, 0, bytes([5, 4, 6]))) == OK  # no RC: still none
    assert get(card, 0xC4) == bytes.fromhex("017f7f7f050006") + OK
    assert card.transmit(VERIFY_PW1_81) == OK
    assert card.transmit(VERIFY_PW3) == OK


def test_generate_and_import_parameters(key):
    card = card_for(key)
    assert card.transmit(apdu(0x47, 0x81, 0, b"\xb6\x00")) == b"\x6a\x88"  # no key yet
    assert card.transmit(VERIFY_PW3) == OK
    assert card.transmit(apdu(0x47, 0x80, 1, b"\xb6\x00")) == b"\x6b\x00"
    attrs = bytes([0x13]) + bytes.fromhex("2a8648ce3d030107")
    assert put(card, 0xC1, attrs) == OK
    scalar = (0x00FFEE).to_bytes(3, "big")

    def template(crt=b"\xb6\x00", headers=b"\x92\x03", values=scalar, t1=0x7F48, t2=0x5F48,
                 extra=b""):
        return tlv.tlv(0x4D, crt + tlv.tlv(t1, headers) + tlv.tlv(t2, values) + extra)

    for bad in (template(t1=0x7F49), template(t2=0x5F49), template(extra=b"\x90\x00"),
                template(values=scalar + b"\x01"),  # a byte left over
                template(headers=b"\x92\x03\x92\x03", values=scalar * 2),  # a part twice
                tlv.tlv(0x4D, b"\xb6\x00" + tlv.tlv(0x7F48, b"\x92\x03"))):
        assert card.transmit(apdu(0xDB, 0x3F, 0xFF, bad)) == b"\x6a\x80", bad.hex()
    assert get(card, 0xDE)[:2] == b"\x01\x00"  # nothing imported
    assert card.transmit(apdu(0xDB, 0x3F, 0xFF, template())) == OK
    assert get(card, 0xDE)[:2] == b"\x01\x02"


def test_signing_counts_up_to_the_ceiling(key):
    card = card_for(key)
    assert card.transmit(VERIFY_PW3) == OK
    assert put(card, 0xC1, bytes([0x13]) + bytes.fromhex("2a8648ce3d030107")) == OK
    assert sw(card.transmit(apdu(0x47, 0x80, 0, b"\xb6\x00"))) == SW.OK
    key.store.section("openpgp")["signature_counter"] = 0xFFFFFE
    assert card.transmit(VERIFY_PW1_81) == OK
    for _ in range(2):
        assert sw(card.transmit(apdu(0x2A, 0x9E, 0x9A, bytes(32)))) == SW.OK
        assert get(card, 0x7A) == bytes.fromhex("7a05 9303 ffffff") + OK
    assert card.transmit(apdu(0x88, 1, 0, bytes(32))) == b"\x6b\x00"
    assert card.transmit(apdu(0x88, 0, 1, bytes(32))) == b"\x6b\x00"


def test_get_challenge_parameters(key):
    card = card_for(key)
    assert card.transmit(apdu(0x84, 1, 0) + b"\x08") == b"\x6b\x00"
    assert card.transmit(apdu(0x84, 0, 1) + b"\x08") == b"\x6b\x00"
    assert len(card.transmit(apdu(0x84, 0, 0) + b"\x01")) == 3


def test_terminate_when_pw3_is_blocked_and_activate(key):
    card = card_for(key)
    assert put(card, 0x5B, b"x") == b"\x69\x82"
    assert card.transmit(VERIFY_PW3) == OK
    assert put(card, 0x5B, b"Someone") == OK
    assert card.transmit(apdu(0xE6, 1, 0)) == b"\x6b\x00"
    assert card.transmit(apdu(0xE6, 0, 1)) == b"\x6b\x00"
    assert card.transmit(apdu(0x44, 1, 0)) == b"\x6b\x00"
    assert card.transmit(apdu(0x44, 0, 1)) == b"\x6b\x00"
    assert card.transmit(apdu(0x44, 0, 0)) == OK  # operational: nothing happens
    assert get(card, 0x65) == b"\x65\x10\x5b\x07Someone" + bytes.fromhex("5f2d00 5f350139") + OK
    card = card_for(key)
    assert card.transmit(apdu(0xE6, 0, 0)) == b"\x69\x82"  # neither PW3 nor blocked
    for _ in range(3):
        assert card.transmit(apdu(0x20, 0, 0x83, b"87654321")) == b"\x69\x82"
    assert card.transmit(apdu(0xE6, 0, 0)) == OK
    assert get(card, 0x65) == b"\x62\x85"
    assert card.transmit(SELECT) == b"\x62\x85"
    assert card.transmit(apdu(0x44, 1, 0)) == b"\x6b\x00"
    assert card.transmit(apdu(0x44, 0, 0)) == OK
    assert get(card, 0x65) == bytes.fromhex("65095b005f2d005f350139") + OK
    assert card.transmit(VERIFY_PW3) == OK


def test_cached_touch_lasts_15_seconds(key, monkeypatch):
    from hwtoken.emulator.applets.openpgp import applet as applet_module
    from hwtoken.emulator.presence import AskCallback

    now = [1000.0]
    monkeypatch.setattr(applet_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    asked: list[str] = []
    key.presence = AskCallback(lambda reason: asked.append(reason) or True, timeout=5)
    card = card_for(key)
    assert card.transmit(VERIFY_PW3) == OK
    assert put(card, 0xC2, bytes([0x12]) + bytes.fromhex("2a8648ce3d030107")) == OK
    public = card.transmit(apdu(0x47, 0x80, 0, b"\xb8\x00"))
    assert put(card, 0xD7, b"\x03\x20") == OK  # cached
    assert card.transmit(VERIFY_PW1_82) == OK
    cipher = tlv.tlv(0xA6, tlv.tlv(0x7F49, tlv.tlv(0x86, tlv.unpack(
        0x86, tlv.unpack(0x7F49, public[:-2])))))  # its own public key as the peer
    for at, touches in ((1000.0, 1), (1014.9, 1), (1015.0, 2), (1029.9, 2), (1030.0, 3)):
        now[0] = at
        assert sw(card.transmit(apdu(0x2A, 0x80, 0x86, cipher))) == SW.OK
        assert asked == ["OpenPGP decrypt"] * touches, at


# -- the computed data objects ---------------------------------------------------------------
def test_serials_in_the_aid_and_versions_in_bcd():
    from hwtoken.emulator.applets.openpgp import objects

    assert objects.serial_bcd(99999999) == bytes.fromhex("99999999")
    assert objects.serial_bcd(100000000) == (100000000).to_bytes(4, "big")  # no BCD left
    assert objects.aid(12345678) == bytes.fromhex("d2760001240103040006123456780000")
    assert objects.version_bcd((5, 7, 4)) == bytes.fromhex("050704")
    assert objects.version_bcd((10, 42, 99)) == bytes.fromhex("104299")


def test_a_serial_beyond_eight_digits_is_sent_as_a_number(tmp_path):
    with VirtualKey.create(tmp_path / "big.key", serial=123456789) as k:
        card = card_for(k)
        assert card.transmit(apdu(0xCA, 0, 0x4F)) == bytes.fromhex(
            "d2760001240103040006 075bcd15 0000 9000")


def test_generation_times_past_2038_are_unsigned(key):
    card = card_for(key)
    assert card.transmit(VERIFY_PW3) == OK
    assert put(card, 0xCF, b"\xff\xff\xff\xff") == OK  # 2106-02-07, beyond a signed 32 bits
    assert put(card, 0xD0, b"\x80\x00\x00\x00") == OK
    assert get(card, 0xCD) == bytes(4) + b"\xff\xff\xff\xff\x80\x00\x00\x00" + bytes(4) + OK
    first = card.transmit(apdu(0xCA, 0, 0x6E))  # and inside the application related data
    rest = card.transmit(bytes.fromhex("00c0000000"))
    assert sw(first) & 0xFF00 == 0x6100 and sw(rest) == SW.OK
    inner = dict(tlv.parse(tlv.unpack(0x6E, first[:-2] + rest[:-2])))
    assert dict(tlv.parse(inner[0x73]))[0xCD] == \
        bytes(4) + b"\xff\xff\xff\xff\x80\x00\x00\x00" + bytes(4)
