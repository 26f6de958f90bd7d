"""Persistence, the signature counter, reset and user presence of the CTAP2 authenticator."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import CredentialManagement, Ctap2
from fido2.ctap2.pin import ClientPin
from fido2.webauthn import AttestedCredentialData

from hwtoken.emulator import (
    ApproveAfterDelay,
    ApproveAlways,
    DenyAlways,
    VirtualKey,
    fido_device,
)
from hwtoken.emulator.applets.fido.credentials import COUNTER_RESERVE

ERR = CtapError.ERR
PIN = "12345678"

CHILD = textwrap.dedent("""
    import json, os, sys
    from fido2.ctap2 import Ctap2
    from fido2.webauthn import AttestedCredentialData
    from hwtoken.emulator import VirtualKey, fido_device

    path, cred_hex = sys.argv[1], sys.argv[2]
    cred = AttestedCredentialData(bytes.fromhex(cred_hex))
    with VirtualKey.load(path) as key:
        ctap = Ctap2(fido_device(key))
        counters = []
        for _ in range(3):
            cdh = os.urandom(32)
            resp = ctap.get_assertion("example.com", cdh,
                                      [{"type": "public-key", "id": cred.credential_id}])
            resp.verify(cdh, cred.public_key)
            counters.append(resp.auth_data.counter)
        discovered = ctap.get_assertion("example.com", os.urandom(32))
    print(json.dumps({"counters": counters, "user": discovered.user["id"].hex()}))
""")


def run_child(path, cred: AttestedCredentialData) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), bytes(cred).hex()],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def make_cred(ctap, user_id=b"u", **kw):
    """A fresh ES256 credential for example.com."""
    return ctap.make_credential(os.urandom(32), {"id": "example.com"}, {"id": user_id},
                                [{"type": "public-key", "alg": -7}], **kw)


def assertion_counter(ctap, cred) -> int:
    cdh = os.urandom(32)
    resp = ctap.get_assertion("example.com", cdh,
                              [{"type": "public-key", "id": cred.credential_id}])
    resp.verify(cdh, cred.public_key)
    return resp.auth_data.counter


def test_state_survives_load_in_new_process(tmp_path):
    path = tmp_path / "k.key"
    with VirtualKey.create(path) as key:
        ctap = Ctap2(fido_device(key))
        att = make_cred(ctap, b"alice", options={"rk": True})
        cred = att.auth_data.credential_data
        last = assertion_counter(ctap, cred)
    child = run_child(path, cred)
    assert child["user"] == b"alice".hex()
    counters = child["counters"]
    assert counters[0] > last and counters == sorted(set(counters))
    with VirtualKey.load(path) as key:  # and back here: still rising
        assert assertion_counter(Ctap2(fido_device(key)), cred) > counters[-1]


def test_counter_needs_few_commits(key_path):
    with VirtualKey.create(key_path) as key:
        ctap = Ctap2(fido_device(key))
        att = make_cred(ctap)
        cred = att.auth_data.credential_data
        before = key.store.commits
        counters = [assertion_counter(ctap, cred) for _ in range(3 * COUNTER_RESERVE)]
        assert counters == sorted(set(counters))
        assert key.store.commits - before <= 4


@pytest.fixture
def key_path(tmp_path):
    return tmp_path / "k.key"


def test_counter_goes_on_by_one_after_a_clean_close_and_jumps_only_after_a_crash(key_path):
    """A CLI command loads and closes the key each time: counters must not jump 256."""
    with VirtualKey.create(key_path) as key:
        ctap = Ctap2(fido_device(key))
        cred = make_cred(ctap).auth_data.credential_data
        first = assertion_counter(ctap, cred)
    with VirtualKey.load(key_path) as key:  # closed cleanly: the next value is first + 1
        assert assertion_counter(Ctap2(fido_device(key)), cred) == first + 1
    key = VirtualKey.load(key_path)
    last = assertion_counter(Ctap2(fido_device(key)), cred)
    key._lock.release()  # a crash: the store only knows the reservation
    with VirtualKey.load(key_path) as key:
        after = assertion_counter(Ctap2(fido_device(key)), cred)
        assert last < after <= last + COUNTER_RESERVE + 1


def test_reset_within_window_forgets_everything(key_path):
    with VirtualKey.create(key_path) as key:
        ctap = Ctap2(fido_device(key))
        att = make_cred(ctap)
        cred = att.auth_data.credential_data
        before = assertion_counter(ctap, cred)
        ClientPin(ctap).set_pin(PIN)
        ctap.reset()
        assert ctap.get_info().options["clientPin"] is False
        with pytest.raises(CtapError) as e:  # non-resident credential IDs are void too
            assertion_counter(ctap, cred)
        assert e.value.code == ERR.NO_CREDENTIALS
        att = make_cred(ctap)
        assert att.auth_data.counter > before  # the counter never goes back


def test_reset_refused_after_window(key_path):
    with VirtualKey.create(key_path) as key:
        ctap = Ctap2(fido_device(key))
        ClientPin(ctap).set_pin(PIN)
        key.powered_at -= 11  # as if plugged in 11 s ago
        with pytest.raises(CtapError) as e:
            ctap.reset()
        assert e.value.code == ERR.NOT_ALLOWED
        assert ctap.get_info().options["clientPin"] is True
        key.power_cycle()
        ctap.reset()
        assert ctap.get_info().options["clientPin"] is False


def test_reset_needs_presence(key_path):
    with VirtualKey.create(key_path, presence=DenyAlways()) as key:
        ctap = Ctap2(fido_device(key))
        with pytest.raises(CtapError) as e:
            ctap.reset()
        assert e.value.code == ERR.OPERATION_DENIED
        with pytest.raises(CtapError) as e:
            make_cred(ctap)
        assert e.value.code == ERR.OPERATION_DENIED
        with pytest.raises(CtapError) as e:
            ctap.selection()
        assert e.value.code == ERR.OPERATION_DENIED


def test_cancel_while_waiting_for_touch(key_path):
    with VirtualKey.create(key_path, presence=ApproveAfterDelay(30)) as key:
        ctap = Ctap2(fido_device(key))
        cancel = threading.Event()
        threading.Timer(0.3, cancel.set).start()
        statuses = []
        with pytest.raises(CtapError) as e:
            make_cred(ctap, event=cancel, on_keepalive=statuses.append)
        assert e.value.code == ERR.KEEPALIVE_CANCEL
        assert 2 in statuses  # UPNEEDED keepalives while waiting


def test_silent_assertion_has_no_up_flag(key_path):
    with VirtualKey.create(key_path, presence=ApproveAlways()) as key:
        ctap = Ctap2(fido_device(key))
        att = make_cred(ctap)
        key.presence = DenyAlways()
        resp = ctap.get_assertion("example.com", os.urandom(32), [
            {"type": "public-key", "id": att.auth_data.credential_data.credential_id}],
            options={"up": False})
        assert not resp.auth_data.is_user_present()


def test_get_next_assertion_without_state(key_path):
    with VirtualKey.create(key_path) as key:
        ctap = Ctap2(fido_device(key))
        with pytest.raises(CtapError) as e:
            ctap.get_next_assertion()
        assert e.value.code == ERR.NOT_ALLOWED


def test_key_store_full(key_path, monkeypatch):
    from dataclasses import replace

    from hwtoken.emulator import profiles

    small = replace(profiles.YUBIKEY_5, max_resident=2)
    monkeypatch.setitem(profiles.PROFILES, "yubikey-5", small)
    with VirtualKey.create(key_path) as key:
        ctap = Ctap2(fido_device(key))
        for i in range(2):
            make_cred(ctap, bytes([i]), options={"rk": True})
        assert ctap.get_info().remaining_disc_creds == 0
        with pytest.raises(CtapError) as e:
            make_cred(ctap, b"x", options={"rk": True})
        assert e.value.code == ERR.KEY_STORE_FULL


def test_state_file_holds_no_plain_secrets(key_path):
    with VirtualKey.create(key_path) as key:
        ctap = Ctap2(fido_device(key))
        ClientPin(ctap).set_pin(PIN)
        token = ClientPin(ctap).get_pin_token(PIN, ClientPin.PERMISSION.CREDENTIAL_MGMT)
        CredentialManagement(ctap, ClientPin(ctap).protocol, token).get_metadata()
    raw = key_path.read_bytes()
    assert PIN.encode() not in raw
    pin_hash = hashlib.sha256(PIN.encode()).digest()[:16]
    assert base64.b64encode(pin_hash) not in raw and pin_hash not in raw
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"


def test_every_reset_forgets_all_of_the_old_generation(key_path):
    """Two resets in a row: the second forgets what was made after the first just as the
    first did (resident and non-resident credentials, large blobs, config, the persistent
    token), and the key works as new after each."""
    from fido2.ctap2 import Config, LargeBlobs

    P = ClientPin.PERMISSION
    with VirtualKey.create(key_path, profile="latest") as key:
        ctap = Ctap2(fido_device(key))
        for _ in range(2):
            cp = ClientPin(ctap)
            cp.set_pin(PIN)
            made = []
            for rk in (True, False):  # a token's mc permission is spent by its first use
                token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, "example.com")
                cdh = os.urandom(32)
                made.append(ctap.make_credential(
                    cdh, {"id": "example.com"}, {"id": b"u", "name": "u"},
                    [{"type": "public-key", "alg": -7}], options={"rk": rk},
                    extensions={"largeBlobKey": True} if rk else None,
                    pin_uv_param=cp.protocol.authenticate(token, cdh),
                    pin_uv_protocol=cp.protocol.VERSION))
            LargeBlobs(ctap, cp.protocol, cp.get_pin_token(PIN, P.LARGE_BLOB_WRITE)).put_blob(
                made[0].large_blob_key, b"blob")
            cp.get_pin_token(PIN, P.PERSISTENT_CREDENTIAL_MGMT)
            Config(ctap, cp.protocol, cp.get_pin_token(PIN, P.AUTHENTICATOR_CFG)
                   ).toggle_always_uv()
            info = ctap.get_info()
            assert info.options["alwaysUv"] is True and info.enc_identifier is not None
            key.power_cycle()  # authenticatorReset within 10 s of power-up
            ctap.reset()
            info = ctap.get_info()
            assert (info.options["clientPin"], info.options["alwaysUv"]) == (False, False)
            assert info.enc_identifier is None  # no persistent token any more
            assert LargeBlobs(ctap).read_blob_array() == []
            for cred in made:
                with pytest.raises(CtapError) as e:
                    assertion_counter(ctap, cred.auth_data.credential_data)
                assert e.value.code == ERR.NO_CREDENTIALS
            with pytest.raises(CtapError) as e:  # nothing to discover
                ctap.get_assertion("example.com", os.urandom(32))
            assert e.value.code == ERR.NO_CREDENTIALS
            cp = ClientPin(ctap)
            cp.set_pin(PIN)
            cm = CredentialManagement(ctap, cp.protocol, cp.get_pin_token(PIN, P.CREDENTIAL_MGMT))
            assert cm.get_metadata()[1] == 0
            key.power_cycle()
            ctap.reset()  # (the next round sets its PIN again)


def test_delete_resident_says_whether_there_was_one(key_path):
    with VirtualKey.create(key_path) as key:
        att = make_cred(Ctap2(fido_device(key)), options={"rk": True})
        state = key.fido.authenticator.state
        cid = att.auth_data.credential_data.credential_id
        assert state.delete_resident(os.urandom(len(cid))) is False
        assert len(state.residents) == 1
        assert state.delete_resident(cid) is True
        assert state.residents == [] and state.delete_resident(cid) is False


def test_the_pin_record_keeps_its_stored_format(key_path):
    """State files outlive releases: the PIN record must stay HMAC-SHA-256(master secret,
    "pin" 0x00 || LEFT(SHA-256(PIN), 16)), or every key made before would refuse its PIN."""
    import hmac

    with VirtualKey.create(key_path) as key:
        ClientPin(Ctap2(fido_device(key))).set_pin(PIN)
        stored = key.store.section("fido")["pin"]
        left = hashlib.sha256(PIN.encode()).digest()[:16]
        assert bytes(stored["hash"]) == hmac.new(key.master_secret, b"pin\x00" + left,
                                                 hashlib.sha256).digest()
        assert (stored["retries"], stored["length"]) == (8, len(PIN))
