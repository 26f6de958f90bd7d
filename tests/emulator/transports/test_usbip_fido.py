"""fido2 over USB/IP loopback: Fido2Client, Ctap2 and Ctap1 against the served key."""

from __future__ import annotations

import pytest
from fido2.ctap1 import Ctap1
from fido2.hid import CtapHidDevice

from hwtoken.emulator.transports.usbip_fido import open_usbip_fido
from hwtoken.testing import WebAuthnHelper


@pytest.fixture
def usbip_fido(usbip_server):
    dev = open_usbip_fido(usbip_server.host, usbip_server.port, usbip_server.busid)
    yield dev
    dev.close()


def test_descriptor_identifies_the_key(usbip_fido, usbip_key):
    assert isinstance(usbip_fido, CtapHidDevice)
    d = usbip_fido.descriptor
    assert (d.vid, d.pid) == (0x1050, 0x0407)
    assert (d.report_size_in, d.report_size_out) == (64, 64)
    assert d.product_name == "YubiKey OTP+FIDO+CCID"
    assert d.serial_number == str(usbip_key.serial)
    assert usbip_fido.device_version == usbip_key.version


def test_fido2_client_registers_and_authenticates(usbip_fido):
    helper = WebAuthnHelper(usbip_fido)
    reg = helper.register("alice", user_verification="discouraged")
    assert reg.response.response.attestation_object.fmt == "packed"  # CTAP2, not U2F
    first = helper.authenticate(user_verification="discouraged")
    second = helper.authenticate(user_verification="discouraged")
    assert first.credential_id == reg.credential_id
    assert second.sign_count > first.sign_count


def test_ctap1_register_and_authenticate(usbip_fido):
    ctap1 = Ctap1(usbip_fido)
    assert ctap1.get_version() == "U2F_V2"
    app, chal = b"A" * 32, b"C" * 32
    reg = ctap1.register(chal, app)
    reg.verify(app, chal)
    sig = ctap1.authenticate(chal, app, reg.key_handle)
    sig.verify(app, chal, reg.public_key)


def test_large_ping_round_trips_through_continuation_packets(usbip_fido):
    payload = (bytes(range(256)) * 30)[:7609]  # the most 128 continuation packets carry
    assert usbip_fido.ping(payload) == payload


def test_ctap2_get_info(usbip_fido, usbip_key):
    from fido2.ctap2 import Ctap2

    info = Ctap2(usbip_fido).get_info()
    assert "FIDO_2_0" in info.versions
    assert bytes(info.aaguid) == usbip_key.aaguid


def test_each_import_is_a_fresh_plug_in(usbip_server, usbip_key):
    """A FIDO reset is only allowed just after power-up; re-importing is re-plugging."""
    import time

    from fido2.ctap import CtapError
    from fido2.ctap2 import Ctap2

    dev = open_usbip_fido(usbip_server.host, usbip_server.port, usbip_server.busid)
    usbip_key.powered_at = time.monotonic() - 60  # the key has been in for a minute
    with pytest.raises(CtapError) as err:
        Ctap2(dev).reset()
    assert err.value.code == CtapError.ERR.NOT_ALLOWED
    dev.close()
    deadline = time.monotonic() + 5
    while usbip_server.usb.session_count and time.monotonic() < deadline:
        time.sleep(0.01)  # the server notices the host detached
    assert usbip_server.usb.session_count == 0, "the server never saw the host detach"
    dev = open_usbip_fido(usbip_server.host, usbip_server.port, usbip_server.busid)
    Ctap2(dev).reset()  # re-plugged: inside the reset window
    dev.close()
