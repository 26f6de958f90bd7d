"""Hypothesis: untrusted command data into every YubiHSM Auth instruction. The card OS is
strict, so anything but an ApduError escaping an applet fails the test; a malformed command
never costs a management-key try."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwtoken.emulator.applets.hsmauth.applet import AID_HSMAUTH
from hwtoken.emulator.applets.management import tlv
from hwtoken.emulator.iso7816 import Apdu, CardOS
from hwtoken.emulator.key import VirtualKey

FUZZ = settings(max_examples=300,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
TAGS = st.sampled_from(list(range(0x71, 0x7E)))
FIELDS = st.lists(st.tuples(TAGS, st.binary(max_size=80)), max_size=8).map(
    lambda items: b"".join(tlv(t, v) for t, v in items))


def _card(tmp_path_factory):
    key = VirtualKey.create(tmp_path_factory.mktemp("h") / "k.key")
    card = CardOS(key, strict=True, transport="usb")
    select = Apdu(0, 0xA4, 4, 0, AID_HSMAUTH).to_bytes()
    assert card.transmit(select)[-2:] == b"\x90\x00"
    return key, card


@given(ins=st.integers(0, 0x0F), p1=st.integers(0, 255), p2=st.integers(0, 255),
       data=st.one_of(FIELDS, st.binary(max_size=300)))
@FUZZ
def test_any_command_data_gets_a_status_word(tmp_path_factory, ins, p1, p2, data):
    key, card = _card(tmp_path_factory)
    try:
        resp = card.transmit(Apdu(0, ins, p1, p2, data).to_bytes())
        assert len(resp) >= 2 and resp[-2:] != b"\x6f\x00"
        retries = card.transmit(bytes.fromhex("0009000000"))
        tries = {b"\x63\xc7": 7}.get(resp[-2:], 8)  # only a well-formed wrong key costs one
        assert retries[0] == tries
    finally:
        key.close()
