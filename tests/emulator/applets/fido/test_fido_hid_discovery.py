"""register_with_fido2_hid: the virtual key through fido2.hid's public discovery functions."""

from __future__ import annotations

import fido2.hid
import pytest
from fido2.ctap1 import Ctap1
from fido2.ctap2 import Ctap2

# imported before any registration, as a hardware-key test suite's conftest does
from fido2.hid import CtapHidDevice, list_descriptors, open_connection, open_device

from hwtoken.emulator import VirtualKey
from hwtoken.emulator.transports.fido_hid import (
    hid_descriptor,
    register_with_fido2_hid,
    registered_with_fido2_hid,
    unregister_from_fido2_hid,
)


def _paths():
    return {d.path for d in list_descriptors()}


def test_descriptor_looks_like_a_yubikey_5(virtual_key):
    d = hid_descriptor(virtual_key)
    assert (d.vid, d.pid) == (0x1050, 0x0407)
    assert (d.report_size_in, d.report_size_out) == (64, 64)
    assert d.product_name == "YubiKey OTP+FIDO+CCID"
    assert d.serial_number == str(virtual_key.serial)
    assert d.path == f"emu:{virtual_key.serial}"


@pytest.mark.parametrize(("profile", "pid", "product"), [
    ("security-key", 0x0120, "Security Key NFC by Yubico"),
    ("u2f-only", 0x0120, "Security Key by Yubico"),
    ("latest", 0x0407, "YubiKey OTP+FIDO+CCID"),
])
def test_descriptor_follows_the_usb_model_of_the_profile(tmp_path, profile, pid, product):
    from hwtoken.emulator.serve import served
    from hwtoken.emulator.transports.usbip_fido import open_usbip_fido

    with VirtualKey.create(tmp_path / "k.key", profile=profile) as key:
        d = hid_descriptor(key)
        assert (d.vid, d.pid, d.product_name) == (0x1050, pid, product)
        with served(key) as srv:  # USB/IP shows the same device
            dev = open_usbip_fido(*srv.address)
            try:
                assert (dev.descriptor.vid, dev.descriptor.pid) == (0x1050, pid)
            finally:
                dev.close()


def test_registered_key_is_listed_opened_and_used(virtual_key):
    path = f"emu:{virtual_key.serial}"
    assert path not in _paths()
    with registered_with_fido2_hid(virtual_key) as desc:
        assert desc.path == path
        [listed] = [d for d in list_descriptors() if d.path == path]
        assert listed == desc
        # the module attributes and the names imported earlier agree
        assert path in {d.path for d in fido2.hid.list_descriptors()}
        dev = CtapHidDevice(listed, open_connection(listed))
        try:
            assert dev.ping(b"hi") == b"hi"
            info = Ctap2(dev).get_info()
            assert info.aaguid == virtual_key.aaguid
            assert Ctap1(dev).get_version() == "U2F_V2"
        finally:
            dev.close()
        dev = open_device(path)
        try:
            assert dev.product_name == "YubiKey OTP+FIDO+CCID"
            assert dev.device_version == virtual_key.version
        finally:
            dev.close()
        found = [d for d in CtapHidDevice.list_devices() if d.descriptor.path == path]
        assert len(found) == 1
        found[0].close()
    assert path not in _paths()


def test_two_keys_and_two_connections_to_one_key(virtual_key, tmp_path):
    with VirtualKey.create(tmp_path / "second.key") as second:
        register_with_fido2_hid(virtual_key)
        register_with_fido2_hid(second)
        try:
            serials = {d.serial_number for d in list_descriptors()
                       if str(d.path).startswith("emu:")}
            assert {str(virtual_key.serial), str(second.serial)} <= serials
            desc = hid_descriptor(virtual_key)
            a = CtapHidDevice(desc, open_connection(desc))
            b = CtapHidDevice(desc, open_connection(desc))
            try:
                assert a.ping(b"a") == b"a"
                assert b.ping(b"b") == b"b"
                assert Ctap2(a).get_info().aaguid == Ctap2(b).get_info().aaguid
            finally:
                a.close()
                b.close()
        finally:
            unregister_from_fido2_hid(virtual_key)
            unregister_from_fido2_hid(second)


def test_real_device_paths_still_go_to_the_real_backend(virtual_key):
    with registered_with_fido2_hid(virtual_key):
        with pytest.raises(OSError):
            open_device("/dev/hidraw-does-not-exist")
        with pytest.raises(OSError):
            open_device("emu:0")  # not a registered key: the real backend cannot open it


def test_simulated_replug_power_cycles_the_key(virtual_key):
    from fido2.ctap import CtapError
    from fido2.ctap2.pin import ClientPin

    from hwtoken.emulator.transports.fido_hid import simulate_replug

    path = f"emu:{virtual_key.serial}"
    with registered_with_fido2_hid(virtual_key):
        dev = open_device(path)
        ClientPin(Ctap2(dev)).set_pin("12345678")
        for expected in ("PIN_INVALID", "PIN_INVALID", "PIN_AUTH_BLOCKED"):
            with pytest.raises(CtapError) as e:
                ClientPin(Ctap2(dev)).get_pin_token("00000000")
            assert e.value.code == CtapError.ERR[expected]
        with pytest.raises(CtapError) as e:  # blocked until a power cycle
            ClientPin(Ctap2(dev)).get_pin_token("12345678")
        assert e.value.code == CtapError.ERR.PIN_AUTH_BLOCKED
        dev.close()
        replug = simulate_replug(virtual_key, away=0.3)
        assert path not in _paths()
        replug.join(timeout=10)
        assert path in _paths()
        dev = open_device(path)
        assert ClientPin(Ctap2(dev)).get_pin_token("12345678")
        dev.close()


def _wait_for(predicate, polls=200):
    """Poll discovery like a hardware suite does (every 50 ms, bounded)."""
    import threading

    pause = threading.Event()
    for _ in range(polls):
        if predicate():
            return True
        pause.wait(0.05)
    return False


def test_key_replugs_itself_when_a_suite_waits_for_it(virtual_key, monkeypatch):
    """python-fido2's device suite says "disconnect the authenticator", then polls
    list_descriptors() until the path goes away and until a path comes back."""
    from fido2.ctap import CtapError
    from fido2.ctap2.pin import ClientPin

    from hwtoken.emulator.transports import fido_hid

    monkeypatch.setattr(fido_hid, "AWAITED_SECONDS", 0.2)
    path = f"emu:{virtual_key.serial}"
    with registered_with_fido2_hid(virtual_key, replug_when_awaited=0.1):
        dev = open_device(path)
        ClientPin(Ctap2(dev)).set_pin("12345678")
        for expected in ("PIN_INVALID", "PIN_INVALID", "PIN_AUTH_BLOCKED"):
            with pytest.raises(CtapError) as e:
                ClientPin(Ctap2(dev)).get_pin_token("00000000")
            assert e.value.code == CtapError.ERR[expected]
        before = _paths()
        assert path in before
        assert _wait_for(lambda: path not in _paths()), "the key never unplugged itself"
        assert _wait_for(lambda: path in _paths()), "the key never came back"
        dev = open_device(path)  # power-cycled: the wrong-PIN streak is over
        assert ClientPin(Ctap2(dev)).get_pin_token("12345678")
        Ctap2(dev).reset()  # and the reset window is open again
        assert not Ctap2(dev).get_info().options["clientPin"]
        dev.close()


def test_busy_or_quickly_listed_key_stays_plugged_in(virtual_key, monkeypatch):
    from hwtoken.emulator.transports import fido_hid

    path = f"emu:{virtual_key.serial}"
    with registered_with_fido2_hid(virtual_key, replug_when_awaited=0.1):
        monkeypatch.setattr(fido_hid, "AWAITED_SECONDS", 3600.0)
        for _ in range(10):  # listing many times in a row is not waiting for a replug
            assert path in _paths()
        monkeypatch.setattr(fido_hid, "AWAITED_SECONDS", 0.0)
        dev = open_device(path)
        try:
            for _ in range(10):  # a key in use between polls is not awaited either
                assert path in _paths()
                assert dev.ping(b"x") == b"x"
        finally:
            dev.close()
    with registered_with_fido2_hid(virtual_key):  # without the option: never
        monkeypatch.setattr(fido_hid, "AWAITED_SECONDS", 0.0)
        for _ in range(10):
            assert path in _paths()


def test_key_waiting_for_a_touch_is_in_use(virtual_key, monkeypatch):
    """python-fido2's suite polls discovery while its selection waits for a touch."""
    import threading

    from fido2.client import DefaultClientDataCollector, Fido2Client

    from hwtoken.emulator import AskCallback
    from hwtoken.emulator.transports import fido_hid

    monkeypatch.setattr(fido_hid, "AWAITED_SECONDS", 0.0)
    touch = threading.Event()
    virtual_key.presence = AskCallback(lambda reason: touch.wait(20))
    path = f"emu:{virtual_key.serial}"
    with registered_with_fido2_hid(virtual_key, replug_when_awaited=0.1):
        dev = open_device(path)
        client = Fido2Client(dev, DefaultClientDataCollector("https://example.com"))
        selecting = threading.Thread(target=client.selection, daemon=True)
        selecting.start()
        pause = threading.Event()
        seen = []
        for _ in range(8):  # keepalives flow meanwhile: the key is busy, not awaited
            pause.wait(0.15)
            seen.append(path in _paths())
        touch.set()
        selecting.join(timeout=20)
        assert not selecting.is_alive()
        dev.close()
        assert all(seen), seen


def test_unregistering_cancels_a_pending_plug_in(virtual_key):
    from hwtoken.emulator.transports.fido_hid import simulate_replug

    path = f"emu:{virtual_key.serial}"
    register_with_fido2_hid(virtual_key)
    replug = simulate_replug(virtual_key, away=0.1)
    unregister_from_fido2_hid(virtual_key)
    replug.join(timeout=10)
    assert not replug.is_alive()
    assert path not in _paths()
