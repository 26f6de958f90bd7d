"""The PIV applet at the APDU level: what clients other than yubikit send, the BER-TLV
codec, the management capability's migration, and hypothesis on the command parsing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yubikit.management import CAPABILITY
from yubikit.support import read_info

from hwtoken.emulator import tlv
from hwtoken.emulator.applets.management import SUPPORTED, SUPPORTED_BEFORE_PIV
from hwtoken.emulator.applets.piv.constants import DEFAULT_MANAGEMENT_KEY, MANAGEMENT_KEY_TYPE
from hwtoken.emulator.applets.piv.keys import encrypt_block
from hwtoken.emulator.iso7816 import SW, ApduError, CardOS
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.transports.card_direct import DirectCardConnection

SELECT_PIV = bytes.fromhex("00a4040005a000000308")


@pytest.fixture
def key(tmp_path):
    k = VirtualKey.create(tmp_path / "k.key", serial=4242)
    yield k
    k.close()


def card_for(key) -> CardOS:
    card = CardOS(key, strict=True)
    card.power_on()
    assert card.transmit(SELECT_PIV)[-2:] == b"\x90\x00"
    return card


def sw(resp: bytes) -> int:
    return struct.unpack(">H", resp[-2:])[0]


def authenticate(card: CardOS) -> None:
    """Mutual authentication with the default AES-192 management key, by hand."""
    resp = card.transmit(bytes.fromhex("00870a9b047c028000"))
    assert sw(resp) == SW.OK
    witness = tlv.unpack(0x80, tlv.unpack(0x7C, resp[:-2]))
    from hwtoken.emulator.applets.piv.keys import decrypt_block

    plain = decrypt_block(MANAGEMENT_KEY_TYPE.AES192, DEFAULT_MANAGEMENT_KEY, witness)
    challenge = bytes(16)
    body = tlv.tlv(0x7C, tlv.tlv(0x80, plain) + tlv.tlv(0x81, challenge))
    resp = card.transmit(bytes([0, 0x87, 0x0A, 0x9B, len(body)]) + body)
    assert sw(resp) == SW.OK
    answer = tlv.unpack(0x82, tlv.unpack(0x7C, resp[:-2]))
    assert answer == encrypt_block(MANAGEMENT_KEY_TYPE.AES192, DEFAULT_MANAGEMENT_KEY,
                                   challenge)


def test_empty_verify_reports_the_pin_state(key):
    card = card_for(key)
    status = bytes.fromhex("0020008000")  # yubico-piv-tool: Lc absent, "Le" = 00
    assert card.transmit(status) == b"\x63\xc3"
    assert card.transmit(b"\x00\x20\x00\x80") == b"\x63\xc3"
    assert card.transmit(bytes.fromhex("002000800831323334353637ff")) == b"\x63\xc2"
    assert card.transmit(bytes.fromhex("0020008008313233343536ffff")) == b"\x90\x00"
    assert card.transmit(status) == b"\x90\x00"
    assert card.transmit(bytes.fromhex("0020ff80")) == b"\x90\x00"  # forget the PIN
    assert card.transmit(status) == b"\x63\xc3"
    for _ in range(3):
        card.transmit(bytes.fromhex("0020008008ffffffffffffffff"))
    assert card.transmit(status) == b"\x69\x83"
    assert card.transmit(bytes.fromhex("0020008008313233343536ffff")) == b"\x69\x83"


def test_verify_rejects_other_references_and_lengths(key):
    card = card_for(key)
    assert sw(card.transmit(bytes.fromhex("0020009600"))) == SW.REFERENCE_DATA_NOT_FOUND
    assert sw(card.transmit(bytes.fromhex("002000800431323334"))) == SW.INCORRECT_PARAMETERS
    assert card.transmit(bytes.fromhex("0020008000")) == b"\x63\xc3"  # no try was spent


def test_get_data_reads_in_pieces_and_discovery(key):
    card = card_for(key)
    resp = card.transmit(bytes.fromhex("00cb3fff03 5c017e 00".replace(" ", "")))
    assert resp == bytes.fromhex("7e124f0ba0000003080000100001005f2f0240009000")
    assert sw(card.transmit(bytes.fromhex("00cb3fff055c035fc10200"))) == SW.FILE_NOT_FOUND
    resp = card.transmit(bytes.fromhex("00cb3fff055c035fff0100"))  # the F9 certificate
    data = resp[:-2]
    while resp[-2] == 0x61:
        resp = card.transmit(bytes.fromhex("00c0000000"))
        data += resp[:-2]
    assert sw(resp) == SW.OK
    content = tlv.unpack(0x53, data)
    assert tlv.parse(content)[0][0] == 0x70


def test_put_data_with_command_chaining(key):
    card = card_for(key)
    authenticate(card)
    content = bytes(range(256)) * 3
    body = tlv.tlv(0x5C, bytes.fromhex("5fc10d")) + tlv.tlv(0x53, content)
    parts = [body[i:i + 255] for i in range(0, len(body), 255)]
    for i, part in enumerate(parts):
        cla = 0x10 if i < len(parts) - 1 else 0x00
        assert card.transmit(bytes([cla, 0xDB, 0x3F, 0xFF, len(part)]) + part) == b"\x90\x00"
    resp = card.transmit(bytes.fromhex("00cb3fff055c035fc10d00"))
    data = resp[:-2]
    while resp[-2] == 0x61:
        resp = card.transmit(bytes.fromhex("00c0000000"))
        data += resp[:-2]
    assert tlv.unpack(0x53, data) == content


def test_generate_over_raw_apdus(key):
    card = card_for(key)
    body = tlv.tlv(0xAC, tlv.tlv(0x80, b"\x11"))
    gen = bytes([0, 0x47, 0, 0x9A, len(body)]) + body
    assert sw(card.transmit(gen)) == SW.SECURITY_CONDITION_NOT_SATISFIED
    authenticate(card)
    resp = card.transmit(gen)
    assert sw(resp) == SW.OK
    point = tlv.unpack(0x86, tlv.unpack(0x7F49, resp[:-2]))
    assert len(point) == 65 and point[0] == 4
    for bad in (tlv.tlv(0xAC, tlv.tlv(0x80, b"\x42")),  # unknown algorithm
                tlv.tlv(0xAC, tlv.tlv(0x80, b"\x11") + tlv.tlv(0xAA, b"\x04")),  # bio PIN
                tlv.tlv(0xAC, tlv.tlv(0x80, b"\x11") + tlv.tlv(0xAB, b"\x09"))):
        assert sw(card.transmit(bytes([0, 0x47, 0, 0x9A, len(bad)]) + bad)) == \
            SW.INCORRECT_PARAMETERS
    assert sw(card.transmit(bytes([0, 0x47, 0, 0xF9, len(body)]) + body)) == 0x6A86


def test_other_applet_deselects_piv(key):
    card = card_for(key)
    authenticate(card)
    card.transmit(bytes.fromhex("00a4040008a000000527471117"))  # management
    card.transmit(SELECT_PIV)
    body = tlv.tlv(0xAC, tlv.tlv(0x80, b"\x11"))
    assert sw(card.transmit(bytes([0, 0x47, 0, 0x9A, len(body)]) + body)) == \
        SW.SECURITY_CONDITION_NOT_SATISFIED


# -- the management capability ------------------------------------------------------------------
def test_old_key_gains_piv_but_keeps_what_its_user_disabled(tmp_path):
    path = tmp_path / "old.key"
    with VirtualKey.create(path) as k:
        mgmt = k.store.section("management")
        mgmt.clear()  # as a key from before PIV stored it, OATH switched off over NFC
        mgmt.update({"usb_enabled": SUPPORTED_BEFORE_PIV,
                     "nfc_enabled": SUPPORTED_BEFORE_PIV & ~CAPABILITY.OATH,
                     "auto_eject_timeout": 0, "chalresp_timeout": 15, "device_flags": 0})
        del k.store.data["piv"]
    with VirtualKey.load(path) as k:
        info = read_info(DirectCardConnection(CardOS(k)))
        from yubikit.core import TRANSPORT

        assert info.config.enabled_capabilities[TRANSPORT.USB] == SUPPORTED
        assert info.config.enabled_capabilities[TRANSPORT.NFC] == \
            SUPPORTED & ~CAPABILITY.OATH
        card = CardOS(k)
        assert card.transmit(SELECT_PIV)[-2:] == b"\x90\x00"  # set up on first use
    with VirtualKey.load(path) as k:
        assert k.store.data["management"]["supported"] == SUPPORTED
        assert "attestation_root" in k.store.data["piv"]


def test_piv_disabled_over_nfc_is_not_selectable_and_stays_off(key):
    from yubikit.core import TRANSPORT
    from yubikit.management import DeviceConfig, ManagementSession

    ManagementSession(DirectCardConnection(CardOS(key))).write_device_config(
        DeviceConfig({TRANSPORT.NFC: SUPPORTED & ~CAPABILITY.PIV}))
    assert CardOS(key).transmit(SELECT_PIV) == b"\x6a\x82"
    path = key.path
    key.close()
    with VirtualKey.load(path) as again:  # the migration does not switch it back on
        assert CardOS(again).transmit(SELECT_PIV) == b"\x6a\x82"


# -- BER-TLV -------------------------------------------------------------------------------------
tags = st.sampled_from([0x01, 0x53, 0x5C, 0x7C, 0x80, 0x9B, 0xAC, 0x5F2F, 0x7F49, 0x5FC102])


@given(items=st.lists(st.tuples(tags, st.binary(max_size=300)), max_size=5))
@settings(max_examples=200)
def test_tlv_round_trip(items):
    data = b"".join(tlv.tlv(t, v) for t, v in items)
    assert tlv.parse(data) == items


@given(data=st.binary(max_size=64))
@settings(max_examples=300)
def test_tlv_parse_rejects_or_accepts_cleanly(data):
    try:
        items = tlv.parse(data)
    except ApduError as exc:
        assert exc.sw == SW.INCORRECT_PARAMETERS
    else:  # what parsed re-encodes (canonically) to the same items
        assert tlv.parse(b"".join(tlv.tlv(t, v) for t, v in items)) == items


# -- hypothesis on the applet's command parsing --------------------------------------------------
PIV_INS = [0x20, 0x24, 0x2C, 0x47, 0x87, 0xCB, 0xDB, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB,
           0xFD, 0xFE, 0xFF, 0xC0]
#: Algorithm bytes the fuzzer may put in a GENERATE template: RSA-3072/4096 would take
#: seconds to generate.
FAST_ALGORITHMS = [0x06, 0x11, 0x14, 0xE0, 0xE1, 0x07, 0x00, 0x42]
inner = st.recursive(
    st.tuples(st.sampled_from([0x01, 0x06, 0x07, 0x08, 0x53, 0x5C, 0x80, 0x81, 0x82, 0x85,
                               0x9B, 0xAA, 0xAB]),
              st.one_of(st.binary(max_size=70), st.sampled_from(
                  [b"", b"\x7e", b"\x5f\xc1\x05", b"\x5f\xff\x01", b"\x01", b"\x02", b"\x03"]
                  + [bytes([a]) for a in FAST_ALGORITHMS]))).map(lambda tv: tlv.tlv(*tv)),
    lambda children: st.tuples(st.sampled_from([0x7C, 0xAC]), st.lists(children, max_size=3))
    .map(lambda tv: tlv.tlv(tv[0], b"".join(tv[1]))),
    max_leaves=4)
payload = st.one_of(st.binary(max_size=40), st.lists(inner, max_size=3).map(b"".join))
random_command = st.tuples(st.sampled_from(PIV_INS),
                           st.sampled_from([0x00, 0x03, 0x0A, 0x11, 0x3F, 0xE0, 0xFF]),
                           st.sampled_from([0x00, 0x80, 0x81, 0x9A, 0x9B, 0x9C, 0xF9, 0xFF,
                                            0x82]),
                           payload)
# Well-formed commands with fuzzed fields, so that the deeper paths (keys made, used,
# moved, attested; objects written) run too.
slots = st.sampled_from([0x9A, 0x9C, 0x9D, 0x9E, 0x82, 0x95, 0xF9, 0x9B, 0x00])
algorithms = st.sampled_from(FAST_ALGORITHMS)
object_ids = st.sampled_from([b"\x7e", b"\x5f\xc1\x02", b"\x5f\xc1\x05", b"\x5f\xc1\x09",
                              b"\x5f\xff\x01", b"\x5f\xff\x00", b"\x7f\x61", b"\x01"])
small = st.binary(max_size=60)
structured_command = st.one_of(
    st.builds(lambda s_, a, pin, touch: (0x47, 0, s_, tlv.tlv(0xAC, tlv.tlv(0x80, bytes([a]))
                                                            + pin + touch)),
              slots, algorithms,
              st.sampled_from([b""] + [tlv.tlv(0xAA, bytes([i])) for i in range(7)]),
              st.sampled_from([b""] + [tlv.tlv(0xAB, bytes([i])) for i in range(5)])),
    st.builds(lambda a, s_, tag, data: (0x87, a, s_, tlv.tlv(0x7C, tlv.tlv(0x82)
                                                            + tlv.tlv(tag, data))),
              algorithms, slots, st.sampled_from([0x81, 0x85]),
              st.one_of(small, st.binary(min_size=32, max_size=32),
                        st.just(b"\x04" + bytes(64)))),
    st.builds(lambda i, d: (0xDB, 0x3F, 0xFF, tlv.tlv(0x5C, i) + tlv.tlv(0x53, d)),
              object_ids, small),
    st.builds(lambda i: (0xCB, 0x3F, 0xFF, tlv.tlv(0x5C, i)), object_ids),
    st.builds(lambda a, s_, tag, d: (0xFE, a, s_, tlv.tlv(tag, d)), algorithms, slots,
              st.sampled_from([0x06, 0x07, 0x08]),
              st.one_of(st.binary(min_size=32, max_size=32), small)),
    st.builds(lambda a, b: (0xF6, a, b, b""), st.one_of(slots, st.just(0xFF)), slots),
    st.builds(lambda s_: (0xF9, s_, 0, b""), slots),
    st.builds(lambda s_: (0xF7, 0, s_, b""), st.one_of(slots, st.sampled_from([0x80, 0x81]))),
    st.builds(lambda a, k, p2: (0xFF, 0xFF, p2, bytes([a]) + tlv.tlv(0x9B, k)),
              st.sampled_from([0x03, 0x08, 0x0A, 0x0C, 0x11]),
              st.sampled_from([bytes(16), bytes(24), bytes(32), b"\x01"]),
              st.sampled_from([0xFF, 0xFE])),
)
# A key made, then used (sign or agree), attested and moved: the sequence a client sends.
generate_then_use = st.builds(
    lambda s_, a, tag, data, dest: [
        (0x47, 0, s_, tlv.tlv(0xAC, tlv.tlv(0x80, bytes([a])) + tlv.tlv(0xAA, b"\x01"))),
        (0x87, a, s_, tlv.tlv(0x7C, tlv.tlv(0x82) + tlv.tlv(tag, data))),
        (0xF9, s_, 0, b""), (0xF6, dest, s_, b"")],
    slots, algorithms, st.sampled_from([0x81, 0x85]),
    st.one_of(small, st.binary(min_size=32, max_size=32), st.just(b"\x04" + bytes(64))),
    st.one_of(slots, st.just(0xFF)))
command_group = st.one_of(random_command.map(lambda c: [c]),
                          structured_command.map(lambda c: [c]), generate_then_use)


@given(groups=st.lists(command_group, max_size=6), auth=st.booleans(), pin=st.booleans())
@settings(max_examples=150)
def test_fuzzed_commands_always_get_a_status_word(tmp_path_factory, groups, auth, pin):
    cmds = [c for group in groups for c in group]
    k = VirtualKey.create(tmp_path_factory.mktemp("pivfz") / "f.key")
    try:
        card = card_for(k)
        if auth:
            authenticate(card)
        if pin:
            assert card.transmit(bytes.fromhex("0020008008313233343536ffff")) == b"\x90\x00"
        for ins, p1, p2, data in cmds:
            if ins == 0x47 and (b"\x80\x01\x05" in data or b"\x80\x01\x16" in data):
                continue
            raw = bytes([0, ins, p1, p2]) + (bytes([len(data)]) + data if data else b"")
            if len(data) > 255:
                raw = bytes([0, ins, p1, p2, 0]) + struct.pack(">H", len(data)) + data
            resp = card.transmit(raw)  # strict: an applet exception fails the test
            assert len(resp) >= 2
        assert sw(card.transmit(bytes.fromhex("00fd0000"))) == SW.OK
    finally:
        k.close()
