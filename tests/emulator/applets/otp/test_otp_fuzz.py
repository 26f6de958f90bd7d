"""Hypothesis: untrusted bytes into the frame parser, config parser and HID engine."""

from __future__ import annotations

import contextlib
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yubico import yubico_util
from yubico.yubikey_config import YubiKeyConfig
from yubico.yubikey_frame import YubiKeyFrame
from yubikit.core.otp import calculate_crc

from hwtoken.emulator.applets.otp.config import SlotConfig
from hwtoken.emulator.applets.otp.frames import Frame, FrameError, append_crc, check_crc, crc16

FAST = settings(max_examples=200,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@given(st.binary(max_size=200))
def test_crc_matches_both_clients(data):
    assert crc16(data) == calculate_crc(data) == yubico_util.crc16(data)
    assert check_crc(append_crc(data))
    assert yubico_util.validate_crc16(append_crc(data))


@given(st.binary(max_size=100))
@FAST
def test_frame_parser_total(raw):
    try:
        f = Frame.parse(raw)
    except FrameError:
        return
    assert len(raw) == 70 and Frame(f.command, f.payload).to_bytes()[:67] == raw[:67]


@given(st.integers(0, 255), st.binary(min_size=64, max_size=64))
def test_frame_roundtrip_with_python_yubico(command, payload):
    theirs = YubiKeyFrame(command, payload).to_string()
    assert Frame.parse(theirs) == Frame(command, payload)
    assert Frame(command, payload).to_bytes() == theirs


@given(st.binary(min_size=52, max_size=64))
@FAST
def test_config_parser_total(raw):
    with contextlib.suppress(FrameError):  # anything else escaping is a bug
        SlotConfig.parse(raw)


def test_config_from_python_yubico_parses():
    cfg = YubiKeyConfig(ykver=(5, 7))
    cfg.mode_oath_hotp(b"k" * 20, digits=8)
    parsed = SlotConfig.parse(cfg.to_string())
    assert parsed.hmac_key == b"k" * 20 and parsed.hotp_digits == 8


@given(st.lists(st.binary(min_size=0, max_size=12), max_size=40))
@FAST
def test_engine_survives_random_reports(engine, reports):
    """Arbitrary feature reports never crash the engine or corrupt the slots."""
    before = engine.applet.describe()
    for r in reports:
        engine.set_feature(r)
        out = engine.get_feature()
        assert len(out) == 8
    engine.set_feature(bytes(7) + b"\x8f")  # reset read mode
    status = engine.get_feature()
    assert status[7] == 0 and status[1:4] == bytes(engine.key.version)
    # changing a slot takes a frame CRC and a config CRC: random bytes never manage both
    assert engine.applet.describe() == before


def test_engine_corrupt_config_refused_in_place(engine):
    """A valid frame with a corrupt config CRC: refused, sequence unchanged."""
    cfg = YubiKeyConfig(ykver=(5, 7))
    cfg.mode_challenge_response(os.urandom(20), type="HMAC")
    good = bytearray(cfg.to_frame(slot=1).payload)
    good[20] ^= 1  # inside the config: its own CRC no longer holds
    frame = YubiKeyFrame(0x01, bytes(good))
    seq = engine.get_feature()[4]
    for r in frame.to_feature_reports():
        engine.set_feature(r)
    assert engine.get_feature()[4] == seq
    assert engine.applet.slot_config(1) is None


@given(key=st.binary(min_size=1, max_size=20), challenges=st.lists(
    st.binary(max_size=63), min_size=1, max_size=4), slot=st.sampled_from([1, 2]))
@settings(max_examples=60,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hmac_property(connection, key, challenges, slot):
    """Any key up to 20 bytes, any challenge under 64: the slot answers HMAC-SHA1."""
    import hashlib
    import hmac

    from yubikit.yubiotp import HmacSha1SlotConfiguration, YubiOtpSession

    s = YubiOtpSession(connection)
    s.put_configuration(slot, HmacSha1SlotConfiguration(key))
    for chal in challenges:
        assert s.calculate_hmac_sha1(slot, chal) == hmac.new(key, chal, hashlib.sha1).digest()
