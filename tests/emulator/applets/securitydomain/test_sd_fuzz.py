"""Hypothesis: untrusted bytes into the Security Domain's parsers (PUT KEY key data, STORE
DATA, SCP11 key agreement, DELETE, GENERATE) and into every handshake and command through a
strict card OS: only status words come out."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwtoken.emulator import tlv
from hwtoken.emulator.applets.securitydomain import handshake, keyload
from hwtoken.emulator.applets.securitydomain.applet import AID_SECURITY_DOMAIN
from hwtoken.emulator.iso7816 import Apdu, ApduError, CardOS
from hwtoken.emulator.key import VirtualKey

FUZZ = settings(max_examples=300,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
TAGS = st.sampled_from([0x42, 0x70, 0x80, 0x81, 0x83, 0x86, 0x88, 0x90, 0x93, 0x95, 0xA6,
                        0xB0, 0xB1, 0xD0, 0xD2, 0xF0, 0x5F49, 0xBF21])
TLVS = st.recursive(
    st.lists(st.tuples(TAGS, st.binary(max_size=70)), max_size=5).map(
        lambda items: b"".join(tlv.tlv(t, v) for t, v in items)),
    lambda inner: st.tuples(TAGS, inner).map(lambda tv: tlv.tlv(*tv)), max_leaves=6)
DATA = st.one_of(TLVS, st.binary(max_size=200))


def _total(call, *args):
    with contextlib.suppress(ApduError):
        call(*args)


@given(kid=st.sampled_from([0x01, 0x10, 0x11, 0x13, 0x15, 0x20, 0x42]), data=DATA,
       dek=st.one_of(st.none(), st.just(os.urandom(16))))
@FUZZ
def test_put_key_parser_is_total(kid, data, dek):
    _total(keyload.parse_put_key, kid, data, dek)


@given(data=DATA)
@FUZZ
def test_other_parsers_are_total(data):
    _total(keyload.parse_store_data, data)
    _total(keyload.parse_delete, data)
    _total(keyload.parse_generate, data)
    for kid in (0x11, 0x13, 0x15):
        _total(handshake.parse_scp11, data, kid)
    _total(handshake.load_certificate, data)


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    key = VirtualKey.create(tmp_path_factory.mktemp("sd") / "k.key")
    yield CardOS(key, strict=True, transport="usb")
    key.close()


@given(cla=st.sampled_from([0x00, 0x80, 0x84, 0x04]),
       ins=st.sampled_from([0x2A, 0x50, 0x82, 0x88, 0xCA, 0xD8, 0xE2, 0xE4, 0xF1, 0x00]),
       p1=st.integers(0, 255), p2=st.integers(0, 255), data=DATA)
@FUZZ
def test_any_command_gets_a_status_word(card, cla, ins, p1, p2, data):
    select = Apdu(0, 0xA4, 4, 0, AID_SECURITY_DOMAIN).to_bytes()
    assert card.transmit(select)[-2:] == b"\x90\x00"
    resp = card.transmit(Apdu(cla, ins, p1, p2, data).to_bytes())
    assert len(resp) >= 2 and resp[-2:] != b"\x6f\x00"
