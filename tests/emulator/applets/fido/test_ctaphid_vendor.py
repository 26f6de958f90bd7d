"""The YubiKey vendor commands over CTAPHID (READ_CONFIG 0xC2, WRITE_CONFIG 0xC3, set mode
0xC0), through yubikit's own ManagementSession on a FIDO connection, as ykman uses them."""

from __future__ import annotations

import pytest
from fido2.ctap import CtapError
from fido2.hid import CTAPHID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yubikit.core import TRANSPORT
from yubikit.management import CAPABILITY, DeviceConfig, ManagementSession

from hwtoken.emulator import VirtualKey, fido_device

READ_CONFIG = 0x42  # yubikit.management.CTAP_READ_CONFIG


def test_device_info_over_ctaphid_equals_the_management_applet(fido_device, virtual_key):
    info = ManagementSession(fido_device).read_device_info()
    assert info.serial == virtual_key.serial
    assert tuple(info.version) == virtual_key.version
    assert info.supported_capabilities[TRANSPORT.USB] & CAPABILITY.FIDO2
    assert info.config.enabled_capabilities[TRANSPORT.USB] & CAPABILITY.FIDO2


def test_write_config_over_ctaphid_is_saved(tmp_path):
    path = tmp_path / "k.key"
    with VirtualKey.create(path) as key, fido_device(key) as dev:
        ManagementSession(dev).write_device_config(
            DeviceConfig({}, auto_eject_timeout=7, challenge_response_timeout=20,
                         device_flags=None), reboot=False)
    with VirtualKey.load(path) as key, fido_device(key) as dev:
        info = ManagementSession(dev).read_device_info()
        assert info.config.auto_eject_timeout == 7
        assert info.config.challenge_response_timeout == 20


def test_a_locked_config_refuses_a_write_without_the_code(fido_device):
    session = ManagementSession(fido_device)
    session.write_device_config(DeviceConfig({}, None, None, None), False, None,
                                bytes(range(16)))
    assert session.read_device_info().is_locked
    with pytest.raises(CtapError) as e:
        session.write_device_config(DeviceConfig({}, 9, None, None), False)
    assert e.value.code == CtapError.ERR.INVALID_PARAMETER  # CTAPHID ERR_INVALID_PAR
    session.write_device_config(DeviceConfig({}, 9, None, None), False, bytes(range(16)))
    assert session.read_device_info().config.auto_eject_timeout == 9


@pytest.mark.parametrize("payload", [b"\x01", b"\x00\x00"])
def test_read_config_of_an_unknown_page_is_an_error(fido_device, payload):
    with pytest.raises(CtapError) as err:
        fido_device.call(READ_CONFIG, payload)
    assert err.value.code == CtapError.ERR.INVALID_PARAMETER


def test_vendor_commands_do_not_disturb_ctap2(fido_device):
    from fido2.ctap2 import Ctap2

    fido_device.call(READ_CONFIG, b"\x00")
    assert "FIDO_2_1" in Ctap2(fido_device).get_info().versions
    assert fido_device.call(CTAPHID.PING, b"still here") == b"still here"


@pytest.fixture(scope="module")
def config_fuzz_key(tmp_path_factory):
    """Its own key: a random frame that parses is a real reconfiguration."""
    key = VirtualKey.create(tmp_path_factory.mktemp("cfgfuzz") / "k.key")
    yield key
    key.close()


def _config_frame(tlvs: list[tuple[int, bytes]]) -> bytes:
    """A length byte and TLVs, as ManagementSession.write_device_config sends them."""
    body = b"".join(bytes([t, len(v)]) + v for t, v in tlvs)
    return bytes([len(body)]) + body


config_frames = st.one_of(
    st.binary(max_size=80),
    st.lists(st.tuples(st.sampled_from([0x03, 0x04, 0x06, 0x08, 0x0A, 0x0C, 0x0D, 0x0E,
                                        0x10, 0x13, 0x14, 0x15, 0x7F]),
                       st.binary(max_size=20)), max_size=5).map(_config_frame),
)


@given(cmd=st.sampled_from([0x40, 0x43]), frame=config_frames)
@settings(max_examples=400,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_config_frames_are_answered_and_never_crash_the_key(config_fuzz_key, cmd, frame):
    """A config write is applied or refused with INVALID_PAR; ERR_OTHER would be a crash."""
    with fido_device(config_fuzz_key) as dev:
        before = ManagementSession(dev).read_device_info()
        try:
            assert dev.call(cmd, frame) == b""
        except CtapError as e:
            assert e.code == CtapError.ERR.INVALID_PARAMETER, (frame.hex(), e.code)
            assert ManagementSession(dev).read_device_info() == before
        assert dev.call(CTAPHID.PING, b"ok") == b"ok"
