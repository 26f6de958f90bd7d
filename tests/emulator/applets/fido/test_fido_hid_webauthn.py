"""HID-level end to end: CTAP2 and U2F through fido_device(key), presence policies,
cancel and keepalive over CTAPHID, U2F credentials in CTAP2, state across processes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading

import pytest
from fido2.client import ClientError
from fido2.cose import ES256
from fido2.ctap import STATUS, CtapError
from fido2.ctap1 import Ctap1
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin
from presence_support import UntilCancelled

from hwtoken.emulator import (
    ApproveAfterDelay,
    AskCallback,
    DenyAlways,
    VirtualKey,
    fido_device,
)
from hwtoken.testing import WebAuthnHelper

RP = {"id": "example.com", "name": "Example"}
USER = {"id": b"user-1", "name": "alice"}
ES256_PARAMS = [{"type": "public-key", "alg": -7}]
APP = hashlib.sha256(b"example.com").digest()


def make_cred(ctap2, **kw):
    return ctap2.make_credential(os.urandom(32), RP, USER, ES256_PARAMS, **kw)


def test_webauthn_helper_round_trip(webauthn):
    reg = webauthn.register("alice")
    first = webauthn.authenticate()
    second = webauthn.authenticate()
    assert first.credential_id == second.credential_id == reg.credential_id
    assert second.sign_count > first.sign_count > 0


def test_webauthn_with_pin_is_user_verified(fido_device):
    ClientPin(Ctap2(fido_device)).set_pin("12345678")
    helper = WebAuthnHelper(fido_device, pin="12345678")
    helper.register("bob")
    assert helper.authenticate().user_verified
    wrong = WebAuthnHelper(fido_device, pin="00000000")
    wrong.credentials = helper.credentials
    with pytest.raises(ClientError):
        wrong.authenticate()


def test_upneeded_keepalives_while_waiting_for_a_touch(fido_device, virtual_key):
    virtual_key.presence = ApproveAfterDelay(0.4)
    seen = []
    att = make_cred(Ctap2(fido_device), on_keepalive=seen.append)
    assert att.auth_data.is_user_present()
    assert STATUS.UPNEEDED in seen


def test_cancel_during_make_credential(fido_device, virtual_key):
    presence = virtual_key.presence = UntilCancelled()
    event = threading.Event()
    seen = []

    def on_keepalive(status):
        seen.append(status)
        event.set()  # the user clicks "cancel" as soon as the key asks for a touch

    with pytest.raises(CtapError) as e:
        make_cred(Ctap2(fido_device), event=event, on_keepalive=on_keepalive)
    assert e.value.code == CtapError.ERR.KEEPALIVE_CANCEL
    assert STATUS.UPNEEDED in seen
    assert presence.cancelled.is_set()  # the cancel, not a timeout, ended the touch wait
    # the key is usable right after
    virtual_key.presence = ApproveAfterDelay(0)
    assert make_cred(Ctap2(fido_device)).auth_data.is_user_present()


def test_ask_callback_decides(fido_device, virtual_key):
    asked = []
    virtual_key.presence = AskCallback(lambda reason: asked.append(reason) or True)
    make_cred(Ctap2(fido_device))
    assert asked
    virtual_key.presence = AskCallback(lambda reason: False)
    with pytest.raises(CtapError) as e:
        make_cred(Ctap2(fido_device))
    assert e.value.code == CtapError.ERR.OPERATION_DENIED


def test_ask_callback_that_waits_is_cancellable(fido_device, virtual_key):
    release = threading.Event()
    virtual_key.presence = AskCallback(lambda reason: release.wait(30), timeout=30)
    event = threading.Event()
    timer = threading.Timer(0.3, event.set)
    timer.start()
    try:
        with pytest.raises(CtapError) as e:
            make_cred(Ctap2(fido_device), event=event)
    finally:
        timer.cancel()
        release.set()
    assert e.value.code == CtapError.ERR.KEEPALIVE_CANCEL


def test_deny_always(fido_device, virtual_key):
    virtual_key.presence = DenyAlways()
    with pytest.raises(CtapError) as e:
        make_cred(Ctap2(fido_device))
    assert e.value.code == CtapError.ERR.OPERATION_DENIED
    assert fido_device.ping(b"still here") == b"still here"


def test_u2f_key_handle_works_in_ctap2_allow_list(fido_device):
    reg = Ctap1(fido_device).register(os.urandom(32), APP)
    ctap2 = Ctap2(fido_device)
    cdh = os.urandom(32)
    resp = ctap2.get_assertion("example.com", cdh,
                               [{"type": "public-key", "id": reg.key_handle}])
    assert resp.credential["id"] == reg.key_handle
    ES256.from_ctap1(reg.public_key).verify(resp.auth_data + cdh, resp.signature)


def test_ctap2_credential_works_over_u2f_and_counter_is_shared(fido_device):
    ctap2 = Ctap2(fido_device)
    att = make_cred(ctap2)
    cred = att.auth_data.credential_data
    ctap1 = Ctap1(fido_device)
    counters = [att.auth_data.counter]
    for _ in range(2):
        c = os.urandom(32)
        sig = ctap1.authenticate(c, APP, cred.credential_id)
        sig.verify(APP, c, b"\x04" + cred.public_key[-2] + cred.public_key[-3])
        counters.append(sig.counter)
        a = ctap2.get_assertion("example.com", os.urandom(32),
                                [{"type": "public-key", "id": cred.credential_id}])
        counters.append(a.auth_data.counter)
    assert counters == sorted(set(counters)), counters


def test_power_cycle_while_connected(fido_device, virtual_key):
    ClientPin(Ctap2(fido_device)).set_pin("12345678")
    client_pin = ClientPin(Ctap2(fido_device))
    for _ in range(3):
        with pytest.raises(CtapError) as e:
            client_pin.get_pin_token("wrong-pin")
    assert e.value.code == CtapError.ERR.PIN_AUTH_BLOCKED
    virtual_key.power_cycle()
    assert client_pin.get_pin_token("12345678")


CHILD = r"""
import os, sys
from fido2.ctap2 import Ctap2
from hwtoken.emulator import VirtualKey, fido_device
key = VirtualKey.load(sys.argv[1])
dev = fido_device(key)
cred_id = bytes.fromhex(sys.argv[2])
a = Ctap2(dev).get_assertion("example.com", os.urandom(32), [{"type": "public-key", "id": cred_id}])
print(a.auth_data.counter)
dev.close()
key.close()
"""


def test_credentials_and_counter_survive_a_new_process(tmp_path):
    path = tmp_path / "persist.key"
    key = VirtualKey.create(path)
    dev = fido_device(key)
    att = make_cred(Ctap2(dev), options={"rk": True})
    cred_id = att.auth_data.credential_data.credential_id
    last = Ctap2(dev).get_assertion("example.com", os.urandom(32),
                                    [{"type": "public-key", "id": cred_id}]).auth_data.counter
    dev.close()
    key.close()
    counters = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", CHILD, str(path), cred_id.hex()],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        counters.append(int(out.stdout))
    assert last < counters[0] < counters[1]


def test_fido2_client_cancel_while_waiting_for_a_touch(fido_device, virtual_key):
    presence = virtual_key.presence = UntilCancelled()
    helper = WebAuthnHelper(fido_device)
    options, _ = helper.server.register_begin(
        {"id": b"u", "name": "u"}, user_verification="discouraged")
    event = threading.Event()

    def cancel_once_asked() -> None:  # the user gives up once the key asks for a touch
        if presence.asked.wait(60):
            event.set()

    threading.Thread(target=cancel_once_asked, daemon=True).start()
    with pytest.raises(ClientError) as e:
        helper.client.make_credential(options.public_key, event=event)
    assert e.value.code == ClientError.ERR.TIMEOUT  # how fido2 reports a cancelled request
    assert presence.cancelled.is_set()


def test_always_uv_disables_u2f(fido_device):
    from fido2.ctap1 import ApduError
    from fido2.ctap2.config import Config

    ctap2 = Ctap2(fido_device)
    ClientPin(ctap2).set_pin("12345678")

    def toggle():
        client_pin = ClientPin(ctap2)
        token = client_pin.get_pin_token("12345678", ClientPin.PERMISSION.AUTHENTICATOR_CFG)
        Config(ctap2, client_pin.protocol, token).toggle_always_uv()

    assert Ctap1(fido_device).get_version() == "U2F_V2"
    assert "U2F_V2" in ctap2.get_info().versions
    toggle()
    info = ctap2.get_info()
    assert info.options["alwaysUv"] is True
    assert "U2F_V2" not in info.versions  # U2F is disabled, so not offered
    assert {"FIDO_2_0", "FIDO_2_1"} <= set(info.versions)
    with pytest.raises(ApduError) as e:
        Ctap1(fido_device).register(os.urandom(32), APP)
    assert e.value.code == 0x6D00
    toggle()
    assert Ctap1(fido_device).get_version() == "U2F_V2"
    assert "U2F_V2" in ctap2.get_info().versions
